#!/usr/bin/env bash
# The Kubernetes manifests parse and hang together (check_k8s.py), and where
# Debian's kubectl (package kubernetes-client) is installed, it takes them
# with `kubectl create --dry-run=client --validate=false`.
set -euo pipefail
dir=$1
here=$(dirname "$0")
server=$2
work=$(mktemp -d /tmp/seqkv-k8s-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# Debian's Python, which has python3-yaml (scripts/packages.d/ops.txt).
mkdir "$work/etc"
/usr/bin/python3 "$here/check_k8s.py" --config_out "$work/etc" "$dir"/*.yaml

# seqkv-server takes the ConfigMap's config as the pod starts it: on a Unix
# socket, probes on their own port.
[ -s "$work/etc/seqkv.yaml" ] || { echo "FAIL: no seqkv.yaml in a ConfigMap" >&2; exit 1; }
"$server" --data_dir="$work/data" --listen="unix:$work/seqkv.sock" \
  --admin_listen=127.0.0.1:0 --probe_listen=127.0.0.1:0 \
  --config="$work/etc/seqkv.yaml" --ready_file="$work/ready.json" \
  --log_level=warn &
pid=$!
for _ in $(seq 200); do
  [ -s "$work/ready.json" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "FAIL: seqkv-server refused the ConfigMap's config" >&2; exit 1; }
  sleep 0.1
done
probe_port=$(sed -n 's/.*"probe_port":\([0-9]*\).*/\1/p' "$work/ready.json")
[ "$(curl -fsS "http://127.0.0.1:$probe_port/readyz")" = ready ] \
  || { echo "FAIL: /readyz with the ConfigMap's config" >&2; exit 1; }
[ -S "$work/seqkv.sock" ] || { echo "FAIL: no socket at $work/seqkv.sock" >&2; exit 1; }
echo "seqkv-server with the ConfigMap's config: ready"
# kubectl decodes every object into its typed Kubernetes form, offline:
# `kubectl create --dry-run=client` would need an API server to map kinds
# (it asks http://localhost:8080/api without one), `set env --local` does
# not. Its only complaint allowed is about objects that hold no pod.
# $SEQKV_KUBECTL names another kubectl than Debian's.
kubectl=${SEQKV_KUBECTL:-}
if [ -z "$kubectl" ] && command -v kubectl >/dev/null &&
   dpkg -S "$(readlink -f "$(command -v kubectl)")" 2>/dev/null | grep -q '^kubernetes-client:'; then
  kubectl=$(command -v kubectl)
fi
if [ -z "$kubectl" ]; then
  echo "kubectl check skipped: needs Debian's kubectl (package kubernetes-client)"
  exit 0
fi
for f in "$dir"/*.yaml; do
  out=$(HOME="$work" KUBECONFIG=/dev/null "$kubectl" set env --local -f "$f" \
        SEQKV_MANIFEST_CHECK=1 -o name 2>&1) || true
  problems=$(grep '^error:' <<<"$out" | grep -v 'is not a pod or does not have a pod template' || true)
  if [ -n "$problems" ]; then
    echo "FAIL: kubectl cannot decode $f:" >&2
    echo "$problems" >&2
    exit 1
  fi
  grep -q '^deployment.apps/' <<<"$out" || { echo "FAIL: kubectl found no Deployment in $f" >&2; exit 1; }
done
echo "kubectl decodes the manifests: ok"
