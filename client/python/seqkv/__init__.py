"""seqkv: a Python client of the seqkv KV-cache store.

    import seqkv
    client = seqkv.Client("127.0.0.1:50551", api_key=None)
    client.put("my-model", tokens, k, v, codec="lossless")
    matched = client.lookup("my-model", tokens).matched_tokens
    k, v = client.get("my-model", tokens)

See docs/PYTHON.md for the API, the errors and the dtypes.
"""

import pkgutil

# The generated gRPC stubs are the subpackage seqkv.v1 (the proto package's
# own name). An installed package holds them here; a build tree writes them
# to <build>/python/seqkv/v1, which this finds on sys.path.
__path__ = pkgutil.extend_path(__path__, __name__)

from . import errors as _errors  # noqa: E402
from .arrays import bf16_to_float32, float32_to_bf16  # noqa: E402
from .client import (DEFAULT_MESSAGE_BYTES, Client, DeleteResult,  # noqa: E402
                     GetResult, LookupResult, ModelInfo, PutResult,
                     RegionGetResult, Stats, Tls)
from .cluster import ClusterClient  # noqa: E402
from .errors import *  # noqa: E402,F403 (Error and one subclass per code)
from .layout import Layout, Rope  # noqa: E402
from .safetensors import KvFile, read_kv_file, write_kv_file  # noqa: E402
from .shm import Region  # noqa: E402

__all__ = [
    "Client", "ClusterClient", "Tls", "Layout", "Rope", "PutResult", "LookupResult",
    "GetResult", "DeleteResult", "ModelInfo", "Stats", "Region",
    "RegionGetResult",
    "DEFAULT_MESSAGE_BYTES", "KvFile", "read_kv_file", "write_kv_file",
    "bf16_to_float32", "float32_to_bf16", *_errors.__all__,
]
__version__ = "0.1.0"
