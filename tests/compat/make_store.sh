#!/usr/bin/env bash
# Writes the store that compat_test opens: run once with the seqkv-server of
# the release whose format the test pins (any seqkv CLI can feed it), never
# by the test suite. The store and its inputs go to testdata/ next to this
# file.
#   tests/compat/make_store.sh /path/to/old/seqkv-server build/bin/seqkv
set -euo pipefail
server_bin=$1
cli=$2
here=$(cd "$(dirname "$0")" && pwd)
out=$here/testdata
rm -rf "$out"
mkdir -p "$out"
"${PYTHON:-/usr/bin/python3}" "$here/make_inputs.py" "$out"
port=$((20000 + RANDOM % 20000))
admin=$((port + 1))
"$server_bin" --data_dir "$out/store" --listen "127.0.0.1:$port" \
  --admin_listen "127.0.0.1:$admin" --payload_file_min_bytes 65536 \
  --ready_file "$out/ready" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
while [ ! -e "$out/ready" ]; do sleep 0.1; done
rm "$out/ready"
s=(--server "127.0.0.1:$port")
"$cli" put "${s[@]}" --model compat-raw --codec raw "$out/a.safetensors" "$out/b.safetensors"
"$cli" put "${s[@]}" --model compat-lossless --codec lossless "$out/a.safetensors"
kill -TERM $server
wait $server || true
trap - EXIT
echo "wrote $out"
