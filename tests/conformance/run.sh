#!/usr/bin/env bash
# OCI runtime conformance: runs every opencontainers/runtime-tools validation
# program against each runtime given and compares the first (the candidate,
# rune) with the second (the reference, runc) test by test. See README.md.
#
# Usage: run.sh [CANDIDATE [REFERENCE [EXTRA...]]]
#   default: ../../bin/rune runc
# Exit: 0 = every program the reference passes also passes under the candidate
#       1 = at least one such program fails under the candidate
#       2 = the harness itself failed (bad arguments, suite did not build)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
REPO=$(cd "$HERE/../.." && pwd)

RT_MODULE=github.com/opencontainers/runtime-tools
# Used only when the pseudo-version pinned in tools/go.mod cannot be built.
FALLBACK_REQUIRES=(
	github.com/opencontainers/runtime-tools@v0.9.0
	github.com/opencontainers/runtime-spec@v1.0.2
	github.com/opencontainers/selinux@v1.8.0
)

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 2; }

# ---------------------------------------------------------------------------
# One job: one validation program against one runtime. Invoked by xargs as
# "run.sh __job INDEX PROGRAM" with the CONF_* variables exported below.
# ---------------------------------------------------------------------------

# umount_under PREFIX: detach every mount at or below PREFIX, deepest first.
# Returns non-zero when something is still mounted there afterwards.
umount_under() {
	local prefix=$1 m
	# mountinfo field 5 is the mount point; the paths used here have no spaces.
	for m in $(awk -v p="$prefix" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	! awk -v p="$prefix" 'index($5, p) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# delete_containers_under RUNTIME PREFIX: force-delete the runtime's containers
# whose bundle lies under PREFIX (only ours: other users' containers of the
# same runtime are never touched).
delete_containers_under() {
	local rt=$1 prefix=$2 id bundle
	for id in $("$rt" list -q 2>/dev/null); do
		bundle=$("$rt" state "$id" 2>/dev/null | grep -o '"bundle": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/') || true
		if [[ -n $bundle && $bundle == "$prefix"* ]]; then
			log "cleanup: deleting leftover $(basename "$rt") container $id (bundle $bundle)"
			"$rt" delete --force "$id" >/dev/null 2>&1 || true
		fi
	done
}

# remove_tree DIR: unmount first, then remove without crossing file systems;
# a tree that still holds mounts is left in place rather than risk deleting
# through a bind mount into the host.
remove_tree() {
	local dir=$1
	[[ -e $dir ]] || return 0
	if umount_under "$dir"; then
		rm -rf --one-file-system "$dir"
	else
		log "cleanup: $dir still has mounts; left in place"
	fi
}

run_job() {
	local idx=$1 prog=$2
	local rt="${CONF_RT_PATHS[$idx]}" out="$CONF_LOGDIR/$idx/$prog"
	local tmp="$CONF_WORK/tmp/$idx/$prog" rc start end lock=()
	mkdir -p "$tmp" "$(dirname "$out")"
	# Programs that set linux.cgroupsPath all use the same fixed path
	# (/cgrouptest), so they must never run at the same time.
	if grep -qx "$prog" "$CONF_BIN/exclusive.txt"; then
		lock=(flock "$CONF_WORK/cgroup.lock")
	fi
	start=$(date +%s%N)
	# The programs read runtimetest and rootfs-*.tar.gz from the working
	# directory and make bundles under TMPDIR. Each runs in a private mount
	# namespace so that a mount leaking out of a container (bad propagation
	# in a runtime under development) dies with the namespace instead of
	# landing under a bundle that the program then removes recursively.
	set +e
	(cd "$CONF_BIN" && TMPDIR="$tmp" RUNTIME="$rt" "${lock[@]}" \
		timeout -k 5 "$CONF_TIMEOUT" unshare --mount --propagation private "./$prog" \
		</dev/null >"$out.tap" 2>"$out.stderr")
	rc=$?
	set -e
	end=$(date +%s%N)
	echo "$rc $(((end - start) / 1000000))" >"$out.rc"
	if [[ -n $(ls -A "$tmp") ]]; then
		delete_containers_under "$rt" "$tmp"
	fi
	remove_tree "$tmp"
}

if [[ ${1:-} == __job ]]; then
	# Arrays cannot be exported; they travel as newline-separated strings.
	mapfile -t CONF_RT_PATHS <<<"$CONF_RT_PATHS_LIST"
	run_job "$2" "$3"
	exit 0
fi

# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
fi
[[ $(id -u) == 0 ]] || die "must run as root (runtimes create namespaces and cgroups)"
for tool in go tar timeout unshare flock xargs awk; do
	command -v "$tool" >/dev/null || die "missing required command: $tool"
done

if [[ -n ${CONFORMANCE_CACHE_DIR:-} ]]; then
	CACHE=$CONFORMANCE_CACHE_DIR
elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
	CACHE=$XDG_CACHE_HOME/inclavare-go/conformance
else
	CACHE=$REPO/.cache/conformance
fi
JOBS=${CONFORMANCE_JOBS:-2}
[[ $JOBS =~ ^[12]$ ]] || die "CONFORMANCE_JOBS must be 1 or 2 (the machines have 2 cores), got '$JOBS'"
TIMEOUT=${CONFORMANCE_TIMEOUT:-120}
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "CONFORMANCE_TIMEOUT must be whole seconds, got '$TIMEOUT'"
FILTER=${CONFORMANCE_TESTS:-}

# Runtimes: first is the candidate, second the reference, the rest extra.
if (($# == 0)); then
	set -- "$REPO/bin/rune" runc
elif (($# == 1)); then
	set -- "$1" runc
fi
RT_PATHS=()
RT_REAL=()
RT_NAMES=()
for arg in "$@"; do
	p=$(command -v -- "$arg" 2>/dev/null) || die "runtime not found: $arg (build rune with 'make build')"
	[[ -x $p && -f $p ]] || die "runtime is not an executable file: $arg"
	p=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
	RT_REAL+=("$p")
	RT_NAMES+=("$(basename "$p")")
	RT_PATHS+=("$p")
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/conformance.XXXXXX")
cleanup() {
	local rt
	for rt in "${RT_REAL[@]}"; do
		delete_containers_under "$rt" "$WORK/"
	done
	remove_tree "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# crun 1.8 refuses cgroup hybrid mode (MACHINE-NOTES): run it through a
# wrapper that hides the cgroup2 mount in a private mount namespace.
hybrid_cgroups() {
	[[ $(stat -f -c %T /sys/fs/cgroup 2>/dev/null) == tmpfs ]] &&
		[[ $(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null) == cgroup2fs ]]
}
for i in "${!RT_PATHS[@]}"; do
	if [[ ${RT_NAMES[$i]} == crun ]] && hybrid_cgroups; then
		mkdir -p "$WORK/wrap/$i"
		w="$WORK/wrap/$i/crun"
		cat >"$w" <<EOF
#!/bin/sh
# crun refuses cgroup hybrid mode: hide /sys/fs/cgroup/unified in a private mount namespace.
exec unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "\$0" "\$@"' '${RT_REAL[$i]}' "\$@"
EOF
		chmod +x "$w"
		RT_PATHS[i]=$w
		log "crun: using hybrid-cgroup wrapper $w"
	fi
done

# --- Build the suite (cached). ---------------------------------------------

# build_into MODDIR OUT: build runtimetest and every validation program of
# the runtime-tools version MODDIR's go.mod selects, statically, into OUT.
build_into() {
	local moddir=$1 out=$2 rtdir arch
	(
		cd "$moddir"
		export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
		go build -trimpath -o "$out/" tool &&
			go list -f '{{.ImportPath}} {{.Dir}}' tool >"$out/packages.txt" &&
			go list -m -f '{{.Version}}' "$RT_MODULE" >"$out/VERSION" &&
			go list -m -f '{{.Dir}}' "$RT_MODULE" >"$out/moddir.txt"
	) || return 1
	rtdir=$(cat "$out/moddir.txt")
	arch=$(go env GOARCH)
	cp "$rtdir/rootfs-$arch.tar.gz" "$out/" || return 1
	chmod u+w "$out/rootfs-$arch.tar.gz"
	[[ -x $out/runtimetest ]] || return 1
	# Programs in sorted order; the cgroup ones need the exclusive lane.
	awk '$1 ~ /\/validation\// { n = split($1, a, "/"); print a[n] }' "$out/packages.txt" | sort >"$out/programs.txt"
	awk '$1 ~ /\/validation\// { print $2 }' "$out/packages.txt" |
		while read -r dir; do
			if grep -qs 'CgroupsPath' "$dir"/*.go; then basename "$dir"; fi
		done | sort >"$out/exclusive.txt"
	[[ -s $out/programs.txt ]]
}

build_suite() {
	local key partial src
	key=$({
		cat "$HERE/tools/go.mod" "$HERE/tools/go.sum"
		go version
		go env GOARCH
		echo "fallback=${CONFORMANCE_FORCE_FALLBACK:-}"
	} | sha256sum | cut -c1-16)
	BIN=$CACHE/suite-$key
	mkdir -p "$CACHE"
	exec 9>"$CACHE/build.lock"
	flock 9
	if [[ -f $BIN/.complete ]]; then
		log "suite: cached in $BIN (runtime-tools $(cat "$BIN/VERSION"))"
		exec 9>&-
		return 0
	fi
	partial=$BIN.partial
	rm -rf "$partial"
	mkdir -p "$partial"
	log "suite: building runtime-tools validation programs into $BIN"
	if [[ -n ${CONFORMANCE_FORCE_FALLBACK:-} ]] || ! build_into "$HERE/tools" "$partial"; then
		log "suite: the pinned runtime-tools did not build; falling back to ${FALLBACK_REQUIRES[*]}"
		src=$CACHE/fallback-src # a private copy: tools/go.mod is never edited
		rm -rf "$src" "$partial"
		mkdir -p "$src" "$partial"
		cp "$HERE/tools/go.mod" "$HERE/tools/go.sum" "$src/"
		(
			cd "$src"
			export GOWORK=off GOFLAGS=-buildvcs=false
			go get "${FALLBACK_REQUIRES[@]}" && go mod tidy
		) || die "fallback runtime-tools did not resolve"
		build_into "$src" "$partial" || die "fallback runtime-tools did not build"
	fi
	mv "$partial" "$BIN"
	touch "$BIN/.complete"
	exec 9>&-
}

t_start=$(date +%s)
build_suite
t_built=$(date +%s)

mapfile -t PROGRAMS <"$BIN/programs.txt"
if [[ -n $FILTER ]]; then
	mapfile -t PROGRAMS < <(printf '%s\n' "${PROGRAMS[@]}" | grep -E -- "$FILTER" || true)
	((${#PROGRAMS[@]} > 0)) || die "CONFORMANCE_TESTS='$FILTER' matches no validation program"
fi

mkdir -p "$CACHE/logs"
LOGDIR=$CACHE/logs/$(date +%Y%m%dT%H%M%S)-$$
mkdir -p "$LOGDIR"
# Keep the five newest runs' logs.
ls -1dt "$CACHE"/logs/*/ 2>/dev/null | tail -n +6 | xargs -r rm -rf
for i in "${!RT_NAMES[@]}"; do
	echo "${RT_NAMES[$i]} ${RT_REAL[$i]}" >"$LOGDIR/runtime-$i"
done

log "suite: ${#PROGRAMS[@]} validation programs x ${#RT_PATHS[@]} runtimes (${RT_NAMES[*]}), $JOBS at a time, ${TIMEOUT}s timeout each; logs in $LOGDIR"

# Job order: interleave exclusive (cgroup) jobs with the others so that two
# workers rarely wait on the cgroup lock at the same time.
excl_jobs=()
free_jobs=()
for prog in "${PROGRAMS[@]}"; do
	for i in "${!RT_PATHS[@]}"; do
		if grep -qx "$prog" "$BIN/exclusive.txt"; then
			excl_jobs+=("$i $prog")
		else
			free_jobs+=("$i $prog")
		fi
	done
done
jobs_file=$WORK/jobs
: >"$jobs_file"
n=$((${#excl_jobs[@]} > ${#free_jobs[@]} ? ${#excl_jobs[@]} : ${#free_jobs[@]}))
for ((k = 0; k < n; k++)); do
	if ((k < ${#excl_jobs[@]})); then echo "${excl_jobs[$k]}" >>"$jobs_file"; fi
	if ((k < ${#free_jobs[@]})); then echo "${free_jobs[$k]}" >>"$jobs_file"; fi
done

export CONF_BIN=$BIN CONF_WORK=$WORK CONF_LOGDIR=$LOGDIR CONF_TIMEOUT=$TIMEOUT
CONF_RT_PATHS_LIST=$(printf '%s\n' "${RT_PATHS[@]}")
export CONF_RT_PATHS_LIST
xargs -P "$JOBS" -L 1 bash "$SELF" __job <"$jobs_file"

# --- Results. ----------------------------------------------------------------

# tap_counts FILE: prints "ok notok skip todo results plan" for a TAP stream.
# Only lines starting in column 0 count (YAML diagnostics are indented).
tap_counts() {
	awk '
		/^not ok([ \t]|$)/ {
			results++
			if (tolower($0) ~ /#[ \t]*todo/) todo++
			else if (tolower($0) ~ /#[ \t]*skip/) skip++
			else notok++
			next
		}
		/^ok([ \t]|$)/ {
			results++
			if (tolower($0) ~ /#[ \t]*skip/) skip++
			else if (tolower($0) ~ /#[ \t]*todo/) todo++
			else ok++
			next
		}
		/^1\.\.[0-9]+/ { plans++; plan = substr($1, 4) + 0 }
		END { printf "%d %d %d %d %d %d\n", ok, notok, skip, todo, results, (plans == 1 ? plan : -1) }
	' "$1"
}

# evaluate INDEX PROGRAM: sets ST (PASS/FAIL/EMPTY/TIMEOUT), RC and the TAP
# counts OK NOTOK SKIP TODO of one job from its logs.
evaluate() {
	local f=$LOGDIR/$1/$2 ms results plan
	read -r RC ms <"$f.rc" || RC=255
	read -r OK NOTOK SKIP TODO results plan < <(tap_counts "$f.tap")
	if ((RC == 124 || RC == 137)); then
		ST=TIMEOUT
	elif ((RC == 0 && NOTOK == 0 && results > 0 && plan == results)); then
		ST=PASS
	elif ((RC == 0 && results == 0)); then
		ST=EMPTY # exited 0 but reported no test result: it checked nothing
	else
		ST=FAIL
	fi
}

nrt=${#RT_NAMES[@]}

# A program that passes under the reference but not under the candidate is
# run again for the candidate, alone, up to CONFORMANCE_RETRIES times: some
# upstream programs poll state with 1 s sleeps and 5 s limits and flake on
# a loaded machine. A real regression fails every attempt.
RETRIES=${CONFORMANCE_RETRIES:-1}
[[ $RETRIES =~ ^[0-9]$ ]] || die "CONFORMANCE_RETRIES must be 0-9, got '$RETRIES'"
declare -A RETRIED
if ((nrt >= 2)); then
	for prog in "${PROGRAMS[@]}"; do
		evaluate 1 "$prog"
		[[ $ST == PASS ]] || continue
		for ((try = 1; try <= RETRIES; try++)); do
			evaluate 0 "$prog"
			[[ $ST != PASS ]] || break
			log "retry: $prog failed under ${RT_NAMES[0]} but passed under ${RT_NAMES[1]}; attempt $((try + 1))"
			for ext in tap stderr rc; do
				mv "$LOGDIR/0/$prog.$ext" "$LOGDIR/0/$prog.attempt$try.$ext"
			done
			bash "$SELF" __job 0 "$prog"
			RETRIED[$prog]=$try
		done
	done
fi
t_done=$(date +%s)

declare -A STATUS
passed=()
failed=()
tap_ok=()
tap_notok=()
tap_skip=()
tap_todo=()
for ((i = 0; i < nrt; i++)); do
	passed[i]=0 failed[i]=0 tap_ok[i]=0 tap_notok[i]=0 tap_skip[i]=0 tap_todo[i]=0
done

header=$(printf '%-34s' "TEST")
for name in "${RT_NAMES[@]}"; do header+=$(printf ' %-24s' "$name"); done
echo "$header"
regressions=()
for prog in "${PROGRAMS[@]}"; do
	line=$(printf '%-34s' "$prog")
	for ((i = 0; i < nrt; i++)); do
		evaluate "$i" "$prog"
		STATUS[$i,$prog]=$ST
		if [[ $ST == PASS ]]; then passed[i]=$((passed[i] + 1)); else failed[i]=$((failed[i] + 1)); fi
		tap_ok[i]=$((tap_ok[i] + OK))
		tap_notok[i]=$((tap_notok[i] + NOTOK))
		tap_skip[i]=$((tap_skip[i] + SKIP))
		tap_todo[i]=$((tap_todo[i] + TODO))
		cell="$ST $OK/$NOTOK/$SKIP"
		((TODO == 0)) || cell+="/${TODO}todo"
		((RC == 0)) || cell+=" rc=$RC"
		((i != 0)) || [[ -z ${RETRIED[$prog]:-} ]] || cell+=" retried"
		line+=$(printf ' %-24s' "$cell")
	done
	if ((nrt >= 2)); then
		if [[ ${STATUS[1,$prog]} == PASS && ${STATUS[0,$prog]} != PASS ]]; then
			line+="  REGRESSION"
			regressions+=("$prog")
		elif [[ ${STATUS[0,$prog]} == PASS && ${STATUS[1,$prog]} != PASS ]]; then
			line+="  (passes only under ${RT_NAMES[0]})"
		fi
	fi
	echo "${line%"${line##*[! ]}"}"
done
echo "(cells: RESULT ok/not-ok/skip TAP lines; PASS = exit 0, no 'not ok', at least one result, plan matches;"
echo " EMPTY = exit 0 but no result at all, counted as failed; 'retried' = candidate re-run after failing where the reference passed)"

for prog in "${regressions[@]}"; do
	f=$LOGDIR/0/$prog
	echo "--- ${RT_NAMES[0]} $prog (passes under ${RT_NAMES[1]}):"
	grep -E '^not ok' "$f.tap" | head -n 20 | awk '{ print "    " $0 }' || true
	tail -n 15 "$f.stderr" | awk '{ print "    stderr: " $0 }' || true
done

for ((i = 0; i < nrt; i++)); do
	echo "TAP totals ${RT_NAMES[$i]}: ${tap_ok[$i]} ok, ${tap_notok[$i]} not ok, ${tap_skip[$i]} skipped, ${tap_todo[$i]} todo"
done
if ((nrt >= 2)); then
	echo "gate: ${#regressions[@]} program(s) pass under ${RT_NAMES[1]} but not under ${RT_NAMES[0]}${regressions[*]:+: ${regressions[*]}}"
fi
echo "time: build $((t_built - t_start))s, tests $((t_done - t_built))s, total $((t_done - t_start))s; logs: $LOGDIR"
summary=""
for ((i = 0; i < nrt; i++)); do
	summary+="${summary:+; }${RT_NAMES[$i]}: ${passed[$i]} passed, ${failed[$i]} failed"
done
echo "$summary"
((${#regressions[@]} == 0)) || exit 1
exit 0
