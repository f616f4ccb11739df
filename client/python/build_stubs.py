"""Generates the Python gRPC stubs of proto/seqkv/v1/kvcache.proto (and the
messages of region.proto, the shared memory region socket's) with
grpc_tools (Debian's python3-grpc-tools) into OUT_DIR/seqkv/v1/, the
subpackage seqkv.v1 of the client. Used by the CMake build and by setup.py.

    python3 build_stubs.py PROTO_DIR OUT_DIR
"""

import os
import sys

PROTOS = ("seqkv/v1/kvcache.proto", "seqkv/v1/region.proto")


def generate(proto_dir, out_dir):
    from grpc_tools import protoc  # a build-time dependency only

    sources = [os.path.join(proto_dir, proto) for proto in PROTOS]
    for proto, source in zip(PROTOS, sources):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"no {proto} under {proto_dir}")
    package_dir = os.path.join(out_dir, "seqkv", "v1")
    os.makedirs(package_dir, exist_ok=True)
    # region.proto has no service: its _grpc module is empty but harmless.
    status = protoc.main([
        "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}", *sources
    ])
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {sources} ({status})")
    with open(os.path.join(package_dir, "__init__.py"), "w") as f:
        f.write('"""Generated from proto/seqkv/v1/*.proto."""\n')


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    generate(sys.argv[1], sys.argv[2])
