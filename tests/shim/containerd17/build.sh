#!/usr/bin/env bash
# Builds containerd and ctr 1.7 (the version pinned in go.mod) into OUTDIR, for running the
# shim integration tests against containerd 1.7:
#   tests/shim/containerd17/build.sh /tmp/containerd17
#   CONTAINERD_BINARY=/tmp/containerd17/containerd CTR_BINARY=/tmp/containerd17/ctr \
#     CI=true go test ./tests/shim/
# The snapshotters that need C libraries the test machines lack are left out.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "${BASH_SOURCE[0]}")"
exec go build -trimpath -tags no_btrfs,no_zfs,no_aufs,no_devmapper -o "$out/" \
	github.com/containerd/containerd/cmd/containerd github.com/containerd/containerd/cmd/ctr
