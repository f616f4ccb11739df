"""The Python client over shared memory against a live seqkv-server: real
caches round trip bit-exact through regions for every codec the client's
tests use, clients of both transports work at once, and bad offsets,
unknown handles and other tenants' regions get their precise statuses with
the server unharmed."""

import os
import shutil
import tempfile
import json
import threading
import time
import unittest
import urllib.request

import numpy as np

import seqkv
from seqkv_test_util import ServerProcess, data_path, require_data, sha256_hex

RAG_00 = "kv/b_rag_00_D1_D2.safetensors"
# raw and lossless are bit-exact against what was put; turbo:4 and kivi:2
# are lossy, so shared memory must give exactly what messages give.
CODECS = ("raw", "lossless", "turbo:4", "kivi:2")


def random_kv(shape, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint16:  # finite bf16 bits
        bits = rng.integers(0, 0x7F00, size=shape, dtype=np.uint16)
        return bits | (rng.integers(0, 2, size=shape, dtype=np.uint16) << 15)
    return rng.standard_normal(shape).astype(dtype)


class ShmServer:
    """A server on a Unix socket, its region socket beside it (PATH.shm)."""

    def __init__(self, extra_flags=()):
        self.dir = tempfile.mkdtemp(prefix="seqkv-pyshm-")
        self.socket = os.path.join(self.dir, "s.sock")
        self.server = ServerProcess(extra_flags, listen=f"unix:{self.socket}")
        self.address = self.server.address

    def shm_stats(self):
        """/v1/stats "shm": what went through regions, and refusals."""
        url = f"http://127.0.0.1:{self.server.admin_port}/v1/stats"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["shm"]

    def stop(self):
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ShmRoundTripTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = ShmServer()
        cls.shm = seqkv.Client(cls.server.address, timeout=60)
        cls.grpc = seqkv.Client(cls.server.address, timeout=60,
                                transport="grpc")

    @classmethod
    def tearDownClass(cls):
        cls.shm.close()
        cls.grpc.close()
        cls.server.stop()

    def test_transport_choice(self):
        self.assertTrue(self.shm.uses_shared_memory)
        self.assertFalse(self.grpc.uses_shared_memory)
        with self.assertRaises(seqkv.InvalidArgumentError):
            seqkv.Client(self.server.address, transport="rdma")
        # A region socket named outright must work.
        with self.assertRaises(seqkv.UnavailableError):
            seqkv.Client(self.server.address,
                         shm_socket=self.server.socket + ".missing")
        # Region calls need one.
        with self.assertRaises(seqkv.FailedPreconditionError):
            self.grpc.create_region(1 << 20)

    @require_data(RAG_00)
    def test_real_cache_bit_exact_for_every_codec(self):
        cache = seqkv.read_kv_file(data_path(RAG_00))
        count = len(cache.tokens)
        token_bytes = 2 * cache.k.shape[0] * cache.k.shape[1] * \
            cache.k.shape[3] * 2
        region = self.shm.create_region(count * token_bytes + 8192)
        for index, codec in enumerate(CODECS):
            with self.subTest(codec=codec):
                model = f"shm-{codec}"
                # A Put through shared memory, read back both ways.
                before = self.server.shm_stats()
                put = self.shm.put(model, cache.tokens, cache.k, cache.v,
                                   codec=codec)
                self.assertEqual((put.tokens, put.codec), (count, codec))
                self.assertEqual(put.bytes_logical, cache.k.nbytes * 2)
                by_region = self.shm.get(model, cache.tokens)
                by_messages = self.grpc.get(model, cache.tokens)
                self.assertEqual(by_region.matched_tokens, count)
                np.testing.assert_array_equal(by_region.k, by_messages.k)
                np.testing.assert_array_equal(by_region.v, by_messages.v)
                np.testing.assert_array_equal(by_region.tokens, cache.tokens)
                if codec in ("raw", "lossless"):
                    np.testing.assert_array_equal(by_region.k, cache.k)
                    np.testing.assert_array_equal(by_region.v, cache.v)
                # The server saw the bytes go through a region both ways.
                after = self.server.shm_stats()
                self.assertEqual(after["put_calls"], before["put_calls"] + 1)
                self.assertEqual(after["put_bytes"],
                                 before["put_bytes"] + count * token_bytes)
                self.assertEqual(after["get_calls"], before["get_calls"] + 1)
                self.assertEqual(after["get_bytes"],
                                 before["get_bytes"] + count * token_bytes)

                # A Put through messages reads back the same through shm.
                other = cache.tokens.copy()
                other[0] = 900000 + index
                self.grpc.put(model, other, cache.k, cache.v, codec=codec)
                again = self.shm.get(model, other)
                np.testing.assert_array_equal(again.k, by_messages.k)
                np.testing.assert_array_equal(again.v, by_messages.v)

                # A range that starts and ends inside chunks, into an offset
                # of the caller's region: the bytes around it stay.
                region.buffer[:] = b"\xab" * region.size
                placed = self.shm.get_into_region(
                    model, cache.tokens, region, offset=4096,
                    begin_token=50, end_token=count - 7)
                self.assertEqual((placed.begin_token, placed.end_token),
                                 (50, count - 7))
                self.assertEqual(placed.data_bytes,
                                 (count - 57) * token_bytes)
                k, v = placed.kv()
                np.testing.assert_array_equal(
                    k, by_messages.k[:, :, 50:count - 7])
                np.testing.assert_array_equal(
                    v, by_messages.v[:, :, 50:count - 7])
                wire = placed.wire()
                self.assertEqual(wire.shape, (count - 57, 6, 2, 2, 128))
                np.testing.assert_array_equal(
                    wire[:, :, 0].transpose(1, 2, 0, 3), k)
                del wire
                after = 4096 + placed.data_bytes
                self.assertEqual(bytes(region.buffer[:4096]),
                                 b"\xab" * 4096)
                self.assertEqual(bytes(region.buffer[after:]),
                                 b"\xab" * (region.size - after))

                # Put straight from the region: what get_into_region left
                # there is a Put's input as it is.
                moved = np.arange(count - 57) + 2000000 + index * 10000
                stored = self.shm.put_from_region(model, moved, region,
                                                  offset=4096, codec="raw")
                self.assertEqual(stored.tokens, count - 57)
                back = self.grpc.get(model, moved)
                np.testing.assert_array_equal(back.k, k)
                np.testing.assert_array_equal(back.v, v)
        region.close()

    def test_arrays_placed_in_a_region(self):
        layout = seqkv.Layout(3, 2, 64, "fp16")
        tokens = np.arange(100) + 5000
        region = self.shm.create_region(1 << 20)
        wire = region.wire(layout, 100, offset=128)
        wire[:] = random_kv(wire.shape, np.float16, seed=3)
        self.shm.put_from_region("placed", tokens, region, offset=128,
                                 layout=layout)
        k, v = self.grpc.get("placed", tokens)
        np.testing.assert_array_equal(k, wire[:, :, 0].transpose(1, 2, 0, 3))
        np.testing.assert_array_equal(v, wire[:, :, 1].transpose(1, 2, 0, 3))
        # The registered layout is the default.
        self.shm.put_from_region("placed", tokens[:40] + 1000, region,
                                 offset=128)
        np.testing.assert_array_equal(
            self.grpc.get("placed", tokens[:40] + 1000).k, k[:, :, :40])
        # A Get into it, read as numpy and as torch without copies.
        placed = self.shm.get_into_region("placed", tokens, region,
                                          offset=1 << 19)
        view = region.array(np.uint8, 16, offset=1 << 19)
        view[0] ^= 0xFF  # a write through one view shows in the other
        self.assertEqual(placed.wire().view(np.uint8)[0, 0, 0, 0, 0],
                         view[0])
        view[0] ^= 0xFF
        np.testing.assert_array_equal(placed.wire(), wire)
        del wire, view
        region.close()

    def test_torch_in_and_out(self):
        import torch
        k = torch.randn(2, 4, 300, 64).to(torch.bfloat16)
        v = torch.randn(2, 4, 300, 64).to(torch.bfloat16)
        tokens = torch.arange(300, dtype=torch.int64) + 70000
        self.shm.put("torch", tokens, k, v, codec="lossless")
        got_k, got_v = self.shm.get("torch", tokens, as_torch=True)
        self.assertEqual(got_k.dtype, torch.bfloat16)
        self.assertTrue(torch.equal(got_k, k) and torch.equal(got_v, v))
        region = self.shm.create_region(4 << 20)
        placed = self.shm.get_into_region("torch", tokens, region)
        wire = placed.wire(as_torch=True)
        self.assertEqual(wire.dtype, torch.bfloat16)
        self.assertTrue(torch.equal(wire[:, :, 0].permute(1, 2, 0, 3), k))
        del wire
        region.close()

    def test_prompts_past_the_scratch_limit_use_messages(self):
        k = random_kv((2, 2, 64, 32), seed=9)
        tokens = np.arange(64) + 300000
        self.shm.put("long", tokens, k, k)
        before = self.server.shm_stats()
        limit = seqkv.client.MAX_SCRATCH_BYTES
        seqkv.client.MAX_SCRATCH_BYTES = 1000  # under 64 tokens' bytes
        try:
            got_k, got_v = self.shm.get("long", tokens)
        finally:
            seqkv.client.MAX_SCRATCH_BYTES = limit
        np.testing.assert_array_equal(got_k, k)
        np.testing.assert_array_equal(got_v, k)
        self.assertEqual(self.server.shm_stats()["get_calls"],
                         before["get_calls"])
        self.shm.get("long", tokens)
        self.assertEqual(self.server.shm_stats()["get_calls"],
                         before["get_calls"] + 1)

    def test_both_transports_at_once(self):
        failures = []

        def work(client, other, seed):
            try:
                for round_ in range(6):
                    tokens = np.arange(200) + seed * 100000 + round_ * 1000
                    k = random_kv((2, 2, 200, 32), seed=seed * 10 + round_)
                    client.put("both", tokens, k, k[::-1].copy())
                    for reader in (client, other):
                        got_k, got_v = reader.get("both", tokens)
                        if not (np.array_equal(got_k, k) and
                                np.array_equal(got_v, k[::-1])):
                            failures.append((seed, round_))
            except Exception as error:  # reported below
                failures.append(error)

        threads = [threading.Thread(target=work, args=args) for args in
                   ((self.shm, self.grpc, 1), (self.grpc, self.shm, 2),
                    (self.shm, self.grpc, 3), (self.grpc, self.shm, 4))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(failures, [])


class ShmBadInputTest(unittest.TestCase):
    """Slices the server must refuse, sent as they are (past the client's
    own checks), and the server serving on after each."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="seqkv-pyshmbad-")
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            f.write("tenants:\n")
            for name in ("acme", "globex"):
                f.write(f"  - name: {name}\n    api_key_sha256: "
                        f"[\"{sha256_hex(name + '-key')}\"]\n")
        self.server = ShmServer([f"--config={config}"])
        self.client = seqkv.Client(self.server.address, api_key="acme-key",
                                   timeout=30)
        self.layout = seqkv.Layout(2, 2, 32, "bf16")
        self.tokens = np.arange(64)
        self.kv = random_kv((2, 2, 64, 32))
        self.client.put("m", self.tokens, self.kv, self.kv)

    def tearDown(self):
        self.client.close()
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def raw_put(self, client, handle, offset, length):
        """A Put of new tokens whose data is the slice as given."""
        pb = client._pb
        header = pb.PutHeader(model="m", layout=self.layout.to_proto(pb),
                              packed_tokens=(self.tokens + 1000).tobytes())
        return client._put_slice(header, handle, offset, length)

    def raw_get(self, client, handle, offset, length):
        pb = client._pb
        request = pb.GetRequest(model="m",
                                packed_tokens=self.tokens.tobytes())
        region = seqkv.Region(-1, None, 0)
        region.handle = handle
        return client._get_slice(request, self.tokens, region, offset, length)

    def assertStatus(self, error_class, call, *fragments):
        with self.assertRaises(error_class) as raised:
            call()
        for fragment in fragments:
            self.assertIn(fragment, raised.exception.message)
        # The server is unharmed and the store as it was.
        np.testing.assert_array_equal(
            self.client.get("m", self.tokens).k, self.kv)
        self.assertEqual(
            self.client.lookup("m", self.tokens + 1000).matched_tokens, 0)

    def test_bounds(self):
        region = self.client.create_region(1 << 20)
        tenants = self.server.shm_stats()["tenants"]
        self.assertEqual(tenants["acme"]["regions"], 2)  # and put's scratch
        self.assertEqual(tenants["acme"]["mapped_bytes"], 2 << 20)
        nbytes = 64 * self.layout.bytes_per_token
        # The client's own checks, before anything is sent.
        with self.assertRaises(seqkv.OutOfRangeError):
            self.client.put_from_region("m", self.tokens, region,
                                        offset=(1 << 20) - nbytes + 1)
        with self.assertRaises(seqkv.OutOfRangeError):
            self.client.get_into_region("m", self.tokens, region,
                                        offset=(1 << 20) + 1)
        # The server's: past the end, and offsets that overflow.
        handle = region.handle
        self.assertStatus(seqkv.OutOfRangeError,
                          lambda: self.raw_put(self.client, handle,
                                               (1 << 20) - nbytes + 1, nbytes))
        self.assertStatus(seqkv.OutOfRangeError,
                          lambda: self.raw_put(self.client, handle,
                                               2**64 - 1, nbytes))
        self.assertStatus(seqkv.OutOfRangeError,
                          lambda: self.raw_get(self.client, handle,
                                               2**64 - 16, 32))
        # A Get whose data does not fit writes nothing.
        region.buffer[:] = b"\x5a" * region.size
        self.assertStatus(seqkv.OutOfRangeError,
                          lambda: self.client.get_into_region(
                              "m", self.tokens, region, capacity=nbytes - 1),
                          "do not fit")
        self.assertEqual(bytes(region.buffer), b"\x5a" * region.size)
        # Each counted by kind on the admin endpoint.
        self.assertEqual(self.server.shm_stats()["errors"]["bounds"], 4)
        # A Put from the region still works.
        region.wire(self.layout, 64)[:] = self.kv.transpose(2, 0, 1, 3)[
            :, :, None].repeat(2, axis=2)
        self.client.put_from_region("m", self.tokens + 100, region)
        np.testing.assert_array_equal(
            self.client.get("m", self.tokens + 100).k, self.kv)
        region.close()

    def test_handles_and_owners(self):
        nbytes = 64 * self.layout.bytes_per_token
        self.assertStatus(seqkv.InvalidArgumentError,
                          lambda: self.raw_put(self.client, b"short", 0,
                                               nbytes))
        self.assertStatus(seqkv.NotFoundError,
                          lambda: self.raw_get(self.client, b"\7" * 16, 0,
                                               nbytes))
        # Another tenant's region: refused, even with its handle.
        with seqkv.Client(self.server.address, api_key="globex-key") as other:
            region = other.create_region(1 << 20)
            self.assertStatus(seqkv.PermissionDeniedError,
                              lambda: self.raw_put(self.client, region.handle,
                                                   0, nbytes))
            self.assertStatus(seqkv.PermissionDeniedError,
                              lambda: self.raw_get(self.client, region.handle,
                                                   0, nbytes))
            # Unregistered: the handle names nothing any more.
            handle = region.handle
            region.close()
            self.assertStatus(seqkv.NotFoundError,
                              lambda: self.raw_get(other, handle, 0, nbytes))
            with self.assertRaises(seqkv.FailedPreconditionError):
                other.put_from_region("m", self.tokens, region)
            kept = other.create_region(1 << 20)
            handle = kept.handle
        # Its client closed: so are its regions on the server, once its
        # poll thread sees the socket close (at once, but on its own thread).
        # Until then each try is refused as another tenant's, and counted.
        refused_while_open = 0
        for _ in range(200):
            try:
                self.raw_get(self.client, handle, 0, nbytes)
            except seqkv.NotFoundError:
                break
            except seqkv.PermissionDeniedError:
                refused_while_open += 1
                time.sleep(0.01)
        self.assertStatus(seqkv.NotFoundError,
                          lambda: self.raw_get(self.client, handle, 0, nbytes))
        errors = self.server.shm_stats()["errors"]
        self.assertEqual(errors["bad_handle"], 1)
        self.assertEqual(errors["ownership"], 2 + refused_while_open)
        self.assertGreaterEqual(errors["region_gone"], 3)
        # A wrong key cannot register at all; its client sends messages.
        with seqkv.Client(self.server.address, api_key="wrong") as wrong:
            with self.assertRaises(seqkv.UnauthenticatedError):
                wrong.create_region(1 << 20)
            with self.assertRaises(seqkv.UnauthenticatedError):
                wrong.get("m", self.tokens)


if __name__ == "__main__":
    unittest.main()
