#!/usr/bin/env python3
"""How many bits decorrelating the channels of a KV cache would save.

A study, not a codec: it models what `predictive` does to one (layer, K/V)
group of a 256-token chunk -- K de-rotated to its pre-RoPE frame, one uniform
step for the whole group chosen so that the group meets a relative MSE, a
per-channel offset, symbols entropy-coded with one table per class of
channels (half-octave classes of mean |symbol|) -- and measures the ideal
entropy of the symbols with the channels as they are, and after an
orthonormal transform learned from other caches of the same model:

  per_head   one head_dim x head_dim KLT per KV head (cost: head_dim
             multiply-adds per element to decode);
  all_heads  one KLT over all KV heads' channels of a token (cost:
             kv_heads x head_dim multiply-adds per element);
  rank_R     the R leading directions of all_heads coded first, the rest in
             the channels' own basis (cost: R multiply-adds per element);
  sparse_K   each channel predicted, closed loop, from the K channels coded
             before it that correlate most with it (cost: K multiply-adds
             per element);
  block_B    channels grouped greedily by correlation into blocks of B, a
             KLT per block (cost: B multiply-adds per element);
  givens_G   G x C Givens rotations chosen greedily, a truncated Jacobi
             diagonalization (cost: 6 G flops per element).

With --contexts it also measures two entropy-coding contexts in the
channels' own basis, which cost no arithmetic: row_context (each token's
symbols coded with one of 4 tables picked by the token's mean |symbol|
against its channels', 2 bits of side information per token and head) and
previous_context (one of 4 tables picked by the same channel's |symbol| in
the token before).

The transform (or predictor) is fitted on --calibrate caches and measured on
--test caches, so the figures are for caches the transform never saw. Layer 0
is left out by default: `predictive` rebuilds it from the token ids.
Bits are ideal entropies (no tables, no container), so compare the columns
with each other, not with the codec's sizes.

usage: decorrelation_study.py --model_dir DIR --calibrate A.safetensors ...
                              --test B.safetensors ... [--rel_mse 0.01,0.03]
                              [--ranks 16] [--sparse 4,16] [--blocks 16]
                              [--givens 4]
Needs numpy. Caches: safetensors with k, v [layers, kv_heads, T, head_dim]
(post-RoPE, as ../shared/data/kv holds them); RoPE theta and convention from
the model's config.json.
"""

import argparse
import json
import struct
import sys

import numpy as np

CHUNK_TOKENS = 256


def load_safetensors(path):
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        tensors = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            f.seek(base + begin)
            raw = f.read(end - begin)
            if info["dtype"] == "BF16":
                array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(
                    np.float32)
            elif info["dtype"] == "F16":
                array = np.frombuffer(raw, np.float16).astype(np.float32)
            elif info["dtype"] == "F32":
                array = np.frombuffer(raw, np.float32)
            else:
                continue
            tensors[name] = array.reshape(info["shape"])
        return tensors


def undo_rope(k, theta, interleaved):
    """K [layers, heads, T, D] post-RoPE at positions 0..T-1 -> pre-RoPE."""
    d = k.shape[-1]
    half = d // 2
    inv = 1.0 / theta ** (np.arange(half) * 2.0 / d)
    angle = np.arange(k.shape[2])[:, None] * inv[None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    if interleaved:
        x1, x2 = k[..., 0::2], k[..., 1::2]
        out = np.empty_like(k)
        out[..., 0::2] = x1 * cos + x2 * sin
        out[..., 1::2] = x2 * cos - x1 * sin
        return out
    x1, x2 = k[..., :half], k[..., half:]
    return np.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], -1)


def entropy_bits(symbols):
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def coded_bits(q):
    """q [T, C] integer symbols: per-channel offsets, per-class tables."""
    d = q - np.round(q.mean(0)).astype(np.int64)
    mean_abs = np.abs(d).mean(0)
    classes = np.clip(np.floor(2 * np.log2(mean_abs + 1e-3)) + 8, 0, 15).astype(int)
    return sum(entropy_bits(d[:, classes == c]) for c in np.unique(classes))


def code_in_basis(x, basis, step):
    y = x if basis is None else x @ basis
    q = np.round(y / step)
    back = q * step if basis is None else (q * step) @ basis.T
    return coded_bits(q.astype(np.int64)), float(((x - back) ** 2).sum())


def context_bits(q, heads):
    """Symbols of q [T, C] coded with per-class tables split by a context."""
    d = q - np.round(q.mean(0)).astype(np.int64)
    mean_abs = np.abs(d).mean(0)
    classes = np.clip(np.floor(2 * np.log2(mean_abs + 1e-3)) + 8, 0, 15).astype(int)
    cls = np.broadcast_to(classes, d.shape)
    per_head = (np.abs(d) / np.maximum(mean_abs, 0.3)).reshape(len(d), heads, -1).mean(2)
    row = np.clip(np.floor(2 * np.log2(per_head + 1e-3)) + 2, 0, 3).astype(int)
    row = np.repeat(row, d.shape[1] // heads, axis=1)
    previous = np.zeros_like(d)
    previous[1:] = np.minimum(np.abs(d[:-1]), 3)
    def split(context):
        keys = cls * 4 + context
        return sum(entropy_bits(d[keys == k]) for k in np.unique(keys))
    return split(row) + 2 * len(d) * heads, split(previous)


def code_contexts(x, step, heads, which):
    q = np.round(x / step).astype(np.int64)
    return context_bits(q, heads)[which], float(((x - q * step) ** 2).sum())


def code_rank(x, leading, step):
    y = np.round((x @ leading) / step)
    prediction = (y * step) @ leading.T
    r = np.round((x - prediction) / step)
    back = prediction + r * step
    bits = coded_bits(y.astype(np.int64)) + coded_bits(r.astype(np.int64))
    return bits, float(((x - back) ** 2).sum())


def fit_sparse(a, k):
    cov = a.T @ a / len(a)
    var = np.diag(cov)
    ridge = 1e-9 * np.trace(cov) / len(cov)
    predictors = []
    for j in range(len(cov)):
        if j == 0:
            predictors.append((np.array([], int), np.array([])))
            continue
        corr = np.abs(cov[j, :j]) / np.sqrt(var[:j] * cov[j, j] + 1e-30)
        chosen = np.sort(np.argsort(-corr)[:k]) if k < j else np.arange(j)
        coef = np.linalg.solve(cov[np.ix_(chosen, chosen)] + ridge * np.eye(len(chosen)),
                               cov[chosen, j])
        predictors.append((chosen, coef))
    return predictors


def code_sparse(x, predictors, mean, step):
    back = np.zeros_like(x)
    q = np.zeros(x.shape, np.int64)
    for j, (chosen, coef) in enumerate(predictors):
        prediction = mean[j] + ((back[:, chosen] - mean[chosen]) @ coef if len(chosen) else 0)
        q[:, j] = np.round((x[:, j] - prediction) / step)
        back[:, j] = prediction + q[:, j] * step
    return coded_bits(q), float(((x - back) ** 2).sum())


def bits_at(code, x, rel_mse):
    """Bits of the largest step whose squared error stays within rel_mse."""
    budget = rel_mse * float((x ** 2).sum())
    lo, hi = 1e-6, 10 * float(np.sqrt((x ** 2).mean())) + 1e-6
    for _ in range(24):
        step = np.sqrt(lo * hi)
        if code(step)[1] > budget:
            hi = step
        else:
            lo = step
    return code(lo)[0]


def token_vectors(cache, tensor, layer):
    x = cache[tensor][layer]  # [heads, T, D]
    heads, tokens, dim = x.shape
    return x.transpose(1, 0, 2).reshape(tokens, heads * dim).astype(np.float64)


def block_klt(a, size):
    """Channels grouped greedily by |correlation| into blocks of `size`, a KLT
    per block: an orthonormal matrix with `size` nonzeros per column."""
    cov = a.T @ a / len(a)
    sd = np.sqrt(np.diag(cov)) + 1e-30
    corr = np.abs(cov / sd[:, None] / sd[None, :])
    np.fill_diagonal(corr, 0)
    left = set(range(len(cov)))
    basis = np.zeros_like(cov)
    while left:
        seed = max(left, key=lambda c: cov[c, c])
        block = [seed]
        left.remove(seed)
        while len(block) < size and left:
            members = list(left)
            gain = corr[np.ix_(members, block)].sum(1)
            best = members[int(np.argmax(gain))]
            block.append(best)
            left.remove(best)
        basis[np.ix_(block, block)] = klt(a[:, block])
    return basis


def givens(a, count):
    """`count` Givens rotations chosen greedily (truncated Jacobi): each zeroes
    the pair of channels with the largest |correlation| left, which lowers
    the sum of log variances (the high-rate bits) most. Cost to decode: one
    rotation (4 multiplies, 2 adds) per pair per token, 6*count/C flops per
    element in a group of C channels."""
    cov = a.T @ a / len(a)
    n = len(cov)
    basis = np.eye(n)
    for _ in range(count):
        var = np.diag(cov)
        corr = np.abs(cov) / np.sqrt(np.outer(var, var) + 1e-300)
        np.fill_diagonal(corr, 0)
        flat = int(np.argmax(corr))
        i, j = divmod(flat, n)
        if corr[i, j] < 1e-3:
            break
        angle = 0.5 * np.arctan2(2 * cov[i, j], cov[i, i] - cov[j, j])
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[c, -s], [s, c]])
        cov[:, [i, j]] = cov[:, [i, j]] @ rotation
        cov[[i, j], :] = rotation.T @ cov[[i, j], :]
        basis[:, [i, j]] = basis[:, [i, j]] @ rotation
    return basis


def klt(a):
    _, vectors = np.linalg.eigh(a.T @ a / len(a))
    return vectors[:, ::-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True, help="holds config.json")
    parser.add_argument("--calibrate", nargs="+", required=True)
    parser.add_argument("--test", nargs="+", required=True)
    parser.add_argument("--rel_mse", default="0.01,0.03")
    parser.add_argument("--ranks", default="16", help="rank_R columns; empty: none")
    parser.add_argument("--sparse", default="4,16", help="sparse_K columns; empty: none")
    parser.add_argument("--blocks", default="", help="block_B columns; empty: none")
    parser.add_argument("--givens", default="", help="givens_G columns (G rotations per channel); empty: none")
    parser.add_argument("--include_layer0", action="store_true")
    parser.add_argument("--contexts", action="store_true",
                        help="also the row_context and previous_context columns")
    args = parser.parse_args()

    with open(f"{args.model_dir}/config.json") as f:
        config = json.load(f)
    theta = float(config.get("rope_theta",
                             config.get("rope_parameters", {}).get("rope_theta", 10000.0)))
    interleaved = bool(config.get("rope_interleaved", False))

    def prepared(path):
        cache = load_safetensors(path)
        cache["k"] = undo_rope(cache["k"].astype(np.float64), theta, interleaved)
        return cache

    calibration = [prepared(p) for p in args.calibrate]
    tests = [prepared(p) for p in args.test]
    layers, heads, _, dim = tests[0]["k"].shape
    ranks = [int(r) for r in args.ranks.split(",") if r]
    sparse = [int(k) for k in args.sparse.split(",") if k]
    blocks = [int(b) for b in args.blocks.split(",") if b]
    rotations = [float(g) for g in args.givens.split(",") if g]
    columns = (["channels", "per_head", "all_heads"] + [f"rank_{r}" for r in ranks] +
               [f"sparse_{k}" for k in sparse] + [f"block_{b}" for b in blocks] +
               [f"givens_{g:g}" for g in rotations] +
               (["row_context", "previous_context"] if args.contexts else []))
    print(f"{layers} layers, {heads} KV heads of {dim}, RoPE theta {theta:g}; "
          f"calibrated on {len(calibration)} caches, measured on {len(tests)}",
          file=sys.stderr)
    print("| rel. MSE | tensor | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for rel_mse in [float(r) for r in args.rel_mse.split(",")]:
        for tensor in ("k", "v"):
            total = dict.fromkeys(columns, 0.0)
            elements = 0
            for layer in range(0 if args.include_layer0 else 1, layers):
                a = np.concatenate([token_vectors(c, tensor, layer) for c in calibration])
                mean = a.mean(0)
                a = a - mean
                full = klt(a)
                per_head = np.zeros_like(full)
                for h in range(heads):
                    s = slice(h * dim, (h + 1) * dim)
                    per_head[s, s] = klt(a[:, s])
                coders = {"channels": lambda x, step: code_in_basis(x, None, step),
                          "per_head": lambda x, step: code_in_basis(x, per_head, step),
                          "all_heads": lambda x, step: code_in_basis(x, full, step)}
                for r in ranks:
                    coders[f"rank_{r}"] = (
                        lambda x, step, lead=full[:, :r]: code_rank(x, lead, step))
                for k in sparse:
                    coders[f"sparse_{k}"] = (
                        lambda x, step, p=fit_sparse(a, k): code_sparse(x, p, mean, step))
                for b in blocks:
                    coders[f"block_{b}"] = (
                        lambda x, step, m=block_klt(a, b): code_in_basis(x, m, step))
                for g in rotations:
                    coders[f"givens_{g:g}"] = (
                        lambda x, step, m=givens(a, int(g * a.shape[1])): code_in_basis(x, m, step))
                if args.contexts:
                    coders["row_context"] = (
                        lambda x, step: code_contexts(x, step, heads, 0))
                    coders["previous_context"] = (
                        lambda x, step: code_contexts(x, step, heads, 1))
                for cache in tests:
                    vectors = token_vectors(cache, tensor, layer)
                    for first in range(0, len(vectors), CHUNK_TOKENS):
                        x = vectors[first:first + CHUNK_TOKENS]
                        elements += x.size
                        for name, code in coders.items():
                            total[name] += bits_at(lambda step: code(x, step), x, rel_mse)
            base = total["channels"] / elements
            cells = [f"{base:.3f}"] + [
                f"{total[c] / elements:.3f} ({total[c] / elements / base - 1:+.0%})"
                for c in columns[1:]]
            print(f"| {rel_mse:g} | {tensor.upper()} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
