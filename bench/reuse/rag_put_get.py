#!/usr/bin/env python3
"""Put and Get throughput of KV caches with reuse across prefixes on and
off (--split_dedup, --cross_prefix), same server binary, through the
Python client: the files are Put in order once, then all Got back
`--rounds` times.

usage: bench/reuse/rag_put_get.py [--build_dir DIR] [--codec C]
           [--files GLOB] [--rounds N]
Needs NumPy and grpcio (Debian: python3-numpy, python3-grpcio) and the
seqkv_python target built in DIR.
"""
import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def load(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == '__metadata__':
            continue
        begin, end = t['data_offsets']
        dtype = {'BF16': np.uint16, 'I32': np.int32, 'F32': np.float32}
        out[name] = np.frombuffer(data[begin:end],
                                  dtype=dtype[t['dtype']]).reshape(t['shape'])
    return out


def run(args, caches, flags):
    import seqkv
    work = tempfile.mkdtemp(prefix='seqkv-rag-put-get-')
    server = subprocess.Popen(
        [os.path.join(args.build_dir, 'bin', 'seqkv-server'),
         '--data_dir', work + '/data', '--listen', '127.0.0.1:0',
         '--admin_listen', '', '--ready_file', work + '/ready',
         '--log_level', 'error'] + flags)
    try:
        ready = work + '/ready'
        while not os.path.exists(ready) or os.path.getsize(ready) == 0:
            time.sleep(0.1)
        port = json.load(open(ready))['grpc_port']
        with seqkv.Client(f'127.0.0.1:{port}') as client:
            start = time.time()
            for cache in caches:
                client.put('rag', cache['tokens'].tolist(), cache['k'],
                           cache['v'], codec=args.codec,
                           rope='rotate_half:10000')
            put_s = time.time() - start
            start = time.time()
            for _ in range(args.rounds):
                for cache in caches:
                    client.get('rag', cache['tokens'].tolist())
            get_s = (time.time() - start) / args.rounds
    finally:
        server.terminate()
        server.wait()
    return put_s, get_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--build_dir', default=os.path.join(ROOT,
                                                            'build-model'))
    parser.add_argument('--codec', default='lossless')
    parser.add_argument('--files', default=os.path.join(
        ROOT, '..', 'shared', 'data', 'kv', 'b_rag_*.safetensors'))
    parser.add_argument('--rounds', type=int, default=25)
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(ROOT, 'client', 'python'),
                    os.path.join(args.build_dir, 'python')]
    caches = [load(path) for path in sorted(glob.glob(args.files))]
    if not caches:
        sys.exit(f'rag_put_get: no files match {args.files}')
    nbytes = sum(c['k'].nbytes + c['v'].nbytes for c in caches)
    for name, flags in (('on', []), ('off', ['--split_dedup=false',
                                              '--cross_prefix=false'])):
        put_s, get_s = run(args, caches, flags)
        print(f'{args.codec} reuse {name}: Put {nbytes / put_s / 1e6:.0f} '
              f'MB/s, Get {nbytes / get_s / 1e6:.0f} MB/s')


if __name__ == '__main__':
    main()
