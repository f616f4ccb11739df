"""The Python client against a live seqkv-server: real caches round trip
bit-exact (raw, lossless), a lossy codec stays within its error, bad input
is refused before anything is sent, and errors carry their gRPC codes."""

import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import seqkv
from seqkv_test_util import ServerProcess, data_path, require_data, sha256_hex

RAG_00 = "kv/b_rag_00_D1_D2.safetensors"
RAG_02 = "kv/b_rag_02_D1_D3.safetensors"


def common_prefix(a, b):
    n = min(len(a), len(b))
    differ = np.nonzero(a[:n] != b[:n])[0]
    return int(differ[0]) if differ.size else n


def relative_mse(reference_bits, decoded_bits):
    ref = seqkv.bf16_to_float32(reference_bits).astype(np.float64)
    got = seqkv.bf16_to_float32(decoded_bits).astype(np.float64)
    return float(np.mean((ref - got) ** 2) / np.mean(ref ** 2))


class ClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess()
        cls.client = seqkv.Client(cls.server.address, timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()

    @require_data(RAG_00, RAG_02)
    def test_real_caches_round_trip_bit_exact(self):
        first = seqkv.read_kv_file(data_path(RAG_00))
        second = seqkv.read_kv_file(data_path(RAG_02))
        self.assertEqual(first.dtype, "bf16")
        self.assertEqual(first.k.dtype, np.uint16)
        shared = common_prefix(first.tokens, second.tokens)
        self.assertGreaterEqual(shared, 282)  # BOS + S + D1, says the README
        for codec in ("raw", "lossless"):
            with self.subTest(codec=codec):
                model = f"kvlm-{codec}"
                put = self.client.put(model, first.tokens, first.k, first.v,
                                      codec=codec)
                self.assertEqual(put.tokens, len(first.tokens))
                self.assertEqual(put.codec, codec)
                self.assertGreater(put.chunks_new, 0)
                self.assertEqual(put.bytes_logical, first.k.nbytes * 2)

                self.assertEqual(
                    self.client.lookup(model, first.tokens).matched_tokens,
                    len(first.tokens))
                lookup = self.client.lookup(model, second.tokens)
                self.assertEqual(lookup.matched_tokens, shared)
                self.assertEqual(lookup.namespace, "default")
                self.assertEqual(
                    self.client.lookup(model, second.tokens,
                                       alignment=64).matched_tokens,
                    shared // 64 * 64)

                # The same with whole 256-token chunks as digests: the
                # second prompt's second chunk differs, so only the first
                # matches.
                by_chunks = self.client.lookup_by_chunks
                self.assertEqual(by_chunks(model, first.tokens).matched_tokens,
                                 len(first.tokens))
                self.assertEqual(by_chunks(model, second.tokens).matched_tokens,
                                 256)
                self.assertEqual(
                    by_chunks(model, second.tokens[:shared]).matched_tokens,
                    shared)
                self.assertEqual(by_chunks(model, second.tokens, chunk_tokens=256,
                                           alignment=100).matched_tokens, 200)

                k, v = self.client.get(model, first.tokens)
                self.assertEqual(k.dtype, np.uint16)
                np.testing.assert_array_equal(k, first.k)
                np.testing.assert_array_equal(v, first.v)

                # The longest stored prefix of another prompt.
                got = self.client.get(model, second.tokens)
                self.assertEqual(got.matched_tokens, shared)
                self.assertEqual(got.k.shape, (6, 2, shared, 128))
                np.testing.assert_array_equal(got.k, first.k[:, :, :shared])
                np.testing.assert_array_equal(got.v, first.v[:, :, :shared])
                np.testing.assert_array_equal(got.tokens,
                                              first.tokens[:shared])

                # A token range of the match.
                part = self.client.get(model, first.tokens, begin_token=100,
                                       end_token=300)
                self.assertEqual((part.begin_token, part.end_token), (100, 300))
                np.testing.assert_array_equal(part.k,
                                              first.k[:, :, 100:300])
                np.testing.assert_array_equal(part.v,
                                              first.v[:, :, 100:300])

                # Storing the second one dedups the shared whole chunks.
                again = self.client.put(model, second.tokens, second.k,
                                        second.v, codec=codec)
                self.assertEqual(again.chunks_deduped, shared // 256)
                k2, v2 = self.client.get(model, second.tokens)
                np.testing.assert_array_equal(k2, second.k)
                np.testing.assert_array_equal(v2, second.v)

                deleted = self.client.delete(model)
                self.assertGreater(deleted.chunks_deleted, 0)
                self.assertEqual(
                    self.client.lookup(model, first.tokens).matched_tokens, 0)
                empty = self.client.get(model, first.tokens)
                self.assertEqual(empty.k.shape, (6, 2, 0, 128))

    @require_data(RAG_00)
    def test_lossy_codec_within_tolerance(self):
        cache = seqkv.read_kv_file(data_path(RAG_00))
        put = self.client.put("kvlm-turbo", cache.tokens, cache.k, cache.v,
                              codec="turbo:4")
        self.assertLess(put.bytes_stored, put.bytes_logical / 3)
        k, v = self.client.get("kvlm-turbo", cache.tokens)
        self.assertEqual(k.shape, cache.k.shape)
        # turbo:4 is about 0.0093 relative MSE on these caches (docs/CODECS.md).
        self.assertLess(relative_mse(cache.k, k), 0.02)
        self.assertLess(relative_mse(cache.v, v), 0.02)
        self.assertGreater(relative_mse(cache.k, k), 0)

    @require_data(RAG_00)
    def test_torch_in_and_out(self):
        import torch
        cache = seqkv.read_kv_file(data_path(RAG_00))
        k = torch.from_numpy(cache.k.view(np.int16)).view(torch.bfloat16)
        v = torch.from_numpy(cache.v.view(np.int16)).view(torch.bfloat16)
        tokens = torch.from_numpy(cache.tokens)
        self.client.put("kvlm-torch", tokens, k, v, codec="lossless")
        got = self.client.get("kvlm-torch", tokens, as_torch=True)
        self.assertEqual(got.k.dtype, torch.bfloat16)
        self.assertTrue(torch.equal(got.k, k))
        self.assertTrue(torch.equal(got.v, v))
        # A non-contiguous view goes in as its values.
        half = k[:, :, :300].transpose(0, 1).contiguous().transpose(0, 1)
        self.client.put("kvlm-torch-view", tokens[:300], half,
                        v[:, :, :300], codec="raw")
        got = self.client.get("kvlm-torch-view", tokens, as_torch=True)
        self.assertTrue(torch.equal(got.k, k[:, :, :300]))

    def test_fp32_and_fp16_round_trip(self):
        rng = np.random.default_rng(7)
        tokens = np.arange(300, dtype=np.int64)
        for dtype in (np.float32, np.float16):
            with self.subTest(dtype=dtype):
                k = rng.standard_normal((3, 4, 300, 64)).astype(dtype)
                v = rng.standard_normal((3, 4, 300, 64)).astype(dtype)
                model = f"synthetic-{np.dtype(dtype).name}"
                self.client.put(model, tokens, k, v, codec="raw")
                got = self.client.get(model, tokens)
                self.assertEqual(got.layout.dtype,
                                 {np.float32: "fp32", np.float16: "fp16"}[dtype])
                np.testing.assert_array_equal(got.k, k)
                np.testing.assert_array_equal(got.v, v)

    def test_any_message_size(self):
        # 3 x 2 x 4 x 64 fp32 = 6144 bytes per token: a token split over
        # messages, and several tokens per message.
        rng = np.random.default_rng(5)
        k = rng.standard_normal((3, 4, 50, 64)).astype(np.float32)
        v = rng.standard_normal((3, 4, 50, 64)).astype(np.float32)
        for message_bytes in (1000, 20000):
            with self.subTest(message_bytes=message_bytes), seqkv.Client(
                    self.server.address, message_bytes=message_bytes) as small:
                model = f"split-{message_bytes}"
                small.put(model, np.arange(50), k, v, codec="raw")
                got = small.get(model, np.arange(50))
                np.testing.assert_array_equal(got.k, k)
                np.testing.assert_array_equal(got.v, v)

    def test_latent_layout_has_one_tensor(self):
        rng = np.random.default_rng(3)
        latent = rng.standard_normal((2, 1, 20, 96)).astype(np.float32)
        self.client.put("latent", np.arange(20), latent, None, codec="raw")
        self.assertTrue(self.client.get_model("latent").layout.latent)
        got = self.client.get("latent", np.arange(20))
        self.assertIsNone(got.v)
        np.testing.assert_array_equal(got.k, latent)

    def test_register_and_describe_model(self):
        layout = seqkv.Layout(4, 2, 64, "bf16",
                              rope=seqkv.Rope("rotate_half", 500000.0))
        self.assertTrue(self.client.register_model("registered", layout,
                                                   chunk_tokens=128))
        self.assertFalse(self.client.register_model("registered", layout,
                                                    chunk_tokens=128))
        info = self.client.get_model("registered")
        self.assertEqual(info.layout, layout)
        self.assertEqual(info.chunk_tokens, 128)
        with self.assertRaises(seqkv.NotFoundError) as raised:
            self.client.get_model("never-registered")
        self.assertEqual(raised.exception.code.name, "NOT_FOUND")
        # A Put whose layout differs from the registration: the server says
        # which field.
        k = np.zeros((4, 2, 10, 32), np.uint16)
        with self.assertRaises(seqkv.FailedPreconditionError) as raised:
            self.client.put("registered", np.arange(10), k, k)
        self.assertIn("head_dim 32 (expected 64)", raised.exception.message)
        # Codec state larger than a message goes through
        # RegisterModelStream.
        small = seqkv.Client(self.server.address, message_bytes=1000)
        try:
            state = {"notes": bytes(range(256)) * 20, "empty": b""}
            self.assertTrue(small.register_model("streamed", layout,
                                                 codec_state=state))
            self.assertEqual(sorted(small.get_model("streamed").codec_state_keys),
                             ["empty", "notes"])
        finally:
            small.close()

    def test_stats_count_the_tenants_calls(self):
        before = self.client.stats()
        self.assertEqual(before.tenant, "default")
        k = np.ones((1, 1, 5, 8), np.float32)
        self.client.put("stats-model", np.arange(5), k, k)
        self.client.lookup("stats-model", np.arange(5))
        after = self.client.stats()
        self.assertEqual(after.puts, before.puts + 1)
        self.assertEqual(after.lookups, before.lookups + 1)
        self.assertEqual(after.put_tokens, before.put_tokens + 5)


class BadInputTest(unittest.TestCase):
    """Checked by the client: the target has no server, so reaching the
    wire would raise UnavailableError instead."""

    def setUp(self):
        self.client = seqkv.Client("127.0.0.1:1", timeout=5)
        self.tokens = np.arange(10)
        self.kv = np.zeros((2, 2, 10, 16), np.uint16)

    def tearDown(self):
        self.client.close()

    def assertRefused(self, call, *fragments):
        with self.assertRaises(seqkv.InvalidArgumentError) as raised:
            call()
        self.assertIsInstance(raised.exception, ValueError)
        self.assertEqual(raised.exception.code.name, "INVALID_ARGUMENT")
        for fragment in fragments:
            self.assertIn(fragment, str(raised.exception))

    def test_shapes_and_dtypes(self):
        c, t, kv = self.client, self.tokens, self.kv
        self.assertRefused(lambda: c.put("m", t, kv[0], kv[0]),
                           "[layers, kv_heads, tokens, head_dim]")
        self.assertRefused(lambda: c.put("m", t, kv, kv[:, :1]), "shape")
        self.assertRefused(lambda: c.put("m", t[:9], kv, kv),
                           "10 tokens", "9 token ids")
        self.assertRefused(lambda: c.put("m", t, kv.astype(np.float64),
                                         kv.astype(np.float64)), "float64")
        self.assertRefused(lambda: c.put("m", t, kv, kv.view(np.float16)),
                           "bf16", "fp16")
        self.assertRefused(lambda: c.put("m", t, kv.tolist(), kv), "numpy")
        self.assertRefused(lambda: c.put("m", t.astype(np.float32), kv, kv),
                           "integers")
        self.assertRefused(lambda: c.put("m", t.reshape(2, 5), kv, kv),
                           "one-dimensional")
        self.assertRefused(lambda: c.put("m", t + 2**31, kv, kv), "int32")
        self.assertRefused(lambda: c.put("m", [], kv[:, :, :0], kv[:, :, :0]),
                           "empty")
        self.assertRefused(lambda: c.put("", t, kv, kv), "model")
        self.assertRefused(lambda: c.lookup(None, t), "model")
        self.assertRefused(lambda: c.get("m", t, begin_token=5, end_token=2),
                           "range")
        self.assertRefused(lambda: c.lookup("m", t, alignment=-1), "alignment")
        self.assertRefused(lambda: c.get("m", t, begin_token=-1), "begin_token")
        self.assertRefused(lambda: seqkv.Layout(0, 2, 128), "num_layers")
        self.assertRefused(lambda: seqkv.Layout(1, 2, 128, "int8"), "dtype")

    def test_torch_dtypes(self):
        import torch
        k = torch.zeros((2, 2, 10, 16), dtype=torch.float64)
        self.assertRefused(lambda: self.client.put("m", self.tokens, k, k),
                           "torch.float64")

    def test_unreachable_server_is_unavailable(self):
        with self.assertRaises(seqkv.UnavailableError):
            self.client.lookup("m", self.tokens)


class WireOrderTest(unittest.TestCase):
    """The token-major conversions on their own, against a loop over the
    wire order's definition."""

    def test_put_order_is_token_layer_tensor_head(self):
        rng = np.random.default_rng(2)
        k = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
        v = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
        wire, dtype = seqkv.arrays.to_token_major(k, v, 5)
        self.assertEqual(dtype, "fp32")
        expected = [k[l, h, t] if i == 0 else v[l, h, t]
                    for t in range(5) for l in range(3) for i in range(2)
                    for h in range(2)]
        np.testing.assert_array_equal(wire.reshape(-1, 4), np.stack(expected))

    def test_reader_takes_any_split(self):
        rng = np.random.default_rng(4)
        for latent in (False, True):
            layout = seqkv.Layout(3, 2, 8, "fp32", latent=latent)
            k = rng.standard_normal((3, 2, 7, 8)).astype(np.float32)
            v = None if latent else rng.standard_normal(k.shape).astype(
                np.float32)
            data = seqkv.arrays.to_token_major(k, v, 7)[0].tobytes()
            for step in (1, 5, 191, 192, 193, len(data)):
                with self.subTest(latent=latent, step=step):
                    reader = seqkv.arrays.TokenMajorReader(layout, 7)
                    for i in range(0, len(data), step):
                        self.assertTrue(reader.add(data[i:i + step]))
                    self.assertTrue(reader.complete)
                    got_k, got_v = reader.finish()
                    np.testing.assert_array_equal(got_k, k)
                    if latent:
                        self.assertIsNone(got_v)
                    else:
                        np.testing.assert_array_equal(got_v, v)
            reader = seqkv.arrays.TokenMajorReader(layout, 7)
            self.assertFalse(reader.add(data + bytes(4)))
            reader = seqkv.arrays.TokenMajorReader(layout, 7)
            self.assertTrue(reader.add(data[:-4]))
            self.assertFalse(reader.complete)


class AuthTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="seqkv-pyauth-")
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            f.write("tenants:\n  - name: acme\n    api_key_sha256: "
                    f"[\"{sha256_hex('acme-key')}\"]\n")
        self.server = ServerProcess([f"--config={config}"])

    def tearDown(self):
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_wrong_or_missing_key_is_unauthenticated(self):
        for key in ("wrong-key", None):
            with self.subTest(key=key), \
                    seqkv.Client(self.server.address, api_key=key) as client:
                with self.assertRaises(seqkv.UnauthenticatedError) as raised:
                    client.lookup("m", [0, 1, 2])
                self.assertEqual(raised.exception.code.name, "UNAUTHENTICATED")
                self.assertIsInstance(raised.exception, seqkv.Error)
                self.assertTrue(raised.exception.message)
                with self.assertRaises(seqkv.UnauthenticatedError):
                    client.get("m", [0, 1, 2])

    def test_right_key_works(self):
        with seqkv.Client(self.server.address, api_key="acme-key") as client:
            self.assertEqual(client.stats().tenant, "acme")
            k = np.ones((1, 1, 4, 8), np.float32)
            client.put("m", [1, 2, 3, 4], k, k)
            self.assertEqual(client.lookup("m", [1, 2, 3]).matched_tokens, 3)


class TransportTest(unittest.TestCase):

    def test_unix_socket(self):
        directory = tempfile.mkdtemp(prefix="seqkv-pyunix-")
        try:
            socket = os.path.join(directory, "seqkv.sock")
            with ServerProcess(listen=f"unix:{socket}") as server, \
                    seqkv.Client(server.address) as client:
                k = np.ones((1, 1, 4, 8), np.float32)
                client.put("m", [1, 2, 3, 4], k, k)
                self.assertEqual(client.lookup("m", [1, 2, 9]).matched_tokens,
                                 2)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    @unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
    def test_mtls(self):
        directory = tempfile.mkdtemp(prefix="seqkv-pytls-")
        try:
            def run(command):
                subprocess.run(command, shell=True, cwd=directory, check=True,
                               capture_output=True)
            run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
                "/CN=seqkv-test-ca -keyout ca.key -out ca.pem")
            for name, subject in (("server", "127.0.0.1"),
                                  ("client", "acme-worker")):
                run(f"openssl req -newkey rsa:2048 -nodes -subj /CN={subject} "
                    f"-keyout {name}.key -out {name}.csr")
                run(f"printf 'subjectAltName=IP:127.0.0.1' > {name}.ext && "
                    f"openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key "
                    f"-CAcreateserial -days 2 -extfile {name}.ext -out "
                    f"{name}.pem")
            path = lambda name: os.path.join(directory, name)  # noqa: E731
            with open(path("config.yaml"), "w") as f:
                f.write("tenants:\n  - name: acme\n    api_key_sha256: "
                        f"[\"{sha256_hex('acme-key')}\"]\n"
                        "    client_cert_subjects: [\"CN=acme-worker\"]\n"
                        f"tls:\n  cert_file: {path('server.pem')}\n"
                        f"  key_file: {path('server.key')}\n"
                        f"  client_ca_file: {path('ca.pem')}\n")
            with ServerProcess([f"--config={path('config.yaml')}"]) as server:
                # The client certificate alone identifies the tenant.
                tls = seqkv.Tls(root_cert=path("ca.pem"),
                                cert=path("client.pem"), key=path("client.key"))
                with seqkv.Client(server.address, tls=tls) as client:
                    self.assertEqual(client.stats().tenant, "acme")
                # Server-only TLS with a key; PEM bytes work as well as paths.
                with open(path("ca.pem"), "rb") as f:
                    root = f.read()
                with seqkv.Client(server.address, api_key="acme-key",
                                  tls=seqkv.Tls(root_cert=root)) as client:
                    self.assertEqual(client.stats().tenant, "acme")
                # Plaintext to a TLS port fails as UNAVAILABLE.
                with seqkv.Client(server.address, api_key="acme-key",
                                  timeout=5) as client:
                    with self.assertRaises(seqkv.UnavailableError):
                        client.stats()
            with self.assertRaises(seqkv.InvalidArgumentError):
                seqkv.Client("127.0.0.1:1", tls=seqkv.Tls(cert=path("client.pem")))
        finally:
            shutil.rmtree(directory, ignore_errors=True)


class SafetensorsTest(unittest.TestCase):

    @require_data(RAG_00)
    def test_reads_the_shared_caches(self):
        cache = seqkv.read_kv_file(data_path(RAG_00))
        self.assertEqual(cache.tokens.shape, (513,))
        self.assertEqual(cache.tokens[0], 0)
        self.assertEqual(cache.k.shape, (6, 2, 513, 128))
        self.assertEqual(cache.metadata["T"], "513")
        tensors, _ = seqkv.safetensors.load(data_path(RAG_00), ["logprobs"])
        self.assertEqual(tensors["logprobs"].shape, (512,))
        self.assertTrue(np.all(tensors["logprobs"] <= 0))

    def test_round_trip_and_corruption(self):
        directory = tempfile.mkdtemp(prefix="seqkv-pyst-")
        try:
            path = os.path.join(directory, "cache.safetensors")
            rng = np.random.default_rng(1)
            k = seqkv.float32_to_bf16(rng.standard_normal((2, 1, 7, 4)))
            v = seqkv.float32_to_bf16(rng.standard_normal((2, 1, 7, 4)))
            seqkv.write_kv_file(path, np.arange(7), k, v, metadata={"T": 7})
            cache = seqkv.read_kv_file(path)
            np.testing.assert_array_equal(cache.k, k)
            np.testing.assert_array_equal(cache.v, v)
            self.assertEqual(cache.metadata, {"T": "7"})
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[:-3])
            with self.assertRaises(seqkv.safetensors.SafetensorsError) as raised:
                seqkv.read_kv_file(path)
            self.assertIn("byte range", str(raised.exception))
            with open(path, "wb") as f:
                f.write(b"\xff" * 16)
            with self.assertRaises(seqkv.safetensors.SafetensorsError):
                seqkv.read_kv_file(path)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def test_bf16_conversion(self):
        values = np.array([1.0, -2.5, 3.14159, 1e-3, np.inf], np.float32)
        bits = seqkv.float32_to_bf16(values)
        self.assertEqual(bits[0], 0x3F80)
        back = seqkv.bf16_to_float32(bits)
        np.testing.assert_allclose(back[:4], values[:4], rtol=2**-8)
        self.assertEqual(back[4], np.inf)


if __name__ == "__main__":
    unittest.main()
