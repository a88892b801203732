#!/usr/bin/env bash
# Lifecycle benchmark: create → start → wait → delete of a busybox `true`
# container, alternating the runtimes every iteration. See README.md.
#
# Usage: run.sh [RUNTIME...]
#   default: ../../bin/rune runc, plus crun when installed
# Env: LIFECYCLE_ITERATIONS (50), LIFECYCLE_WARMUP (3), LIFECYCLE_REF (runc),
#      LIFECYCLE_SAMPLES (CSV file for every measured cycle), BUSYBOX (/bin/busybox),
#      LIFECYCLE_FLOOR (1: also measure bench/lifecycle/floor, libcontainer's floor)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
fi
[[ $(id -u) == 0 ]] || die "must run as root (runtimes create namespaces and cgroups)"
command -v go >/dev/null || die "missing go"
command -v runc >/dev/null || die "missing runc (the bundle config comes from 'runc spec')"
BUSYBOX=${BUSYBOX:-/bin/busybox}
[[ -x $BUSYBOX ]] || die "missing $BUSYBOX (apt-get install busybox-static)"
# The rootfs holds nothing but busybox, so it must not need a loader.
if LC_ALL=C ldd "$BUSYBOX" >/dev/null 2>&1; then
	die "$BUSYBOX is dynamically linked; install busybox-static"
fi
ITERATIONS=${LIFECYCLE_ITERATIONS:-50}
WARMUP=${LIFECYCLE_WARMUP:-3}
REF=${LIFECYCLE_REF:-runc}

if (($# == 0)); then
	set -- "$REPO/bin/rune" runc
	if command -v crun >/dev/null; then set -- "$@" crun; fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifecycle.XXXXXX")
cleanup() {
	# Containers are deleted by the helper; detach anything still mounted
	# under the work directory before removing it, never crossing devices.
	local m
	for m in $(awk -v p="$WORK/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$WORK"
	rmdir /run/libcontainer-floor 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Bundle: busybox plus one symlink per applet; config from `runc spec`
# (the helper sets process.args to ["true"] and terminal to false).
BUNDLE=$WORK/bundle
mkdir -p "$BUNDLE/rootfs/bin"
cp "$BUSYBOX" "$BUNDLE/rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
	[[ $applet == busybox ]] || ln -s busybox "$BUNDLE/rootfs/bin/$applet"
done
[[ -L $BUNDLE/rootfs/bin/true ]] || die "$BUSYBOX has no 'true' applet"
runc spec --bundle "$BUNDLE"

(cd "$REPO" && GOFLAGS=-buildvcs=false go build -o "$WORK/lifecycle" ./bench/lifecycle) || die "build the benchmark helper"

# crun 1.8 refuses cgroup hybrid mode: run it through a wrapper that hides
# the cgroup2 mount in a private mount namespace (MACHINE-NOTES).
hybrid_cgroups() {
	[[ $(stat -f -c %T /sys/fs/cgroup 2>/dev/null) == tmpfs ]] &&
		[[ $(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null) == cgroup2fs ]]
}
runtimes=()
n=0
for arg in "$@"; do
	p=$(command -v -- "$arg" 2>/dev/null) || die "runtime not found: $arg"
	if [[ $(basename "$p") == crun ]] && hybrid_cgroups; then
		n=$((n + 1))
		mkdir -p "$WORK/wrap/$n"
		cat >"$WORK/wrap/$n/crun" <<EOF
#!/bin/sh
exec unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "\$0" "\$@"' '$p' "\$@"
EOF
		chmod +x "$WORK/wrap/$n/crun"
		echo "crun: measured through the hybrid-cgroup unshare wrapper (adds an unshare, a sh and a umount per command)"
		p=$WORK/wrap/$n/crun
	fi
	runtimes+=("$p")
done
# The floor: the least a create/start/delete can do on the libcontainer rune links
# (floor/main.go); LIFECYCLE_FLOOR=0 leaves it out.
if [[ ${LIFECYCLE_FLOOR:-1} != 0 ]]; then
	mkdir -p "$WORK/floor"
	(cd "$REPO" && GOFLAGS=-buildvcs=false go build -trimpath -tags seccomp -o "$WORK/floor/libcontainer-floor" ./bench/lifecycle/floor) ||
		die "build the libcontainer floor"
	runtimes+=("$WORK/floor/libcontainer-floor")
fi

args=(-bundle "$BUNDLE" -n "$ITERATIONS" -warmup "$WARMUP" -ref "$REF")
[[ -z ${LIFECYCLE_SAMPLES:-} ]] || args+=(-samples "$LIFECYCLE_SAMPLES")
start=$(date +%s)
TMPDIR=$WORK "$WORK/lifecycle" "${args[@]}" "${runtimes[@]}"
echo "time: $(($(date +%s) - start))s"
