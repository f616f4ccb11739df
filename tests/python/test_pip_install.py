"""`pip install --no-build-isolation client/python` into a virtual
environment made with --system-site-packages works offline (--no-index):
the package builds its stubs from proto/ and imports without PYTHONPATH."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from seqkv_test_util import SOURCE_DIR, ServerProcess


class PipInstallTest(unittest.TestCase):

    def test_install_into_venv_offline(self):
        directory = tempfile.mkdtemp(prefix="seqkv-pyvenv-")
        try:
            # A copy of the sources, laid out as in the repository: pip
            # builds in place and must not leave build/ or egg-info in the
            # tree, nor race with another build of it.
            source = os.path.join(directory, "src")
            shutil.copytree(os.path.join(SOURCE_DIR, "client", "python"),
                            os.path.join(source, "client", "python"),
                            ignore=shutil.ignore_patterns("__pycache__",
                                                          "build", "*.egg-info"))
            shutil.copytree(os.path.join(SOURCE_DIR, "proto"),
                            os.path.join(source, "proto"))
            venv = os.path.join(directory, "venv")
            subprocess.run([sys.executable, "-m", "venv",
                            "--system-site-packages", venv], check=True)
            python = os.path.join(venv, "bin", "python")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env["PIP_NO_INDEX"] = "1"  # offline, whatever pip.conf says
            install = subprocess.run(
                [python, "-m", "pip", "install", "--no-build-isolation",
                 "--no-index", "--disable-pip-version-check", "--quiet",
                 os.path.join(source, "client", "python")],
                env=env, capture_output=True, text=True, timeout=240)
            self.assertEqual(install.returncode, 0,
                             install.stdout + install.stderr)

            # Installed stubs and package, talking to a live server; run
            # from the venv's directory so nothing resolves to the sources.
            with ServerProcess() as server:
                script = (
                    "import numpy as np, seqkv, seqkv.v1.kvcache_pb2 as pb\n"
                    "print(seqkv.__file__)\nprint(pb.__file__)\n"
                    f"c = seqkv.Client({server.address!r})\n"
                    "k = np.arange(64, dtype=np.float32).reshape(1, 2, 4, 8)\n"
                    "c.put('m', [5, 6, 7, 8], k, k + 1)\n"
                    "got = c.get('m', [5, 6, 7, 9])\n"
                    "assert got.matched_tokens == 3, got.matched_tokens\n"
                    "assert (got.k == k[:, :, :3]).all()\n"
                    "print('ok')\n")
                run = subprocess.run([python, "-c", script], env=env,
                                     cwd=venv, capture_output=True, text=True,
                                     timeout=60)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            package, stubs, ok = run.stdout.split()
            self.assertTrue(package.startswith(venv), package)
            self.assertTrue(stubs.startswith(venv), stubs)
            self.assertEqual(ok, "ok")
        finally:
            shutil.rmtree(directory, ignore_errors=True)

if __name__ == "__main__":
    unittest.main()
