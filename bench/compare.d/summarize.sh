# summarize DIR: the table and ratios of a bench/compare run from its JSON
# files (seqkv_{put,get}_M.json, redis_{set,get}_M.json, redis_aof_...,
# redis_new_set_M.json, null_{sink,source}_M.json, memcpy_{1,all}.json,
# memcpy_fresh_M.json, and the same-host and durable runs' files named
# below). Sourced by bench/compare.

# field FILE OP KEY: .ops[OP][KEY] of FILE, or "nan" when absent.
field() {
  [ -s "$1" ] || { echo nan; return; }
  jq -r --arg op "$2" --arg key "$3" '.ops[$op][$key] // "nan"' "$1"
}

# ratio A B: A / B with two decimals, "n/a" when either is missing.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "nan" || b == "nan" || b + 0 == 0) { print "n/a"; exit }
    printf "%.2f", a / b }'
}

fmt() {
  awk -v x="$1" -v d="${2:-3}" 'BEGIN { if (x == "nan") print "n/a"; else printf "%.*f", d, x }'
}

# summarize_same_host DIR SIZES: seqkv through shared memory regions
# (seqkv_shm_*.json) against seqkv over gRPC, Redis over its Unix socket
# (redis_unix_*.json) and TCP, the null gRPC stream and warm memcpy
# (memcpy_warm_M.json). Prints nothing for runs without them.
summarize_same_host() {
  local dir="$1" sizes="$2" mib op redis_op null_op shm grpc ru rt rn n m
  ls "$dir"/seqkv_shm_put_*.json > /dev/null 2>&1 || return 0
  echo
  echo "Same-host data plane (seqkv over shared memory regions):"
  echo
  echo "| value | op | seqkv shm GB/s | seqkv shm p50 / p99 ms | seqkv gRPC GB/s | Redis unix GB/s | Redis TCP GB/s | Redis unix new keys GB/s | null gRPC GB/s | warm memcpy GB/s | shm/gRPC | shm/Redis unix | shm/Redis TCP | shm/Redis unix new keys | shm/null gRPC | shm/memcpy |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for mib in $sizes; do
    m=$(field "$dir/memcpy_warm_${mib}.json" memcpy gbps)
    for op in put get; do
      if [ "$op" = put ]; then redis_op=set; null_op=sink; else redis_op=get; null_op=source; fi
      shm=$(field "$dir/seqkv_shm_${op}_${mib}.json" "$op" gbps)
      grpc=$(field "$dir/seqkv_${op}_${mib}.json" "$op" gbps)
      ru=$(field "$dir/redis_unix_${redis_op}_${mib}.json" "$redis_op" gbps)
      rt=$(field "$dir/redis_${redis_op}_${mib}.json" "$redis_op" gbps)
      n=$(field "$dir/null_${null_op}_${mib}.json" "$null_op" gbps)
      rn=nan
      [ "$op" = put ] && rn=$(field "$dir/redis_unix_new_set_${mib}.json" set gbps)
      echo "| ${mib} MiB | ${op} / ${redis_op^^} | $(fmt "$shm") |" \
        "$(fmt "$(field "$dir/seqkv_shm_${op}_${mib}.json" "$op" p50_ms)" 2) / $(fmt "$(field "$dir/seqkv_shm_${op}_${mib}.json" "$op" p99_ms)" 2) |" \
        "$(fmt "$grpc") | $(fmt "$ru") | $(fmt "$rt") | $(fmt "$rn") | $(fmt "$n") | $(fmt "$m") |" \
        "$(ratio "$shm" "$grpc") | $(ratio "$shm" "$ru") | $(ratio "$shm" "$rt") |" \
        "$(ratio "$shm" "$rn") | $(ratio "$shm" "$n") | $(ratio "$shm" "$m") |"
    done
  done
}

# summarize_durable DIR SIZES: Puts acknowledged only once on disk: seqkv
# with --sync_writes=true (seqkv_durable_put_M.json) against Redis fsyncing
# its append-only file before each reply (redis_aof_always_set_M.json), and
# against Redis fsyncing it once a second (redis_aof_set_M.json), which
# acknowledges writes a power loss can still take, and against new files
# written and fsynced (durable_files_M.json: the disk's ceiling). Prints
# nothing for runs without them.
summarize_durable() {
  local dir="$1" sizes="$2" mib s al ev d
  ls "$dir"/seqkv_durable_put_*.json > /dev/null 2>&1 || return 0
  echo
  echo "Durable Puts (seqkv --sync_writes=true over gRPC):"
  echo
  echo "| value | seqkv durable Put GB/s | p50 / p99 ms | Redis AOF always GB/s | p50 / p99 ms | Redis AOF everysec GB/s | new files fsynced GB/s | seqkv/Redis always | seqkv/Redis everysec | seqkv/new files fsynced |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for mib in $sizes; do
    s=$(field "$dir/seqkv_durable_put_${mib}.json" put gbps)
    al=$(field "$dir/redis_aof_always_set_${mib}.json" set gbps)
    ev=$(field "$dir/redis_aof_set_${mib}.json" set gbps)
    d=$(field "$dir/durable_files_${mib}.json" durable_files gbps)
    echo "| ${mib} MiB | $(fmt "$s") |" \
      "$(fmt "$(field "$dir/seqkv_durable_put_${mib}.json" put p50_ms)" 2) / $(fmt "$(field "$dir/seqkv_durable_put_${mib}.json" put p99_ms)" 2) |" \
      "$(fmt "$al") |" \
      "$(fmt "$(field "$dir/redis_aof_always_set_${mib}.json" set p50_ms)" 2) / $(fmt "$(field "$dir/redis_aof_always_set_${mib}.json" set p99_ms)" 2) |" \
      "$(fmt "$ev") | $(fmt "$d") | $(ratio "$s" "$al") | $(ratio "$s" "$ev") |" \
      "$(ratio "$s" "$d") |"
  done
}

summarize() {
  local dir="$1"
  [ -d "$dir" ] || { echo "summarize: no directory $dir" >&2; return 1; }
  local sizes
  sizes=$(ls "$dir" | sed -n 's/^seqkv_put_\([0-9]*\)\.json$/\1/p' | sort -n)
  [ -n "$sizes" ] || { echo "summarize: no seqkv_put_*.json in $dir" >&2; return 1; }
  local memcpy1 memcpyall
  memcpy1=$(field "$dir/memcpy_1.json" memcpy gbps)
  memcpyall=$(field "$dir/memcpy_all.json" memcpy gbps)
  echo "| value | op | seqkv GB/s | seqkv p50 / p99 ms | Redis GB/s | Redis p50 / p99 ms | Redis AOF GB/s | Redis new keys GB/s | null gRPC GB/s | memcpy to fresh pages GB/s | seqkv/Redis new keys | seqkv/Redis AOF | seqkv/Redis | seqkv/null gRPC | seqkv/memcpy (1 thread) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  local mib op redis_op null_op s r a w f n
  for mib in $sizes; do
    for op in put get; do
      if [ "$op" = put ]; then redis_op=set; null_op=sink; else redis_op=get; null_op=source; fi
      s=$(field "$dir/seqkv_${op}_${mib}.json" "$op" gbps)
      r=$(field "$dir/redis_${redis_op}_${mib}.json" "$redis_op" gbps)
      a=$(field "$dir/redis_aof_${redis_op}_${mib}.json" "$redis_op" gbps)
      n=$(field "$dir/null_${null_op}_${mib}.json" "$null_op" gbps)
      # New keys and fresh pages concern storing; Gets store nothing.
      w=nan
      f=nan
      if [ "$op" = put ]; then
        w=$(field "$dir/redis_new_set_${mib}.json" set gbps)
        f=$(field "$dir/memcpy_fresh_${mib}.json" memcpy gbps)
      fi
      echo "| ${mib} MiB | ${op} / ${redis_op^^} | $(fmt "$s") |" \
        "$(fmt "$(field "$dir/seqkv_${op}_${mib}.json" "$op" p50_ms)" 2) / $(fmt "$(field "$dir/seqkv_${op}_${mib}.json" "$op" p99_ms)" 2) |" \
        "$(fmt "$r") |" \
        "$(fmt "$(field "$dir/redis_${redis_op}_${mib}.json" "$redis_op" p50_ms)" 2) / $(fmt "$(field "$dir/redis_${redis_op}_${mib}.json" "$redis_op" p99_ms)" 2) |" \
        "$(fmt "$a") | $(fmt "$w") | $(fmt "$n") | $(fmt "$f") |" \
        "$(ratio "$s" "$w") | $(ratio "$s" "$a") | $(ratio "$s" "$r") |" \
        "$(ratio "$s" "$n") | $(ratio "$s" "$memcpy1") |"
    done
  done
  echo
  echo "memcpy: $(fmt "$memcpy1" 2) GB/s on 1 thread, $(fmt "$memcpyall" 2) GB/s on all threads (32 MiB copies)."
  summarize_same_host "$dir" "$sizes"
  summarize_durable "$dir" "$sizes"
  local errors=0 file e
  for file in "$dir"/*.json; do
    e=$(jq -r '[.ops[]? | .errors // 0] | add // 0' "$file" 2>/dev/null || echo 1)
    if [ "$e" != 0 ]; then
      echo "WARNING: $(basename "$file") reports $e errors"
      errors=1
    fi
  done
  return $errors
}
