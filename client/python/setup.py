"""Builds the seqkv package with its gRPC stubs generated from
../../proto (grpc_tools at build time): pip install --no-build-isolation
client/python. The metadata is in pyproject.toml."""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        sys.path.insert(0, HERE)
        import build_stubs
        proto_dir = os.environ.get("SEQKV_PROTO_DIR") or os.path.join(
            HERE, "..", "..", "proto")
        build_stubs.generate(proto_dir, self.build_lib)


setup(cmdclass={"build_py": BuildWithStubs})
