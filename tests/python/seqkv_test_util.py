"""Test helpers: a real seqkv-server on free loopback ports and a fresh data
directory, the shared data directory, and skips when it is absent.

CMake passes SEQKV_BIN_DIR (where seqkv-server is), SEQKV_DATA_DIR and
SEQKV_SOURCE_DIR in the environment (tests/python/CMakeLists.txt).
"""

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("SEQKV_BIN_DIR", "")
DATA_DIR = os.environ.get("SEQKV_DATA_DIR", "")
SOURCE_DIR = os.environ.get(
    "SEQKV_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
# 1 where the build requires the shared data: missing data then fails.
DATA_REQUIRED = os.environ.get("SEQKV_DATA_REQUIRED", "") == "1"


def data_path(relative):
    return os.path.join(DATA_DIR, relative)


def require_data(*relatives):
    """Skips the test (or class) when a shared data file is missing."""
    missing = [r for r in relatives if not os.path.exists(data_path(r))]
    if missing and not DATA_REQUIRED:
        return unittest.skip(
            f"needs {data_path(missing[0])} (the shared data directory, "
            "CMake's SEQKV_DATA_DIR)")
    return lambda test: test


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _die_with_parent():
    # A crashed test must not leave a server behind.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG,
                                                   signal.SIGKILL)


class ServerProcess:
    """seqkv-server started with the flags the C++ integration tests use;
    `address` is its gRPC target. Stopped with SIGTERM by stop()."""

    def __init__(self, extra_flags=(), listen="127.0.0.1:0"):
        self.dir = tempfile.mkdtemp(prefix="seqkv-pytest-")
        server = os.path.join(BIN_DIR, "seqkv-server")
        if not os.access(server, os.X_OK):
            raise RuntimeError(f"no seqkv-server at {server} (SEQKV_BIN_DIR)")
        # A server killed by a signal while starting (seen once in many
        # runs on a loaded machine: gRPC aborting when it could not start a
        # thread) is started once more, loudly; a clean refusal is not.
        for attempt in (1, 2):
            status = self._launch(server, extra_flags, listen)
            if status is None:
                return
            if status > 0 or attempt == 2:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError(
                    f"seqkv-server exited during startup: {status}")
            print(f"warning: seqkv-server died during startup ({status}), "
                  "starting it again", file=sys.stderr)
            shutil.rmtree(os.path.join(self.dir, "db"), ignore_errors=True)

    def _launch(self, server, extra_flags, listen):
        """Starts the server; None once ready, else its exit status."""
        ready = os.path.join(self.dir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        args = [server, f"--data_dir={self.dir}/db", f"--listen={listen}",
                "--admin_listen=127.0.0.1:0", f"--ready_file={ready}",
                "--sync_writes=false", "--log_level=warn", *extra_flags]
        self.process = subprocess.Popen(args, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return self.process.returncode
            try:
                with open(ready) as f:
                    ports = json.load(f)
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("seqkv-server did not become ready")
        self.address = (listen if listen.startswith("unix:") else
                        f"127.0.0.1:{ports['grpc_port']}")
        self.admin_port = ports.get("admin_port", 0)
        return None

    def file(self, name):
        return os.path.join(self.dir, name)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
