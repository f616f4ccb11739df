"""Writes two small KV-cache files (the format of shared/data/kv) that share
their first 256 tokens: a.safetensors and b.safetensors in the given folder."""
import json
import struct
import sys

import numpy as np


def write(path, tokens, k, v):
    tensors = {"tokens": ("I32", tokens), "k": ("BF16", k), "v": ("BF16", v)}
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        data = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def bf16(rng, shape):
    # bf16 as the top half of float32 bits.
    return (rng.standard_normal(shape).astype(np.float32).view(np.uint32)
            >> 16).astype(np.uint16)


def main(out):
    rng = np.random.default_rng(20261207)
    layers, heads, dim = 2, 1, 64
    a_tokens = (np.arange(300, dtype=np.int32) * 7) % 97
    b_tokens = a_tokens.copy()
    b_tokens[256:] += 1000
    k = bf16(rng, (layers, heads, 300, dim))
    v = bf16(rng, (layers, heads, 300, dim))
    write(f"{out}/a.safetensors", a_tokens, k, v)
    k_b, v_b = k.copy(), v.copy()
    k_b[:, :, 256:] = bf16(rng, (layers, heads, 44, dim))
    v_b[:, :, 256:] = bf16(rng, (layers, heads, 44, dim))
    write(f"{out}/b.safetensors", b_tokens, k_b, v_b)


if __name__ == "__main__":
    main(sys.argv[1])
