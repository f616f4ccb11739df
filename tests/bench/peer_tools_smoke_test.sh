#!/usr/bin/env bash
# The peers bench/compare measures seqkv against: seqkv-memcpy-bench in its
# three modes, seqkv-null-grpc in both directions, and seqkv-redis-bench against a
# real redis-server (SETs of new keys must each store a key of their own,
# untimed warm-up SETs included; cycling SETs must not).
set -euo pipefail
BIN="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }

for fresh in false true; do
  out=$("$BIN/seqkv-memcpy-bench" --bytes 65536 --duration_s 0.2 --fresh_pages="$fresh" --json)
  [ "$(echo "$out" | jq -r .config.fresh_pages)" = "$fresh" ] || fail "memcpy config: $out"
  jq -e '.ops.memcpy.count > 0 and .ops.memcpy.gbps > 0' <<< "$out" > /dev/null \
    || fail "memcpy measured nothing: $out"
done
# Durable new files: each one written, synced, and all removed at the end.
files=$(mktemp -d)
out=$("$BIN/seqkv-memcpy-bench" --bytes 65536 --threads 2 --duration_s 0.2 \
  --durable_files "$files/d" --json)
jq -e '.config.durable_files and .ops.durable_files.count > 0
  and .ops.durable_files.gbps > 0' <<< "$out" > /dev/null \
  || fail "durable files measured nothing: $out"
[ -z "$(ls -A "$files/d")" ] || fail "durable files left behind: $(ls "$files/d" | head -3)"
rm -rf "$files"

# The null gRPC stream: both directions move every byte, warm-up apart.
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$BIN/seqkv-null-grpc" serve --listen 127.0.0.1:0 --ready_file "$work/ready" &
pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || fail "seqkv-null-grpc did not start"
null_addr="127.0.0.1:$(jq -r .grpc_port "$work/ready")"
for op in sink source; do
  out=$("$BIN/seqkv-null-grpc" bench --server "$null_addr" --op "$op" --bytes 300000 \
    --message_bytes 65536 --clients 2 --duration_s 0.3 --warmup_ops 2 --json)
  jq -e --arg op "$op" '.ops[$op] | .count > 0 and .errors == 0
    and .bytes == .count * 300000 and .warmup_count == 4' <<< "$out" > /dev/null \
    || fail "null gRPC $op: $out"
done
kill "$pid"; wait "$pid" 2>/dev/null || true
pid=""
rm -rf "$work"

 { echo "SKIP: seqkv-redis-bench not built (no hiredis)"; exit 0; }
command -v redis-server > /dev/null || fail "redis-server is missing (scripts/setup installs it)"
work=$(mktemp -d)
port=""
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 20); do
  port=$(( 20000 + RANDOM % 30000 ))
  redis-server --bind 127.0.0.1 --port "$port" --dir "$work" --save "" \
    --appendonly no --logfile "$work/redis.log" --daemonize no &
  pid=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break 2
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  pid=""
done
[ -n "$pid" ] || fail "no redis-server started"

keys() { redis-cli -p "$port" dbsize; }
run() { "$BIN/seqkv-redis-bench" --port "$port" --bytes 4096 --clients 2 --duration_s 0.3 --json "$@"; }

out=$(run --op set --keys_per_client 0 --warmup_ops 3)
count=$(jq -r .ops.set.count <<< "$out")
warmup=$(jq -r .ops.set.warmup_count <<< "$out")
[ "$count" -gt 0 ] || fail "no SETs: $out"
[ "$warmup" = 6 ] || fail "2 clients warming up 3 times ran $warmup SETs: $out"
[ "$(keys)" = $((count + warmup)) ] || fail "$count + $warmup SETs of new keys left $(keys) keys"
redis-cli -p "$port" flushall > /dev/null

out=$(run --op set --keys_per_client 3)
[ "$(jq -r .ops.set.count <<< "$out")" -gt 6 ] || fail "too few SETs to cycle: $out"
[ "$(keys)" = 6 ] || fail "cycling SETs left $(keys) keys, want 6"
out=$(run --op get --keys_per_client 3)
jq -e '.ops.get.count > 0 and .ops.get.errors == 0' <<< "$out" > /dev/null || fail "GET: $out"

if run --op get --keys_per_client 0 2> /dev/null; then fail "GET of new keys accepted"; fi
echo PASS
