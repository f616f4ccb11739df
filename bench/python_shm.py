#!/usr/bin/python3
"""The Python client's Put and Get through shared memory against the same
client over gRPC, measured in one run against one seqkv-server.

For each value size (--sizes_mib; 1 and 32 MiB by default) and op, one
client thread runs back to back for --duration_s seconds:
  shm region  put_from_region / get_into_region: the bytes already lie in
              a region in wire order (an engine's staging buffer); nothing
              is copied in this process;
  shm arrays  put(k, v) / get(): numpy arrays [layers, kv_heads, tokens,
              head_dim] transposed into (out of) a scratch region;
  grpc arrays the same calls with transport="grpc": the arrays transposed
              into (out of) data messages.
Every Put stores new tokens (a new chunk: --chunk_tokens is the value's
token count), raw codec, --sync_writes=false; Gets cycle over 8 stored
values. Prints a Markdown table with GB/s, p50/p99 and the ratios.

    PYTHONPATH=client/python:build/python \\
        bench/python_shm.py --build_dir build --duration_s 5
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import seqkv

MODES = ("shm region", "shm arrays", "grpc arrays")


def start_server(bin_dir, work):
    ready = os.path.join(work, "ready.json")
    socket = os.path.join(work, "seqkv.sock")
    process = subprocess.Popen([
        os.path.join(bin_dir, "seqkv-server"), f"--data_dir={work}/db",
        f"--listen=unix:{socket}", "--admin_listen=127.0.0.1:0",
        f"--ready_file={ready}", "--sync_writes=false",
        "--default_codec=raw", "--log_level=warn"])
    for _ in range(600):
        if os.path.exists(ready) and os.path.getsize(ready):
            return process, f"unix:{socket}"
        if process.poll() is not None:
            sys.exit(f"seqkv-server exited: {process.returncode}")
        time.sleep(0.1)
    process.kill()
    sys.exit("seqkv-server did not become ready")


def timed(duration, call):
    """Runs call(i) for `duration` seconds after one untimed warm-up;
    (calls, seconds, latencies in ms)."""
    call(0)
    latencies = []
    start = time.perf_counter()
    i = 1
    while time.perf_counter() - start < duration:
        t = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - t) * 1e3)
        i += 1
    return len(latencies), time.perf_counter() - start, latencies


def measure(address, layout_dims, mib, duration, seed):
    layers, heads, head_dim = layout_dims
    layout = seqkv.Layout(layers, heads, head_dim, "bf16")
    tokens = (mib << 20) // layout.bytes_per_token
    if tokens == 0 or tokens * layout.bytes_per_token != mib << 20:
        sys.exit(f"{mib} MiB is not a whole number of tokens of {layout}")
    nbytes = tokens * layout.bytes_per_token
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 0x7F00, (layers, heads, tokens, head_dim), np.uint16)
    v = rng.integers(0, 0x7F00, (layers, heads, tokens, head_dim), np.uint16)
    shm = seqkv.Client(address, timeout=120)
    grpc = seqkv.Client(address, timeout=120, transport="grpc")
    assert shm.uses_shared_memory and not grpc.uses_shared_memory
    model = f"bench-{mib}"
    grpc.register_model(model, layout, chunk_tokens=tokens,
                        default_codec="raw")
    region = shm.create_region(nbytes)
    wire = region.wire(layout, tokens)
    wire[:, :, 0] = k.transpose(2, 0, 1, 3)
    wire[:, :, 1] = v.transpose(2, 0, 1, 3)
    stored = [np.arange(tokens) + (1 << 30) + j * tokens for j in range(8)]
    for ids in stored:
        grpc.put(model, ids, k, v)
    next_id = [0]

    def fresh():  # tokens never stored: each Put is a new chunk
        next_id[0] += 1
        return np.arange(tokens) + next_id[0] * tokens

    calls = {
        ("put", "shm region"): lambda i: shm.put_from_region(
            model, fresh(), region, layout=layout),
        ("put", "shm arrays"): lambda i: shm.put(model, fresh(), k, v),
        ("put", "grpc arrays"): lambda i: grpc.put(model, fresh(), k, v),
        ("get", "shm region"): lambda i: shm.get_into_region(
            model, stored[i % 8], region).wire(),
        ("get", "shm arrays"): lambda i: shm.get(model, stored[i % 8]),
        ("get", "grpc arrays"): lambda i: grpc.get(model, stored[i % 8]),
    }
    # Correctness first: every way returns the bytes that were put.
    for mode in MODES:
        got = calls[("get", mode)](0)
        if mode == "shm region":
            ok = np.array_equal(got[:, :, 0].transpose(1, 2, 0, 3), k)
        else:
            ok = np.array_equal(got.k, k) and np.array_equal(got.v, v)
        if not ok:
            sys.exit(f"{mib} MiB get by {mode} returned other bytes")
    results = {}
    for op in ("get", "put"):  # Gets first: Puts may make room by eviction
        for mode in MODES:
            count, seconds, latencies = timed(duration, calls[(op, mode)])
            results[(op, mode)] = {
                "gbps": count * nbytes / seconds / 1e9,
                "p50_ms": float(np.percentile(latencies, 50)),
                "p99_ms": float(np.percentile(latencies, 99)),
                "calls": count}
    grpc.delete(model)
    del wire
    region.close()
    shm.close()
    grpc.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build_dir", default="build")
    parser.add_argument("--duration_s", type=float, default=5)
    parser.add_argument("--sizes_mib", default="1 32")
    parser.add_argument("--layout", default="32,8,128",
                        help="layers,kv_heads,head_dim of the bf16 cache "
                        "(default: llama3-8b's, 128 KiB per token)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    dims = tuple(int(x) for x in args.layout.split(","))
    work = tempfile.mkdtemp(prefix="seqkv-pyshm-bench-")
    process, address = start_server(os.path.join(args.build_dir, "bin"), work)
    rows, raw = [], {}
    try:
        for index, mib in enumerate(int(s) for s in args.sizes_mib.split()):
            results = measure(address, dims, mib, args.duration_s, index)
            for op in ("put", "get"):
                r = {mode: results[(op, mode)] for mode in MODES}
                raw[f"{mib}MiB-{op}"] = r
                base = r["grpc arrays"]["gbps"]
                rows.append(
                    f"| {mib} MiB | {op.capitalize()} | " + " | ".join(
                        f"{r[m]['gbps']:.3f} ({r[m]['p50_ms']:.2f} / "
                        f"{r[m]['p99_ms']:.1f})" for m in MODES) +
                    f" | {r['shm region']['gbps'] / base:.2f} | "
                    f"{r['shm arrays']['gbps'] / base:.2f} |")
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
          f"load {os.getloadavg()[0]:.1f}, layout {args.layout} bf16, "
          f"{args.duration_s} s per cell, 1 client thread")
    print("| value | op | " + " | ".join(
        f"{m} GB/s (p50 / p99 ms)" for m in MODES) +
        " | shm region / grpc | shm arrays / grpc |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
