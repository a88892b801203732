#!/bin/sh
# Pods to Running per second and node memory per pod, rune vs runc, through a real kubelet.
# Usage (root, after `make build`): bench/k8s/run.sh [-n 10] [-rounds 3] [-mem-pods 10] [-containerd 1|2]
set -eu
cd "$(dirname "$0")/../.."
if [ ! -x bin/rune ] || [ ! -x bin/containerd-shim-rune-v2 ]; then
	echo "bench/k8s: run \`make build\` first" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench-k8s" ./bench/k8s
"$tmp/bench-k8s" "$@"
