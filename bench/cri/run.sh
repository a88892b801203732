#!/bin/sh
# Pods per second and shim memory, rune shim vs runc shim, through containerd 1.6's CRI.
# Usage (root, after `make build`): bench/cri/run.sh [-n 20] [-rss-pods 5]
set -eu
cd "$(dirname "$0")/../.."
if [ ! -x bin/rune ] || [ ! -x bin/containerd-shim-rune-v2 ]; then
	echo "bench/cri: run \`make build\` first" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench-cri" ./bench/cri
"$tmp/bench-cri" "$@"
