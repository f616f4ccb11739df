"""The safetensors format in pure numpy: an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range (and
optional "__metadata__" strings), then the raw little-endian data.

bf16 tensors come back as uint16 arrays of their bits (numpy has no
bfloat16); `seqkv.bf16_to_float32` widens them.
"""

import dataclasses
import json
import struct

import numpy as np

from . import errors

_DTYPES = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "U32": np.dtype("<u4"), "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"), "U64": np.dtype("<u8"), "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
# Header size limit of the reference implementation: a corrupt length must
# not make us read gigabytes of "JSON".
_MAX_HEADER_BYTES = 100 << 20


class SafetensorsError(errors.InvalidArgumentError):
    """A file that is not valid safetensors; the message says where."""


def _parse_header(path, header, data_bytes):
    try:
        entries = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"{path}: header is not JSON: {error}") from None
    if not isinstance(entries, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = entries.pop("__metadata__", None) or {}
    specs = {}
    for name, entry in entries.items():
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(
                f"{path}: tensor {name!r} has a bad header entry {entry!r}"
            ) from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if (min(shape, default=0) < 0 or not 0 <= begin <= end <= data_bytes
                or end - begin != count * dtype.itemsize):
            raise SafetensorsError(
                f"{path}: tensor {name!r} ({entry['dtype']} {list(shape)}) "
                f"has byte range [{begin}, {end}) that does not fit its shape "
                f"or the file's {data_bytes} data bytes")
        specs[name] = (entry["dtype"], dtype, shape, begin, end)
    return specs, metadata


def load(path, names=None):
    """(tensors, metadata) of a file: a dict name -> numpy array, and the
    "__metadata__" strings. `names`: read only these tensors (a missing one
    raises NotFoundError)."""
    tensors, metadata, _ = read(path, names)
    return tensors, metadata


def read(path, names=None):
    """(tensors, metadata, dtypes): load(), plus each tensor's safetensors
    dtype name ("BF16", "F32", ...), which tells bf16 bits from uint16."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise SafetensorsError(f"{path}: shorter than the 8-byte header "
                                   "length")
        (header_bytes,) = struct.unpack("<Q", prefix)
        f.seek(0, 2)
        file_bytes = f.tell()
        if header_bytes > min(_MAX_HEADER_BYTES, file_bytes - 8):
            raise SafetensorsError(
                f"{path}: header length {header_bytes} exceeds the file")
        f.seek(8)
        specs, metadata = _parse_header(path, f.read(header_bytes),
                                        file_bytes - 8 - header_bytes)
        if names is not None:
            missing = [n for n in names if n not in specs]
            if missing:
                raise errors.NotFoundError(
                    f"{path}: no tensor {missing[0]!r} (has "
                    f"{sorted(specs)})")
            specs = {n: specs[n] for n in names}
        tensors = {}
        base = 8 + header_bytes
        for name, (_, dtype, shape, begin, end) in specs.items():
            f.seek(base + begin)
            data = bytearray(end - begin)  # writable arrays, read in place
            if f.readinto(data) != len(data):
                raise SafetensorsError(f"{path}: truncated while reading "
                                       f"{name!r}")
            array = np.frombuffer(data, dtype=dtype).reshape(shape)
            tensors[name] = array.astype(dtype.newbyteorder("="), copy=False)
    return tensors, metadata, {name: spec[0] for name, spec in specs.items()}


def save(path, tensors, metadata=None, dtypes=None):
    """Writes numpy arrays as safetensors. uint16 arrays are written as U16
    unless `dtypes` names them "BF16" (e.g. {"k": "BF16"})."""
    dtypes = dtypes or {}
    by_numpy = {v.newbyteorder("="): k for k, v in _DTYPES.items()
                if k != "BF16"}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = dtypes.get(name) or by_numpy.get(array.dtype)
        if dtype is None or dtype not in _DTYPES:
            raise errors.InvalidArgumentError(
                f"tensor {name!r} has unsupported dtype {array.dtype}")
        blob = array.astype(_DTYPES[dtype], copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


@dataclasses.dataclass
class KvFile:
    """A KV cache dump: token ids, k and v [layers, kv_heads, tokens,
    head_dim] (bf16 as uint16 bits), dtype name, and the file's metadata."""

    tokens: np.ndarray
    k: np.ndarray
    v: np.ndarray
    dtype: str
    metadata: dict

    def __iter__(self):  # tokens, k, v = read_kv_file(path)
        return iter((self.tokens, self.k, self.v))


_KV_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}


def read_kv_file(path):
    """Reads a cache in the format of shared/data/kv: `tokens` int32 [T] and
    `k`, `v` [layers, kv_heads, T, head_dim] in bf16, fp16 or fp32."""
    tensors, metadata, kinds = read(path, ["tokens", "k", "v"])
    tokens, k, v = tensors["tokens"], tensors["k"], tensors["v"]
    kind = kinds["k"]
    if kind not in _KV_DTYPES or kinds["v"] != kind:
        raise SafetensorsError(
            f"{path}: k and v must both be BF16, F16 or F32, got "
            f"{kinds['k']} and {kinds['v']}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise SafetensorsError(f"{path}: tokens must be integers, got "
                               f"{kinds['tokens']}")
    if tokens.ndim != 1 or k.ndim != 4 or k.shape != v.shape or \
            k.shape[2] != tokens.shape[0]:
        raise SafetensorsError(
            f"{path}: expected tokens [T] and k, v [layers, kv_heads, T, "
            f"head_dim], got {list(tokens.shape)}, {list(k.shape)}, "
            f"{list(v.shape)}")
    return KvFile(tokens.astype(np.int32, copy=False), k, v,
                  _KV_DTYPES[kind], metadata)


def write_kv_file(path, tokens, k, v, dtype="bf16", metadata=None):
    """Writes tokens, k and v in the format read_kv_file reads."""
    name = {v: k for k, v in _KV_DTYPES.items()}[dtype]
    save(path, {"tokens": np.asarray(tokens, dtype=np.int32), "k": k, "v": v},
         metadata, {"k": name, "v": name})
