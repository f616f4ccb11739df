#!/usr/bin/env python3
"""seqkv soak: mixed load on a real seqkv-server that is killed with SIGKILL
and restarted, whose disk fills up and frees, for --duration_s (10 minutes by
default); prints a JSON summary and exits 0 only when nothing went wrong.

    cmake --build build --target seqkv-server seqkv_python
    sudo env PYTHONPATH=client/python:build/python /usr/bin/python3 \\
        bench/soak/soak.py --server build/bin/seqkv-server --duration_s 600

Why a Python script: the soak is mostly a supervisor (it mounts a tmpfs,
kills and restarts the server, reads /proc, scans the server's log, writes
JSON), which needs nothing built in C++; and its load goes through the
in-tree Python client (client/python/seqkv), as an inference worker's would.
The C++ crash loop (tests/crash/crash_kill9_loop_test.cc) checks the same
contract through the C++ client. docs/TESTING.md describes both.

What it does:
- Data directory on a tmpfs of --disk_bytes it mounts itself (root; or
  --data_dir on a small filesystem you provide). Every --fill_every_s a filler
  file grows there until the disk is full, stays --fill_hold_s, and goes;
  a Put must then succeed again within --recovery_s, with no restart.
- Worker threads (--threads), spread over --tenants tenants, each in its own
  token space: Puts to three models (raw, lossless, turbo:3), lengths with
  partial chunks, Puts sharing prefixes; Gets and Lookups of their own and
  of their tenant's other workers' data; Deletes.
- Values are a function of the token prefix (as a model's are), so any
  range a Get returns can be checked by generating it again.
- Every --kill_every_s (on average) the server gets SIGKILL, restarts on
  the same data, and every worker's acknowledged Puts are read back:
  bit-exact (raw, lossless) or the bytes of their first read (turbo), and
  acknowledged Deletes must stay deleted.
- The server's VmRSS and VmHWM (/proc/PID/status) are sampled; when the
  server has --memory_budget_bytes, it runs with it and the peak RSS must
  stay within the budget plus --rss_overhead_bytes.
- The server may die only of the soak's SIGKILL: any other exit, and any
  abort or crash message in its log, is counted as an abort.
"""

import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np

try:
    import seqkv
except ImportError as error:
    sys.exit(f"soak: cannot import the seqkv client ({error}); run with "
             "PYTHONPATH=client/python:build/python after building the "
             "seqkv_python target")

# 2 KiB per token: whole raw and lossless chunks (256 tokens) become payload
# files, partial and lossy ones RocksDB values.
LAYERS, HEADS, HEAD_DIM = 4, 2, 64
CHUNK = 256
BASE_TOKENS = 1024
FAMILIES = 3
# One model per codec: chunks are deduplicated across the codecs of one
# model, so a lossless Put sharing a prefix with a lossy one would read lossy
# bytes back.
MODELS = (("soak-raw", "raw", True), ("soak-lossless", "lossless", True),
          ("soak-turbo", "turbo:3", False))
# What the server may write to its log when it dies on its own.
ABORT_PATTERNS = re.compile(
    r"terminate called|Aborted|Check failed|SIGABRT|SIGSEGV|SIGBUS|SIGILL|"
    r"SIGFPE|core dumped|\[critical\]|AddressSanitizer|"
    r"^F\d{4} \d\d:\d\d:\d\d|\*\*\* SIG", re.MULTILINE)

# Failure kinds --tolerate may exempt (a server bug known and tested
# elsewhere); aborts, failed starts and the soak's own errors never are.
TOLERABLE = ("lost", "served_corruptions", "data_loss", "lookup_overclaims",
             "resurrected", "deletes_ignored")

M64 = (1 << 64) - 1


def _splitmix_int(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _splitmix(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def prefix_kv(tokens):
    """k, v [layers, heads, tokens, head_dim] as bf16 bits: finite values,
    each position's a function of tokens[0..p] alone."""
    seeds = np.empty(len(tokens), np.uint64)
    h = 0x5EC4
    for i, t in enumerate(tokens):
        h = _splitmix_int(h ^ (int(t) & 0xFFFFFFFF))
        seeds[i] = h
    per_token = 2 * LAYERS * HEADS * HEAD_DIM
    words = _splitmix(seeds[:, None] +
                      np.arange(per_token // 4, dtype=np.uint64)[None, :])
    bits = words.view(np.uint16).reshape(len(tokens), 2, LAYERS, HEADS,
                                         HEAD_DIM)
    exponent = (np.uint16(120) + ((bits >> np.uint16(7)) & np.uint16(0xF)) %
                np.uint16(12))
    values = (bits & np.uint16(0x8000)) | (exponent << np.uint16(7)) | (
        bits & np.uint16(0x7F))
    k = np.ascontiguousarray(values[:, 0].transpose(1, 2, 0, 3))
    v = np.ascontiguousarray(values[:, 1].transpose(1, 2, 0, 3))
    return k, v


def check_get(asked, got):
    """'' when Get result `got` is a prefix of `asked` with exactly the
    generated values; else what differs."""
    n = len(got.tokens)
    if n > len(asked) or not np.array_equal(got.tokens, asked[:n]):
        return f"returned {n} tokens that are not a prefix of those asked"
    if n == 0:
        return ""
    k, v = prefix_kv(asked[:n])
    if not (np.array_equal(got.k, k) and np.array_equal(got.v, v)):
        return f"values differ ({n} tokens)"
    return ""


def digest(got):
    return hashlib.blake2b(got.tokens.tobytes() + got.k.tobytes() +
                           got.v.tobytes(), digest_size=16).hexdigest()


def code_name(error):
    code = getattr(error, "code", None)
    return code.name if code is not None else type(error).__name__


class Summary:
    """Counters shared by every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.errors = collections.defaultdict(collections.Counter)
        self.failures = []  # the first few, in words
        self.last_put_ok = 0.0  # monotonic time of the last acknowledged Put

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] += n

    def error(self, op, error):
        with self.lock:
            self.errors[op][code_name(error)] += 1

    def fail(self, kind, what):
        with self.lock:
            self.counts[kind] += 1
            if len(self.failures) < 50:
                self.failures.append(f"{kind}: {what}")
            if self.counts[kind] <= 5:
                print(f"soak: {kind}: {what}", file=sys.stderr, flush=True)


class Server:
    """seqkv-server as a child process: started, SIGKILLed, restarted on the
    same data; its output appended to one log file."""

    def __init__(self, binary, work, data_dir, flags):
        self.binary, self.work, self.flags = binary, work, flags
        self.data_dir = data_dir
        self.log_path = os.path.join(work, "server.log")
        self.ready = os.path.join(work, "ready.json")
        self.process = None
        self.lives = 0
        self.address = None
        self.admin_port = 0

    def start(self, timeout=120):
        """None once serving, else why it did not start."""
        if os.path.exists(self.ready):
            os.remove(self.ready)
        self.lives += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== soak: start {self.lives} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [self.binary, f"--data_dir={self.data_dir}",
                 "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                 f"--ready_file={self.ready}", *self.flags],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.work,
                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return (f"exited during startup: {self.process.returncode}"
                        f" ({self.last_log_line()})")
            try:
                with open(self.ready) as f:
                    ports = json.load(f)
                self.address = f"127.0.0.1:{ports['grpc_port']}"
                self.admin_port = ports.get("admin_port", 0)
                return None
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        return "did not become ready"

    def last_log_line(self):
        with open(self.log_path, errors="replace") as f:
            lines = f.read().strip().splitlines()
        return lines[-1] if lines else ""

    def kill(self):
        """SIGKILL; None, or how the server had died before it."""
        died = self.process.poll()
        if died is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            if self.process.returncode == -signal.SIGKILL:
                return None
            died = self.process.returncode
        return f"server had exited on its own with {died}"

    def pid(self):
        p = self.process
        return p.pid if p is not None and p.poll() is None else None

    def admin_json(self, path):
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.admin_port}{path}",
                    timeout=10) as response:
                return json.load(response)
        except (OSError, ValueError):
            return {}

    def admin_status(self, path):
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.admin_port}{path}",
                    timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return "unreachable"


def _die_with_parent():
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def server_has_flag(binary, flag):
    """Whether seqkv-server defines --flag (its --helpfull lists it)."""
    result = subprocess.run([binary, "--helpfull"], capture_output=True,
                            text=True, timeout=60)
    return f"-{flag}" in result.stdout + result.stderr


def node_ends(n):
    """Where the trie nodes of an n-token sequence end: each whole chunk,
    then the partial one."""
    return list(range(CHUNK, n, CHUNK)) + [n]


def nodes_of(key):
    """The trie nodes of sequence `key` = (model index, token bytes), each
    named by the sequence up to its end (which names its parent too)."""
    m, raw = key
    return [(m, raw[:4 * end]) for end in node_ends(len(raw) // 4)]


def last_chunk(raw):
    """Index of the chunk the last token of `raw` falls in."""
    return (len(raw) // 4 - 1) // CHUNK


class Worker:
    """One load thread's own token space and a model of the trie in it:
    which nodes are stored for certain, which may be (a Put or Delete whose
    outcome is unknown), which sequences were acknowledged. Only this worker
    writes its token space, so the model is exact; other workers only read
    it. Sequences and nodes are keyed (model index, token bytes)."""

    def __init__(self, index, tenant, api_key, seed, summary, max_entries):
        self.index, self.tenant, self.api_key = index, tenant, api_key
        self.rng = random.Random(seed)
        self.summary = summary
        self.max_entries = max_entries
        # Disjoint token ids per worker: no Put of one extends another's.
        low = 1 + index * 60000
        self.bases = [[np.array([self.rng.randrange(low, low + 60000)
                                 for _ in range(BASE_TOKENS)], np.int32)
                       for _ in range(FAMILIES)] for _ in MODELS]
        self.low = low
        self.lock = threading.Lock()  # entries are read by other workers
        # Acknowledged sequences all of whose nodes are stored: key ->
        # [tokens, lossy digest of the first read or None].
        self.entries = {}
        self.present = set()  # nodes stored for certain
        self.maybe = set()    # nodes that may be stored
        self.deleted = set()  # sequences whose Delete was acknowledged
        self.peers = []
        # (time, operation, key, outcome): what a failure message cites.
        self.history = []

    def note(self, op, key, outcome):
        self.history.append((round(time.monotonic(), 3), op, key, outcome))

    def related(self, key):
        """This worker's operations on sequences that are a prefix of
        `key` or extend it, oldest first, in words."""
        lines = []
        for when, op, other, outcome in self.history:
            if other is None:  # a kill
                if lines and not lines[-1].endswith("SIGKILL"):
                    lines.append(f"{when} SIGKILL")
            elif other[0] == key[0] and (other[1].startswith(key[1]) or
                                       key[1].startswith(other[1])):
                lines.append(f"{when} {op} {len(other[1]) // 4} tokens: "
                             f"{outcome}")
        return "; ".join(lines[-20:])

    def new_tokens(self):
        m = self.rng.randrange(len(MODELS))
        base = self.bases[m][self.rng.randrange(FAMILIES)]
        exact = MODELS[m][2]
        # The lossy model shares whole chunks only, so that each of its
        # sequences is served by its own nodes.
        shared = (self.rng.randrange(700) if exact else
                  CHUNK * self.rng.randrange(3))
        tail = 1 + self.rng.randrange(400)
        if exact and self.rng.randrange(3) == 0:
            shared, tail = 1 + self.rng.randrange(BASE_TOKENS), 0
        if self.rng.randrange(4) == 0:
            tail = CHUNK - shared % CHUNK
        tail_ids = [self.rng.randrange(self.low, self.low + 60000)
                    for _ in range(tail)]
        return m, np.concatenate([base[:shared],
                                  np.array(tail_ids, np.int32)])

    def _may_match_whole(self, key):
        """Whether a Lookup of sequence `key` may match all of it: some
        stored or maybe-stored node in its last chunk's place starts with
        its tokens (matching is token-granular)."""
        m, raw = key
        chunk = last_chunk(raw)
        return any(node[0] == m and node[1].startswith(raw) and
                   last_chunk(node[1]) == chunk
                   for node in self.present | self.maybe)

    def _forget_entries_using(self, nodes):
        for key in list(self.entries):
            if any(node in nodes for node in nodes_of(key)):
                del self.entries[key]

    # --- operations; each returns after one request ---

    def put(self, client, killing):
        m, tokens = self.new_tokens()
        model, codec, _ = MODELS[m]
        k, v = prefix_kv(tokens)
        key = (m, tokens.tobytes())
        try:
            client.put(model, tokens, k, v, codec=codec)
        except seqkv.Error as error:
            self.note("put", key, code_name(error))
            self.summary.error("put", error)
            with self.lock:
                self.maybe.update(n for n in nodes_of(key)
                                  if n not in self.present)
            return
        self.summary.add("acknowledged_puts")
        self.note("put", key, "OK")
        with self.lock:
            for node in nodes_of(key):
                self.present.add(node)
                self.maybe.discard(node)
            if key not in self.entries:
                self.entries[key] = [tokens, None]
        self.summary.last_put_ok = time.monotonic()

    def delete(self, client, killing):
        with self.lock:
            # Now and then a node that may be stored or any stored one, so
            # that the store keeps neither what failed Puts left behind nor
            # the ancestors of deleted sequences.
            pick = self.rng.randrange(4)
            if self.maybe and (pick == 0 or not self.entries):
                key = self.rng.choice(sorted(self.maybe))
                tokens = np.frombuffer(key[1], np.int32)
            elif self.present and (pick == 1 or not self.entries):
                key = self.rng.choice(sorted(self.present))
                tokens = np.frombuffer(key[1], np.int32)
            elif self.entries:
                key = self.rng.choice(list(self.entries))
                tokens = self.entries[key][0]
            else:
                return
        model = MODELS[key[0]][0]
        try:
            result = client.delete(model, tokens)
        except seqkv.Error as error:
            self.note("delete", key, code_name(error))
            self.summary.error("delete", error)
            with self.lock:
                taken = self._subtree(key)
                self._forget_entries_using(taken)
                self.maybe.update(taken & self.present)
                self.present -= taken
            return
        self.summary.add("acknowledged_deletes")
        self.note("delete", key, f"OK, {result.chunks_deleted} chunks")
        with self.lock:
            if result.chunks_deleted == 0 and key not in self.present:
                # Not stored, or stored and ignored like below: unknown.
                return
            if key in self.present and result.chunks_deleted == 0:
                # The node is stored for certain: the server ignored the
                # Delete. Keep modelling what it did, not what it should.
                self.summary.fail(
                    "deletes_ignored", f"{model} {len(tokens)} tokens: Delete "
                    f"OK but 0 chunks removed; history: {self.related(key)}")
                # Not picked again as a certain one.
                self.present.discard(key)
                self.maybe.add(key)
                self._forget_entries_using({key})
                return
            taken = self._subtree(key)
            self._forget_entries_using(taken)
            self.present -= taken
            self.maybe -= taken
            self.deleted.add(key)
            must_be_absent = not self._may_match_whole(key)
        if must_be_absent:
            self._check_absent(client, key, killing, "right after Delete")

    def _subtree(self, key):
        """The nodes a Delete of `key` removes: the node ending there and,
        for a chunk-aligned one, every node below it."""
        taken = {key}
        if (len(key[1]) // 4) % CHUNK == 0:
            taken |= {node for node in self.present | self.maybe
                      if node[0] == key[0] and node[1].startswith(key[1])}
        return taken

    def _check_absent(self, client, key, killing, when):
        tokens = np.frombuffer(key[1], np.int32)
        model = MODELS[key[0]][0]
        try:
            matched = client.lookup(model, tokens).matched_tokens
        except seqkv.Error as error:
            if not killing.is_set():
                self.summary.error("lookup", error)
            return
        if matched >= len(tokens):
            self.summary.fail(
                "resurrected", f"{model} {len(tokens)} tokens deleted "
                f"(acknowledged) but Lookup matches {matched} ({when}); "
                f"history: {self.related(key)}")

    def verify(self, client, key, killing, when):
        """An acknowledged entry must be whole and exact."""
        with self.lock:
            entry = self.entries.get(key)
        if entry is None:
            return
        tokens = entry[0]
        model, _, exact = MODELS[key[0]]
        where = f"{model} {len(tokens)} tokens ({when})"
        try:
            matched = client.lookup(model, tokens).matched_tokens
            got = client.get(model, tokens)
        except seqkv.DataLossError as error:
            self.summary.fail("data_loss", f"{where}: {error}")
            return
        except seqkv.Error as error:
            if not killing.is_set():
                self.summary.error("get", error)
            return
        self.summary.add("verified_reads")
        with self.lock:
            if key not in self.entries:
                return  # deleted meanwhile by this worker: cannot be
        if matched != len(tokens):
            self.summary.fail("lost", f"{where}: Lookup matches {matched}; "
                              f"history: {self.related(key)}")
        if len(got.tokens) != len(tokens):
            self.summary.fail("lost", f"{where}: Get returns "
                              f"{len(got.tokens)} tokens")
            return
        if exact:
            diff = check_get(tokens, got)
            if diff:
                self.summary.fail("served_corruptions", f"{where}: {diff}")
            return
        d = digest(got)
        with self.lock:
            if entry[1] is None:
                entry[1] = d
            first = entry[1]
        if d != first:
            self.summary.fail("served_corruptions",
                              f"{where}: lossy read differs from its first")

    def probe(self, client, killing):
        """What Lookup matches, Get must serve, exact. A prefix of a base of
        an exact model, or a peer's entry (read-only here: it may be
        deleted meanwhile, so only its bytes are checked)."""
        source = self
        if self.peers and self.rng.randrange(2) == 0:
            source = self.rng.choice(self.peers)
        if source is self:
            m = self.rng.randrange(2)
            base = self.bases[m][self.rng.randrange(FAMILIES)]
            tokens = base[:1 + self.rng.randrange(BASE_TOKENS)]
        else:
            with source.lock:
                keys = [k for k in source.entries if MODELS[k[0]][2]]
                if not keys:
                    return
                m, raw = self.rng.choice(keys)
            tokens = np.frombuffer(raw, np.int32)
        model = MODELS[m][0]
        try:
            matched = client.lookup(model, tokens).matched_tokens
            got = client.get(model, tokens)
        except seqkv.DataLossError as error:
            self.summary.fail("data_loss", f"{model} probe: {error}")
            return
        except seqkv.Error as error:
            if not killing.is_set():
                self.summary.error("probe", error)
            return
        self.summary.add("verified_reads")
        diff = check_get(tokens, got)
        if diff:
            self.summary.fail("served_corruptions", f"{model} probe: {diff}")
        # Only this worker deletes its own space, so a match stays.
        if source is self and len(got.tokens) < matched:
            self.summary.fail(
                "lookup_overclaims", f"{model}: Lookup matched {matched}, "
                f"Get served {len(got.tokens)}")

    def run(self, address, stop, killing):
        client = seqkv.Client(address, api_key=self.api_key, timeout=60)
        try:
            while not stop.is_set():
                with self.lock:
                    full = len(self.entries) >= self.max_entries
                    keys = list(self.entries)
                op = self.rng.randrange(100)
                try:
                    if op < (25 if full else 5):
                        self.summary.add("op_delete")
                        self.delete(client, killing)
                    elif op < 50:
                        self.summary.add("op_put")
                        self.put(client, killing)
                    elif op < 75 and keys:
                        self.summary.add("op_get")
                        self.verify(client, self.rng.choice(keys), killing,
                                    "under load")
                    else:
                        self.summary.add("op_probe")
                        self.probe(client, killing)
                except Exception as error:  # a bug of the soak: say so
                    self.summary.fail("soak_errors", repr(error))
                if killing.is_set():
                    time.sleep(0.05)
        finally:
            client.close()

    def verify_all(self, address, when):
        client = seqkv.Client(address, api_key=self.api_key, timeout=60)
        never = threading.Event()
        try:
            for key in list(self.entries):
                self.verify(client, key, never, when)
            for key in list(self.deleted):
                if not self._may_match_whole(key):
                    self._check_absent(client, key, never, when)
        finally:
            client.close()


class RssSampler(threading.Thread):
    def __init__(self, server, interval):
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.max_rss = self.max_hwm = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(self.interval):
            pid = self.server.pid()
            if pid is None:
                continue
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = f.read()
            except OSError:
                continue
            fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status,
                                     re.MULTILINE))
            if "VmRSS" in fields:
                self.samples += 1
                self.max_rss = max(self.max_rss, int(fields["VmRSS"]) << 10)
                self.max_hwm = max(self.max_hwm,
                                   int(fields.get("VmHWM", 0)) << 10)


class Disk:
    """The data directory's filesystem, and a filler file that fills it."""

    def __init__(self, args, work):
        self.mount = None
        self.mode = "none"
        if args.data_dir:
            self.root = args.data_dir
            self.mode = "dir"
        else:
            self.root = os.path.join(work, "disk")
            os.makedirs(self.root)
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={args.disk_bytes}",
                 "tmpfs", self.root], capture_output=True, text=True)
            if result.returncode == 0:
                self.mount = self.root
                self.mode = "tmpfs"
            else:
                print("soak: cannot mount a tmpfs (" +
                      result.stderr.strip() + "); the disk is not filled "
                      "(run as root, or pass --data_dir on a small "
                      "filesystem)", file=sys.stderr)
        self.filler = os.path.join(self.root, "filler")

    @property
    def can_fill(self):
        return self.mode != "none"

    def fill(self):
        """Grows the filler until the filesystem is full; its size."""
        block = b"\xa5" * (4 << 20)
        written = 0
        with open(self.filler, "ab", buffering=0) as f:
            while True:
                try:
                    written += f.write(block)
                except OSError:
                    break
            for size in (1 << 20, 64 << 10, 4 << 10, 512):
                try:
                    while True:
                        written += f.write(block[:size])
                except OSError:
                    pass
        return written

    def free(self):
        try:
            os.remove(self.filler)
        except FileNotFoundError:
            pass

    def close(self):
        self.free()
        if self.mount:
            subprocess.run(["umount", "-l", self.mount])


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    default_server = os.path.join(
        os.environ.get("SEQKV_BIN_DIR",
                       os.path.join(here, "..", "..", "build", "bin")),
        "seqkv-server")
    p = argparse.ArgumentParser(
        description="Soak seqkv-server: load, kill -9, full disk, RSS.")
    p.add_argument("--server", default=default_server,
                   help="seqkv-server binary")
    p.add_argument("--duration_s", type=float, default=600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--tenants", type=int, default=2)
    p.add_argument("--kill_every_s", type=float, default=45,
                   help="mean seconds between kills (each uniform in "
                   "[0.5, 1.5] times this); 0: never")
    p.add_argument("--disk_bytes", type=int, default=768 << 20,
                   help="size of the tmpfs the data directory lives on")
    p.add_argument("--data_dir", default="",
                   help="use this directory instead of a tmpfs (the filler "
                   "fills its filesystem: give it a small one)")
    p.add_argument("--fill_every_s", type=float, default=90,
                   help="seconds between disk fills; 0: never")
    p.add_argument("--fill_hold_s", type=float, default=8,
                   help="how long the disk stays full")
    p.add_argument("--recovery_s", type=float, default=30,
                   help="a Put must succeed this soon after the disk frees")
    p.add_argument("--memory_budget_bytes", type=int, default=128 << 20,
                   help="passed to the server when it has the flag (0: "
                   "not passed); the peak RSS must then stay within it "
                   "plus --rss_overhead_bytes")
    p.add_argument("--rss_overhead_bytes", type=int, default=256 << 20,
                   help="RSS allowed beyond the budget: code, RocksDB "
                   "(memtables, block cache), gRPC, the node index")
    p.add_argument("--max_entries", type=int, default=60,
                   help="acknowledged sequences per worker before Deletes "
                   "outweigh Puts")
    p.add_argument("--server_flag", action="append", default=[],
                   help="extra seqkv-server flag (repeatable)")
    p.add_argument("--tolerate", action="append", default=[],
                   choices=TOLERABLE,
                   help="a failure kind still counted and reported but not "
                   "failing the run: a known server bug (repeatable)")
    p.add_argument("--json", default="", help="also write the summary here")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (log, data)")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    args.server = os.path.abspath(args.server)
    if not os.access(args.server, os.X_OK):
        sys.exit(f"soak: no seqkv-server at {args.server} (--server)")
    print(f"soak: seed {args.seed}, {args.duration_s:g} s", file=sys.stderr)
    rng = random.Random(args.seed)
    summary = Summary()
    budget_checked = bool(args.memory_budget_bytes) and server_has_flag(
        args.server, "memory_budget_bytes")
    work = tempfile.mkdtemp(prefix="seqkv-soak-")
    disk = Disk(args, work)

    # Tenants with API keys; workers round-robin over them.
    keys = [f"soak-key-{t}" for t in range(args.tenants)]
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write("tenants:\n")
        for t, key in enumerate(keys):
            sha = hashlib.sha256(key.encode()).hexdigest()
            f.write(f"  - name: soak{t}\n    api_key_sha256: [\"{sha}\"]\n")
    flags = [f"--config={config}", "--log_level=warn", "--codec_threads=2"]
    if budget_checked:
        flags.append(f"--memory_budget_bytes={args.memory_budget_bytes}")
        # The server refuses a largest chunk beyond the budget; the soak's
        # chunks are 512 KiB.
        if server_has_flag(args.server, "max_chunk_bytes"):
            flags.append("--max_chunk_bytes="
                         f"{min(args.memory_budget_bytes // 4, 64 << 20)}")
    flags += args.server_flag

    workers = [Worker(i, i % args.tenants, keys[i % args.tenants],
                      rng.randrange(1 << 62), summary, args.max_entries)
               for i in range(args.threads)]
    for w in workers:
        w.peers = [p for p in workers if p is not w and p.tenant == w.tenant]

    server = Server(args.server, work, os.path.join(disk.root, "db"), flags)
    sampler = RssSampler(server, 0.25)
    disk_report = {"mode": disk.mode, "bytes": args.disk_bytes
                   if disk.mode == "tmpfs" else None, "fills": 0,
                   "not_recovered": 0, "max_recovery_s": 0.0,
                   "put_errors_while_full": {}, "readyz_while_full": {}}
    abort_details = []
    # At the end: what the server says it stores, and what that takes on
    # disk (a gap that grows over runs is space not given back).
    store = {}
    start = time.monotonic()
    next_fill = (start + args.fill_every_s * rng.uniform(0.3, 0.7)
                 if disk.can_fill and args.fill_every_s > 0 else float("inf"))

    def start_server(when):
        why = server.start()
        if why is None:
            return True
        summary.fail("start_failures", f"{when}: {why}")
        disk.free()  # a full disk may be why; try once more
        why = server.start()
        if why is None:
            return True
        summary.fail("start_failures", f"{when}, with the disk freed: {why}")
        return False

    try:
        ok_start = start_server("first start")
        if ok_start:
            register_models(server.address, keys)
        sampler.start()
        while ok_start and time.monotonic() - start < args.duration_s:
            left = args.duration_s - (time.monotonic() - start)
            segment = (left if args.kill_every_s <= 0 else
                       min(left, args.kill_every_s * rng.uniform(0.5, 1.5)))
            stop, killing = threading.Event(), threading.Event()
            threads = [threading.Thread(target=w.run,
                                        args=(server.address, stop, killing),
                                        daemon=True)
                       for w in workers]
            for t in threads:
                t.start()
            end = time.monotonic() + segment
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_fill:
                    # The kill waits for the fill and the recovery.
                    fill(disk, server, summary, disk_report, args)
                    next_fill = time.monotonic() + args.fill_every_s
                time.sleep(0.1)
                if server.process.poll() is not None:
                    break
            last = time.monotonic() - start >= args.duration_s
            if last:
                stop.set()
                for t in threads:
                    t.join()
            killing.set()
            why = server.kill()
            if why is not None:
                abort_details.append(why)
                summary.fail("aborts", why)
            else:
                summary.add("kills")
            for w in workers:
                w.history.append((round(time.monotonic(), 3), "kill", None,
                                  ""))
            stop.set()
            for t in threads:
                t.join()
            disk.free()
            if not start_server("restart after kill"):
                break
            summary.add("restarts")
            when = f"after restart {summary.counts['restarts']}"
            for w in workers:
                w.verify_all(server.address, when)
            if last:
                break
    finally:
        sampler.done.set()
        if server.process is not None and server.process.poll() is None:
            stats = server.admin_json("/v1/stats").get("global", {})
            store["bytes_stored"] = stats.get("bytes_stored")
            store["chunks_stored"] = stats.get("chunks_stored")
            store["data_dir_bytes"] = du(server.data_dir)
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(60)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
                summary.fail("aborts", "did not stop on SIGTERM")
            else:
                if server.process.returncode != 0:
                    summary.fail("aborts", "exit status "
                                 f"{server.process.returncode} on SIGTERM")
        disk.close()

    with open(server.log_path, errors="replace") as f:
        log = f.read()
    alerts = [m.group(0) for m in ABORT_PATTERNS.finditer(log)]
    for line in alerts[:20]:
        summary.fail("aborts", f"server log: {line}")
    # The server runs in the work directory: a core dump lands there.
    for name in sorted(os.listdir(work)):
        if name.startswith("core"):
            summary.fail("aborts", f"core dump {name}")
    rss_limit = (args.memory_budget_bytes + args.rss_overhead_bytes
                 if budget_checked else None)
    budget_exceeded = rss_limit is not None and sampler.max_rss > rss_limit
    c = summary.counts
    result = {
        "seed": args.seed,
        "duration_s": round(time.monotonic() - start, 1),
        "threads": args.threads,
        "tenants": args.tenants,
        "acknowledged_puts": c["acknowledged_puts"],
        "acknowledged_deletes": c["acknowledged_deletes"],
        "verified_reads": c["verified_reads"],
        "lost": c["lost"],
        "served_corruptions": c["served_corruptions"],
        "data_loss": c["data_loss"],
        "lookup_overclaims": c["lookup_overclaims"],
        "resurrected": c["resurrected"],
        "deletes_ignored": c["deletes_ignored"],
        "aborts": c["aborts"],
        "kills": c["kills"],
        "restarts": c["restarts"],
        "start_failures": c["start_failures"],
        "soak_errors": c["soak_errors"],
        "max_rss_bytes": sampler.max_rss,
        "max_hwm_bytes": sampler.max_hwm,
        "rss_samples": sampler.samples,
        "memory_budget_bytes": (args.memory_budget_bytes
                                if budget_checked else None),
        "rss_limit_bytes": rss_limit,
        "budget_checked": budget_checked,
        "budget_exceeded": budget_exceeded,
        "disk": disk_report,
        "store_at_end": store,
        "ops": {op: c[f"op_{op}"] for op in ("put", "get", "probe",
                                             "delete")},
        "errors_by_code": {op: dict(codes)
                           for op, codes in summary.errors.items()},
        "failures": summary.failures,
    }
    bad = sum(c[kind] for kind in TOLERABLE if kind not in args.tolerate) + (
        c["aborts"] + c["start_failures"] + c["soak_errors"] +
        disk_report["not_recovered"])
    result["tolerated"] = sorted(set(args.tolerate))
    result["ok"] = (bad == 0 and not budget_exceeded and
                    c["acknowledged_puts"] > 0)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if args.keep or not result["ok"]:
        print(f"soak: work directory kept: {work} (server.log)",
              file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["ok"] else 1


def register_models(address, keys):
    """Every tenant's models, so that a Lookup before a model's first Put
    is a miss rather than NOT_FOUND."""
    layout = seqkv.Layout(LAYERS, HEADS, HEAD_DIM, "bf16")
    for key in keys:
        with seqkv.Client(address, api_key=key, timeout=60) as client:
            for model, codec, _ in MODELS:
                client.register_model(model, layout, chunk_tokens=CHUNK,
                                      default_codec=codec)


def fill(disk, server, summary, report, args):
    """Fills the disk, holds it full, frees it; then a Put must succeed
    within --recovery_s (no restart)."""
    report["fills"] += 1
    with summary.lock:
        before = summary.errors["put"].copy()
    size = disk.fill()
    print(f"soak: disk full ({size >> 20} MiB filler)", file=sys.stderr,
          flush=True)
    held_until = time.monotonic() + args.fill_hold_s
    readyz = report["readyz_while_full"]
    while time.monotonic() < held_until:
        code = str(server.admin_status("/readyz"))
        readyz[code] = readyz.get(code, 0) + 1
        time.sleep(1)
        if server.process.poll() is not None:
            break
    disk.free()
    freed = time.monotonic()
    with summary.lock:
        errors = summary.errors["put"] - before
    for code, n in errors.items():
        report["put_errors_while_full"][code] = (
            report["put_errors_while_full"].get(code, 0) + n)
    deadline = freed + args.recovery_s
    while time.monotonic() < deadline:
        if summary.last_put_ok > freed:
            report["max_recovery_s"] = round(
                max(report["max_recovery_s"], summary.last_put_ok - freed), 2)
            return
        if server.process.poll() is not None:
            return  # counted as an abort at the kill
        time.sleep(0.1)
    if summary.last_put_ok <= freed:
        report["not_recovered"] += 1
        summary.fail("not_recovered", f"no Put succeeded within "
                     f"{time.monotonic() - freed:.1f} s of freeing the disk")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
