#!/usr/bin/env bash
# bench/compare --summarize on a captured run: every ratio in the table must
# equal the one computed here from the JSON files, and --dry-run must plan
# every peer.
set -euo pipefail
COMPARE="$1"
RUN="$2"
fail() { echo "FAIL: $*" >&2; exit 1; }

table="$("$COMPARE" --summarize "$RUN")" || fail "summarize exited non-zero"
echo "$table"
gbps() { jq -r --arg op "$2" '.ops[$op].gbps' "$1"; }
checked=0
for file in "$RUN"/seqkv_put_*.json; do
  mib=$(basename "$file" .json | sed 's/seqkv_put_//')
  for pair in "put set sink" "get get source"; do
    set -- $pair
    s=$(gbps "$RUN/seqkv_$1_$mib.json" "$1")
    r=$(gbps "$RUN/redis_$2_$mib.json" "$2")
    n=$(gbps "$RUN/null_$3_$mib.json" "$3")
    a=$(gbps "$RUN/redis_aof_$2_$mib.json" "$2")
    m=$(jq -r '.ops.memcpy.gbps' "$RUN/memcpy_1.json")
    want=$(awk -v s="$s" -v r="$r" -v a="$a" -v n="$n" -v m="$m" \
      'BEGIN { printf "%.2f | %.2f | %.2f | %.2f |", s / a, s / r, s / n, s / m }')
    if [ "$1" = put ]; then
      # Puts are also set against Redis SETs of new keys.
      w=$(gbps "$RUN/redis_new_set_$mib.json" set)
      want="$(awk -v s="$s" -v w="$w" 'BEGIN { printf "%.2f", s / w }') | $want"
    else
      want="n/a | $want"
    fi
    row=$(echo "$table" | grep "^| $mib MiB | $1 /") || fail "no row for $mib MiB $1"
    [[ "$row" == *"$want" ]] || fail "row '$row' does not end with '$want'"
    checked=$((checked + 1))
  done
done
[ "$checked" -ge 4 ] || fail "only $checked rows checked"

# Durable Puts: seqkv --sync_writes=true against Redis appendfsync always and
# everysec, for the sizes the run has them.
durable=0
for file in "$RUN"/seqkv_durable_put_*.json; do
  [ -e "$file" ] || continue
  mib=$(basename "$file" .json | sed 's/seqkv_durable_put_//')
  s=$(gbps "$file" put)
  al=$(gbps "$RUN/redis_aof_always_set_$mib.json" set)
  ev=$(gbps "$RUN/redis_aof_set_$mib.json" set)
  d=$(gbps "$RUN/durable_files_$mib.json" durable_files)
  want=$(awk -v s="$s" -v al="$al" -v ev="$ev" -v d="$d" \
    'BEGIN { printf "%.2f | %.2f | %.2f |", s / al, s / ev, s / d }')
  row=$(echo "$table" | sed -n '/^Durable Puts/,$p' | grep "^| $mib MiB |") ||
    fail "no durable row for $mib MiB"
  [[ "$row" == *"$want" ]] || fail "durable row '$row' does not end with '$want'"
  durable=$((durable + 1))
done
[ "$durable" -ge 1 ] || fail "no durable rows checked"

# A run with a missing peer still summarizes, marking the gap.
partial="$(mktemp -d)"
trap 'rm -rf "$partial"' EXIT
cp "$RUN"/seqkv_*.json "$RUN"/memcpy_*.json "$partial"/
out="$("$COMPARE" --summarize "$partial")" || fail "partial summarize failed"
echo "$out" | grep -q "n/a" || fail "missing peers are not marked n/a"
# An empty directory is an error.
if "$COMPARE" --summarize "$(mktemp -d)" 2>/dev/null; then fail "empty run accepted"; fi

plan="$("$COMPARE" --dry-run)"
for tool in "seqkv bench" seqkv-redis-bench seqkv-null-grpc seqkv-memcpy-bench; do
  echo "$plan" | grep -q "$tool" || fail "dry run does not plan $tool"
done
echo "$plan" | grep -q "appendonly yes" || fail "dry run does not plan Redis with AOF"
echo "$plan" | grep -q "appendfsync always" || fail "dry run does not plan Redis fsyncing every write"
echo "$plan" | grep -q "sync_writes=true" || fail "dry run does not plan durable seqkv Puts"
echo "$plan" | grep -q "durable_files" || fail "dry run does not plan the durable-files ceiling"
echo "$plan" | grep -q "keys_per_client 0" || fail "dry run does not plan Redis SETs of new keys"
echo "$plan" | grep -q "fresh_pages" || fail "dry run does not plan memcpy to fresh pages"
help="$("$COMPARE" --help)"
for word in "usage:" "--dry-run" "new keys" "fresh"; do
  echo "$help" | grep -q -- "$word" || fail "--help does not mention $word"
done
echo "PASS ($checked rows)"
