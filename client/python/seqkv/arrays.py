"""KV tensors in and out: numpy or torch, and the token-major wire order.

Inference engines hold a cache per tensor as [layers, kv_heads, tokens,
head_dim]; seqkv's wire order is token-major, [tokens][layers][K|V][heads]
[head_dim]. Converting is one vectorised copy each way.

dtypes: numpy float16/float32 are fp16/fp32; numpy has no bfloat16, so bf16
travels as the raw bits in uint16 arrays (`bf16_to_float32`,
`float32_to_bf16` convert). torch bfloat16/float16/float32 tensors map
directly, on any device (they are copied to the CPU).
"""

import sys

import numpy as np

from . import errors
from .layout import DTYPES

_NUMPY_DTYPES = {
    np.dtype("uint16"): "bf16",
    np.dtype("float16"): "fp16",
    np.dtype("float32"): "fp32",
}


def _torch():
    return sys.modules.get("torch")


def is_torch(x):
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _torch_dtypes(torch):
    return {torch.bfloat16: "bf16", torch.float16: "fp16",
            torch.float32: "fp32"}


def to_numpy(x, name):
    """(array, dtype name) for a numpy array or torch tensor of KV data,
    without copying where the input already lives on the CPU."""
    if is_torch(x):
        torch = _torch()
        dtype = _torch_dtypes(torch).get(x.dtype)
        if dtype is None:
            raise errors.InvalidArgumentError(
                f"{name} has dtype {x.dtype}; seqkv takes torch.bfloat16, "
                "torch.float16 or torch.float32")
        x = x.detach().cpu()
        if dtype == "bf16":
            return x.view(torch.int16).numpy().view(np.uint16), dtype
        return x.numpy(), dtype
    if not isinstance(x, np.ndarray):
        raise errors.InvalidArgumentError(
            f"{name} must be a numpy array or a torch tensor, not "
            f"{type(x).__name__}")
    dtype = _NUMPY_DTYPES.get(x.dtype.newbyteorder("="))
    if dtype is None:
        raise errors.InvalidArgumentError(
            f"{name} has dtype {x.dtype}; seqkv takes uint16 (bf16 bits), "
            "float16 or float32")
    return x, dtype


def tokens_to_numpy(tokens, name="tokens"):
    """Token ids as a contiguous little-endian int32 array."""
    if is_torch(tokens):
        tokens = tokens.detach().cpu().numpy()
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise errors.InvalidArgumentError(
            f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise errors.InvalidArgumentError(
            f"{name} must be integers, got dtype {array.dtype}")
    if array.size and (array.min() < -2**31 or array.max() >= 2**31):
        raise errors.InvalidArgumentError(f"{name} has ids outside int32")
    return np.ascontiguousarray(array, dtype="<i4")


def check_kv(k, v, num_tokens):
    """Checks k (and v) of shape [layers, kv_heads, tokens, head_dim] against
    `num_tokens` token ids; returns (list of numpy tensors, dtype name). v
    None means a latent layout (one tensor per layer)."""
    k, dtype = to_numpy(k, "k")
    tensors = [k]
    if v is not None:
        v, v_dtype = to_numpy(v, "v")
        if v_dtype != dtype:
            raise errors.InvalidArgumentError(
                f"k is {dtype} but v is {v_dtype}; both must be the same")
        if v.shape != k.shape:
            raise errors.InvalidArgumentError(
                f"k has shape {tuple(k.shape)} but v has {tuple(v.shape)}; "
                "both must be [layers, kv_heads, tokens, head_dim]")
        tensors.append(v)
    if k.ndim != 4:
        raise errors.InvalidArgumentError(
            f"k must be [layers, kv_heads, tokens, head_dim], got shape "
            f"{tuple(k.shape)}")
    layers, heads, tokens, head_dim = k.shape
    if tokens != num_tokens:
        raise errors.InvalidArgumentError(
            f"k and v hold {tokens} tokens (dimension 2) but {num_tokens} "
            "token ids were given")
    if min(layers, heads, head_dim) == 0:
        raise errors.InvalidArgumentError(
            f"k has an empty dimension: shape {tuple(k.shape)}")
    return tensors, dtype


def token_major(tensors, begin, end, out=None):
    """Tokens [begin, end) of checked tensors in wire order: an array
    [tokens, layers, K|V, heads, head_dim], one vectorised copy per tensor;
    into `out` (e.g. a view of a shared memory region) when given."""
    layers, heads, _, head_dim = tensors[0].shape
    wire = out if out is not None else np.empty(
        (end - begin, layers, len(tensors), heads, head_dim),
        dtype=tensors[0].dtype.newbyteorder("<"))
    for index, tensor in enumerate(tensors):
        wire[:, :, index] = tensor[:, :, begin:end].transpose(2, 0, 1, 3)
    return wire


def to_token_major(k, v, num_tokens):
    """(wire array [tokens, layers, K|V, heads, head_dim], dtype name) of
    the whole cache; see check_kv."""
    tensors, dtype = check_kv(k, v, num_tokens)
    return token_major(tensors, 0, num_tokens), dtype


class TokenMajorReader:
    """Scatters wire bytes, in pieces of any size, straight into k and v
    [layers, kv_heads, tokens, head_dim]: whole tokens of each piece in one
    vectorised copy per tensor, a token split across pieces through a
    one-token buffer. Memory is the output and one token."""

    def __init__(self, layout, num_tokens):
        self._layout = layout
        self._dtype = DTYPES[layout.dtype][2]
        self._token_bytes = layout.bytes_per_token
        self._num_tokens = num_tokens
        shape = (layout.num_layers, layout.num_kv_heads, num_tokens,
                 layout.head_dim)
        self._out = [np.empty(shape, self._dtype)
                     for _ in range(layout.tensors_per_layer)]
        self._done = 0  # whole tokens written
        self._partial = bytearray()

    @property
    def complete(self):
        return self._done == self._num_tokens and not self._partial

    def add(self, piece):
        """Adds the next bytes; False if they go past num_tokens."""
        piece = memoryview(piece)
        if self._partial:
            need = self._token_bytes - len(self._partial)
            self._partial += piece[:need]
            piece = piece[need:]
            if len(self._partial) < self._token_bytes:
                return True
            if not self._write(self._partial, 1):
                return False
            self._partial = bytearray()
        whole = len(piece) // self._token_bytes
        if whole and not self._write(piece, whole):
            return False
        self._partial += piece[whole * self._token_bytes:]
        return self._done < self._num_tokens or not self._partial

    def _write(self, data, count):
        if self._done + count > self._num_tokens:
            return False
        layout = self._layout
        wire = np.frombuffer(data, self._dtype,
                             count * self._token_bytes // self._dtype.itemsize
                             ).reshape(count, layout.num_layers,
                                       layout.tensors_per_layer,
                                       layout.num_kv_heads, layout.head_dim)
        for index, out in enumerate(self._out):
            out[:, :, self._done:self._done + count] = \
                wire[:, :, index].transpose(1, 2, 0, 3)
        self._done += count
        return True

    def finish(self, as_torch=False):
        """(k, v), v None for latent layouts; bf16 is uint16 in numpy,
        bfloat16 in torch."""
        out = []
        for tensor in self._out:
            tensor = tensor.astype(tensor.dtype.newbyteorder("="), copy=False)
            out.append(_as_torch(tensor, self._layout.dtype) if as_torch
                       else tensor)
        if len(out) == 1:
            out.append(None)
        return out[0], out[1]


def from_token_major(data, layout, num_tokens, as_torch=False):
    """(k, v) of shape [layers, kv_heads, tokens, head_dim] from the wire
    bytes of num_tokens tokens; v is None for latent layouts."""
    reader = TokenMajorReader(layout, num_tokens)
    if not reader.add(data) or not reader.complete:
        raise errors.InvalidArgumentError(
            f"{len(data)} bytes are not {num_tokens} tokens of {layout}")
    return reader.finish(as_torch)


def _as_torch(array, dtype):
    import torch  # only callers that ask for torch need it
    if dtype == "bf16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


# Seed of the chunk digests of LookupRequest.chunk_digests ("seqptoks");
# part of the wire API (proto/chunk_digest.h).
CHUNK_DIGEST_SEED = 0x73657170746f6b73


def chunk_digests(ids, chunk_tokens):
    """The bytes of LookupRequest.chunk_digests for int32 `ids`, a whole
    number of chunks: XXH3-64 (seeded) of each chunk's little-endian ids,
    packed as little-endian u64s."""
    try:
        import xxhash  # Debian's python3-xxhash; only this call needs it
    except ImportError:
        raise errors.FailedPreconditionError(
            "chunk digests need the xxhash module (apt-get install "
            "python3-xxhash)") from None
    data = np.ascontiguousarray(ids, dtype="<i4").tobytes()
    step = chunk_tokens * 4
    digests = [xxhash.xxh3_64_intdigest(data[i:i + step],
                                        seed=CHUNK_DIGEST_SEED)
               for i in range(0, len(data), step)]
    return np.asarray(digests, dtype="<u8").tobytes()


def bf16_to_float32(bits):
    """float32 values of bf16 bits (uint16 array): exact."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values):
    """bf16 bits (uint16) of float32 values, rounded to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    out = rounded.astype(np.uint16)
    out[np.isnan(values)] = 0x7FC0
    return out
