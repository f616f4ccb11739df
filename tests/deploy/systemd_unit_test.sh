#!/usr/bin/env bash
# The systemd unit, written as `cmake --install` writes it, passes
# `systemd-analyze verify`; the sysusers.d and tmpfiles.d entries parse.
set -euo pipefail
deploy=$1
server=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: needs systemd-analyze (Debian package systemd)"
  exit 77
fi
dir=$(mktemp -d /tmp/seqkv-unit-XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed -e "s|@SEQKV_SERVER_PATH@|$server|" -e "s|@SEQKV_DOC_DIR@|/usr/share/doc/seqkv|" \
    -e "s|@SEQKV_EXAMPLE_CONFIG@|/usr/share/doc/seqkv/examples/seqkv.example.yaml|" \
    "$deploy/systemd/seqkv.service.in" > "$dir/seqkv.service"
if grep -q "@[A-Z_]*@" "$dir/seqkv.service"; then
  echo "FAIL: a @VARIABLE@ the install step does not set" >&2; exit 1
fi
out=$(systemd-analyze verify "$dir/seqkv.service" 2>&1) || {
  echo "$out" >&2; echo "FAIL: systemd-analyze verify" >&2; exit 1; }
# Any complaint about this unit is a failure, even where verify exits 0.
if grep -i "seqkv.service" <<<"$out"; then
  echo "FAIL: systemd-analyze verify reports the lines above" >&2; exit 1
fi
grep -q "^User=seqkv$" "$dir/seqkv.service"
grep -q "^ProtectSystem=strict$" "$dir/seqkv.service"
grep -q "^NoNewPrivileges=yes$" "$dir/seqkv.service"
grep -q "^StateDirectory=seqkv$" "$dir/seqkv.service"
# sysusers.d makes the user, tmpfiles.d its directories, in a scratch root.
if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
  root=$dir/root
  mkdir -p "$root/etc"
  systemd-sysusers --root="$root" "$deploy/systemd/seqkv.sysusers"
  uid=$(awk -F: '$1 == "seqkv" {print $3}' "$root/etc/passwd")
  if [ -z "$uid" ]; then echo "FAIL: sysusers.d made no user seqkv" >&2; exit 1; fi
  systemd-tmpfiles --root="$root" --create "$deploy/systemd/seqkv.tmpfiles"
  if [ "$(stat -c %u "$root/var/lib/seqkv")" != "$uid" ]; then
    echo "FAIL: tmpfiles.d did not make /var/lib/seqkv for seqkv" >&2; exit 1
  fi
fi
echo "systemd unit: ok"
