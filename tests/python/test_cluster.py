"""The Python client's cluster target against a real etcd and three real
seqkv-servers: it places prompts where the C++ client does (the same
golden vectors as tests/cluster/placement_test.cc, and the C++ `seqkv
lookup --server etcd://...` finds what Python stored), and a dead member
costs misses, never errors."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import numpy as np

import seqkv
from seqkv import cluster
from seqkv_test_util import BIN_DIR, ServerProcess, _die_with_parent

CHUNK = 16
PROMPT = 5 * CHUNK
MODEL = "py-cluster"
LAYOUT = seqkv.Layout(2, 2, 64, "bf16")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdProcess:
    """A single-member etcd on loopback (Debian's etcd-server)."""

    def __init__(self):
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        if not os.access(etcd, os.X_OK):
            raise RuntimeError("no etcd: apt-get install etcd-server")
        self.dir = tempfile.mkdtemp(prefix="seqkv-pyetcd-")
        client, peer = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{client}"
        self.process = subprocess.Popen(
            [etcd, f"--data-dir={self.dir}/data", "--name=test",
             f"--listen-client-urls=http://{self.endpoint}",
             f"--advertise-client-urls=http://{self.endpoint}",
             f"--listen-peer-urls=http://127.0.0.1:{peer}",
             f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
             f"--initial-cluster=test=http://127.0.0.1:{peer}",
             "--log-level=error", "--logger=zap"],
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                        f"http://{self.endpoint}/health", timeout=1) as r:
                    if b"true" in r.read():
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("etcd did not become healthy")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def prompt(i):
    return np.arange(PROMPT, dtype=np.int32) + 1000 * (i + 1)


def kv(i):
    rng = np.random.default_rng(i)
    shape = (LAYOUT.num_layers, LAYOUT.num_kv_heads, PROMPT, LAYOUT.head_dim)
    return (rng.integers(0, 1 << 15, shape, dtype=np.uint16),
            rng.integers(0, 1 << 15, shape, dtype=np.uint16))


class PlacementTest(unittest.TestCase):
    """The vectors tests/cluster/placement_test.cc checks for C++."""

    def test_golden_keys_and_owners(self):
        tokens = list(range(1000, 1064))
        key = cluster.placement_key("golden-model", "tenant-a", tokens, 16, 2)
        self.assertEqual(key, 0xfb4d3784b7ef9c38)
        self.assertEqual(
            cluster.placement_key("golden-model", "", tokens[:20], 16, 2),
            0x2aa539607fa4a04d)
        members = [{"id": f"node-{c}", "capacity_bytes": 0} for c in "abcd"]
        self.assertEqual(cluster.rank_members(key, members), [2, 0, 1, 3])
        for i, member in enumerate(members):
            member["capacity_bytes"] = (i + 1) << 30
        self.assertEqual(cluster.rank_members(key, members), [2, 3, 1, 0])
        for member in members:
            member["capacity_bytes"] = 0
        owners = "".join(
            str(cluster.rank_members(cluster.placement_key(
                "golden-model", "", range(i * 100, i * 100 + 48), 16, 2),
                members)[0]) for i in range(64))
        self.assertEqual(
            owners,
            "0230320132210311201321130000110321212203223112121013122020100121")

    def test_bad_targets(self):
        for bad in ("127.0.0.1:2379", "etcd://127.0.0.1:2379",
                    "etcd://127.0.0.1:2379/", "etcd://h/x", "etcd://h:0/x",
                    "etcd://h:1/bad name"):
            with self.assertRaises(seqkv.InvalidArgumentError, msg=bad):
                cluster.parse_target(bad)


class ClusterTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.etcd = EtcdProcess()
        flags = [f"--cluster_etcd={cls.etcd.endpoint}",
                 "--cluster_name=pytest", "--cluster_lease_s=2"]
        cls.servers = [ServerProcess(flags) for _ in range(3)]
        cls.target = f"etcd://{cls.etcd.endpoint}/pytest"
        cls.client = seqkv.ClusterClient(cls.target, timeout=2)
        deadline = time.monotonic() + 10
        while len(cls.client.serving()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        cls.client.register_model(MODEL, LAYOUT, chunk_tokens=CHUNK,
                                  default_codec="raw")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        for server in cls.servers:
            server.stop()
        cls.etcd.stop()

    def holders(self, tokens):
        """Indices of the servers that hold all of `tokens`."""
        found = []
        for i, server in enumerate(self.servers):
            if server.process.poll() is not None:
                continue
            with seqkv.Client(server.address, timeout=5) as direct:
                if direct.lookup(MODEL, tokens).matched_tokens == len(tokens):
                    found.append(i)
        return found

    def member_index(self, member_id):
        by_address = {m["id"]: m["address"] for m in self.client.members()}
        return [s.address for s in self.servers].index(by_address[member_id])

    def test_a_places_as_the_cpp_client(self):
        self.assertEqual(len(self.client.serving()), 3)
        per_node = [0, 0, 0]
        scratch = tempfile.mkdtemp(prefix="seqkv-pycluster-")
        try:
            for i in range(12):
                k, v = kv(i)
                stored = self.client.put(MODEL, prompt(i), k, v)
                self.assertEqual(stored.tokens, PROMPT)
                owner = self.member_index(self.client.owner(MODEL, prompt(i)))
                self.assertEqual(self.holders(prompt(i)), [owner])
                per_node[owner] += 1
                self.assertEqual(
                    self.client.lookup(MODEL, prompt(i)).matched_tokens,
                    PROMPT)
                self.assertEqual(self.client.lookup_by_chunks(
                    MODEL, prompt(i)).matched_tokens, PROMPT)
                got = self.client.get(MODEL, prompt(i))
                np.testing.assert_array_equal(got.k, k)
                np.testing.assert_array_equal(got.v, v)
                # The C++ client routes the same prompt to the same node.
                path = os.path.join(scratch, f"p{i}.safetensors")
                seqkv.write_kv_file(path, prompt(i), k, v)
                out = subprocess.run(
                    [os.path.join(BIN_DIR, "seqkv"), "lookup",
                     f"--server={self.target}", f"--model={MODEL}", path],
                    capture_output=True, text=True, timeout=60, check=True)
                self.assertIn(f'"matched_tokens":{PROMPT}', out.stdout)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.assertTrue(all(per_node), per_node)
        self.assertEqual(
            self.client.lookup(MODEL, prompt(999)).matched_tokens, 0)

    def test_b_dead_member_costs_misses_not_errors(self):
        for i in range(100, 109):
            self.client.put(MODEL, prompt(i), *kv(i))
        owners = {i: self.member_index(self.client.owner(MODEL, prompt(i)))
                  for i in range(100, 109)}
        victim = 1
        self.assertIn(victim, owners.values())
        self.servers[victim].process.send_signal(signal.SIGKILL)
        self.servers[victim].process.wait()
        for i, owner in owners.items():
            found = self.client.lookup(MODEL, prompt(i))
            self.assertEqual(found.matched_tokens,
                             0 if owner == victim else PROMPT, i)
            self.assertEqual(self.client.get(MODEL, prompt(i)).num_tokens,
                             0 if owner == victim else PROMPT)
        # Puts go to the next owner meanwhile.
        self.client.put(MODEL, prompt(500), *kv(500))
        self.assertEqual(
            self.client.lookup(MODEL, prompt(500)).matched_tokens, PROMPT)
        # Its lease expires: it drops out of the membership.
        deadline = time.monotonic() + 10
        while len(self.client.serving()) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.client.serving()), 2)


if __name__ == "__main__":
    unittest.main()
