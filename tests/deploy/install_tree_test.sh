#!/usr/bin/env bash
# `cmake --install` into a temporary prefix gives a tree that runs: the
# installed seqkv-server starts, answers its probes and gRPC health, and the
# installed unit, sysusers.d and tmpfiles.d entries, example config and docs
# are where docs/DEPLOY.md says.
set -euo pipefail
build_dir=$1
prefix=$(mktemp -d /tmp/seqkv-install-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$prefix"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build_dir" --prefix "$prefix" >/dev/null

for f in bin/seqkv-server bin/seqkv lib/systemd/system/seqkv.service \
         lib/sysusers.d/seqkv.conf lib/tmpfiles.d/seqkv.conf \
         share/doc/seqkv/examples/seqkv.example.yaml \
         share/doc/seqkv/examples/k8s/seqkv-sidecar.yaml \
         share/doc/seqkv/examples/container/Containerfile \
         share/doc/seqkv/DEPLOY.md share/doc/seqkv/README.md; do
  [ -e "$prefix/$f" ] || fail "cmake --install left out $f"
done
unit=$prefix/lib/systemd/system/seqkv.service
grep -q "^ExecStart=$prefix/bin/seqkv-server " "$unit" \
  || fail "the installed unit does not start the installed binary: $(grep ExecStart= "$unit")"
grep -q "@[A-Z_]*@" "$unit" && fail "unsubstituted @VARIABLE@ in the installed unit"

# The installed binaries, with their help and a real server.
help=$("$prefix/bin/seqkv-server" --helpfull 2>&1 || true)  # exits 1
grep -q -- "--probe_listen" <<<"$help" \
  || fail "the installed seqkv-server does not know --probe_listen"
"$prefix/bin/seqkv-server" --data_dir="$prefix/data" --listen=127.0.0.1:0 \
  --admin_listen=127.0.0.1:0 --probe_listen=127.0.0.1:0 \
  --ready_file="$prefix/ready.json" --log_level=warn &
pid=$!
for _ in $(seq 200); do
  [ -s "$prefix/ready.json" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the installed seqkv-server exited at startup"
  sleep 0.1
done
[ -s "$prefix/ready.json" ] || fail "the installed seqkv-server did not become ready"
ready=$(cat "$prefix/ready.json")
port_of() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$ready"; }
probe_port=$(port_of probe_port)
admin_port=$(port_of admin_port)
grpc_port=$(port_of grpc_port)
[ "$(curl -fsS "http://127.0.0.1:$probe_port/healthz")" = ok ] || fail "/healthz"
[ "$(curl -fsS "http://127.0.0.1:$probe_port/readyz")" = ready ] || fail "/readyz"
# The installed CLI talks to the installed server.
"$prefix/bin/seqkv" stats --admin "127.0.0.1:$admin_port" --json >/dev/null \
  || fail "seqkv stats against the installed server"
metrics=$(curl -fsS "http://127.0.0.1:$admin_port/metrics") || fail "/metrics"
grep -q '^seqkv_ready 1$' <<<"$metrics" || fail "/metrics of the installed server"
kill "$pid"
wait "$pid" || fail "seqkv-server did not stop cleanly on SIGTERM"
pid=

# The container's runtime stage installs the packages this script names for
# the installed binaries: every library must belong to one, and they must be
# the packages installed here.
packages=$("$prefix/share/doc/seqkv/examples/container/runtime-packages.sh" "$prefix"/bin/*) \
  || fail "runtime-packages.sh"
grep -qx libc6 <<<"$packages" || fail "runtime-packages.sh left out libc6: $packages"
grep -q '^libgrpc++' <<<"$packages" || fail "runtime-packages.sh left out gRPC: $packages"
for package in $packages; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || fail "runtime-packages.sh names $package, which is not installed"
done
echo "install tree in $prefix: ok (gRPC port $grpc_port; runtime packages:" $packages")"
