#!/bin/sh
# rune-deploy: installs Inclavare Containers' runtime on a Kubernetes node from a privileged
# DaemonSet pod (deploy/rune-deploy.yaml), the way kata-deploy does. See deploy/README.md.
#
#   rune-deploy install   copy rune, init-runelet, containerd-shim-rune-v2 and rune-carrier-helper to the node, install
#                         /etc/inclavare-containers/config.toml, add the CRI runtime handler "rune"
#                         to containerd's configuration and restart containerd if that changed
#   rune-deploy cleanup   undo install; refused while rune containers exist on the node
#   rune-deploy run       install, report ready, wait; cleanup on SIGTERM (the DaemonSet's pod
#                         is deleted)
#
# Every step is idempotent. Nothing the node had before is overwritten: a config.toml of the
# node's own is kept aside and restored by cleanup; a containerd configuration that already
# defines a runtime "rune", or that containerd itself rejects once edited, is left unchanged
# and the installation fails with the reason.
set -eu

# Paths are node paths; this container sees the node's files under HOST_ROOT, and runs commands
# on the node (where node paths are real) with HOST_EXEC.
: "${HOST_ROOT:=/host}"
: "${HOST_EXEC:=nsenter --target 1 --mount --uts --ipc --net --pid --}"
: "${ARTIFACTS:=/opt/inclavare-containers/artifacts}" # in the image: bin/, containerd/
: "${INSTALL_DIR:=/opt/inclavare-containers}"
: "${SHIM_LINK_DIR:=/usr/local/bin}" # must be on containerd's PATH
: "${CONFIG_SRC:=/etc/inclavare-config/config.toml}" # in this container (the ConfigMap)
: "${CONFIG_DST:=/etc/inclavare-containers/config.toml}"
: "${CONTAINERD_CONFIG:=/etc/containerd/config.toml}"
: "${CONTAINERD_CONF_D:=/etc/containerd/conf.d}"
: "${CONTAINERD_CONFIG_VERSION:=}" # 2 (containerd 1.6/1.7), 3 or 4 (2.x); detected when empty
: "${CONTAINERD:=containerd}" # the node's containerd: a name on the node's PATH, or a path
: "${RESTART_CONTAINERD:=systemctl restart containerd}"
: "${RUNE_ROOT:=/run/containerd/rune}" # the shim's rune.root
: "${READY_FILE:=/tmp/rune-deploy.ready}"

BINARIES="rune init-runelet containerd-shim-rune-v2 rune-carrier-helper"
BEGIN_MARK="# BEGIN inclavare-containers runtime rune (managed by rune-deploy)"
END_MARK="# END inclavare-containers runtime rune"
IMPORT_MARK="# added by rune-deploy"
DROPIN=inclavare-rune.toml

# Scratch files, removed however the script ends.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { echo "rune-deploy: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# node PATH: where a node path is seen from here.
node() { printf '%s%s' "$HOST_ROOT" "$1"; }
# on_node CMD…: run a command on the node.
on_node() { $HOST_EXEC "$@"; }
state() { node "$INSTALL_DIR/state/$1"; }

install_binaries() {
	bin=$(node "$INSTALL_DIR/bin")
	mkdir -p "$bin"
	for b in $BINARIES; do
		[ -f "$ARTIFACTS/bin/$b" ] || die "$ARTIFACTS/bin/$b is missing from the image"
		if ! cmp -s "$ARTIFACTS/bin/$b" "$bin/$b"; then
			# A rename, so that running shims and runelets keep the file they started from.
			cp "$ARTIFACTS/bin/$b" "$bin/.$b.new"
			chmod 0755 "$bin/.$b.new"
			mv -f "$bin/.$b.new" "$bin/$b"
			log "installed $INSTALL_DIR/bin/$b"
		fi
	done
	link=$(node "$SHIM_LINK_DIR/containerd-shim-rune-v2")
	target="$INSTALL_DIR/bin/containerd-shim-rune-v2"
	if [ -L "$link" ]; then
		[ "$(readlink "$link")" = "$target" ] ||
			die "$SHIM_LINK_DIR/containerd-shim-rune-v2 links to $(readlink "$link"), not $target: another installation? Remove it first"
	elif [ -e "$link" ]; then
		die "$SHIM_LINK_DIR/containerd-shim-rune-v2 exists and is not rune-deploy's link: another installation? Remove it first"
	else
		mkdir -p "$(dirname "$link")"
		ln -s "$target" "$link"
		log "linked $SHIM_LINK_DIR/containerd-shim-rune-v2 -> $target"
	fi
}

install_config() {
	[ -f "$CONFIG_SRC" ] || die "$CONFIG_SRC is missing (the ConfigMap with config.toml)"
	dst=$(node "$CONFIG_DST")
	mkdir -p "$(dirname "$dst")" "$(state '')"
	if [ -e "$dst" ] && [ ! -e "$(state config.installed)" ]; then
		cp -p "$dst" "$(state config.toml.orig)"
		log "kept the node's own $CONFIG_DST aside; cleanup restores it"
	fi
	if ! cmp -s "$CONFIG_SRC" "$dst"; then
		cp "$CONFIG_SRC" "$dst.rune-deploy.new"
		mv -f "$dst.rune-deploy.new" "$dst"
		log "installed $CONFIG_DST"
	fi
	: >"$(state config.installed)"
}

# containerd_config_version prints 2 or 3: the version of the node's containerd configuration,
# or for a node without one, the version its containerd reads by default.
containerd_config_version() {
	if [ -n "$CONTAINERD_CONFIG_VERSION" ]; then
		case $CONTAINERD_CONFIG_VERSION in
		2 | 3 | 4) echo "$CONTAINERD_CONFIG_VERSION" ;;
		*) die "CONTAINERD_CONFIG_VERSION=$CONTAINERD_CONFIG_VERSION: want 2 (containerd 1.6/1.7), 3 or 4 (containerd 2.x)" ;;
		esac
		return
	fi
	f=$(node "$CONTAINERD_CONFIG")
	if [ -f "$f" ] && has_content "$f"; then
		# The top-level version key, before the first table.
		v=$(sed -n -e '/^[[:space:]]*\[/q' -e 's/^[[:space:]]*version[[:space:]]*=[[:space:]]*\([0-9][0-9]*\)[[:space:]]*\(#.*\)\{0,1\}$/\1/p' "$f")
		case $v in
		2 | 3 | 4) echo "$v" ;;
		"") die "$CONTAINERD_CONFIG has no version line, so it is a version 1 configuration, which rune-deploy does not edit: migrate it (containerd config migrate) or set CONTAINERD_CONFIG_VERSION" ;;
		*) die "$CONTAINERD_CONFIG is a version $v configuration; rune-deploy edits versions 2, 3 and 4" ;;
		esac
		return
	fi
	out=$(on_node "$CONTAINERD" --version) || die "cannot run $CONTAINERD --version on the node"
	# "containerd github.com/containerd/containerd 1.6.20~ds1 …", "containerd containerd.io v1.7.13 …"
	set -- $out
	[ $# -ge 3 ] || die "unrecognised containerd version: $out"
	case ${3#v} in
	1.*) echo 2 ;;
	2.*) echo 3 ;;
	*) die "unsupported containerd version: $out" ;;
	esac
}

# handler FILE: the artifact containerd/FILE naming the shim configuration the node has
# (CONFIG_DST) instead of the default path.
handler() {
	dst=$(printf '%s' "$CONFIG_DST" | sed 's/[#&\\]/\\&/g')
	sed "s#/etc/inclavare-containers/config.toml#$dst#" "$ARTIFACTS/containerd/$1"
}

# strip_block FILE: FILE without rune-deploy's block.
strip_block() {
	awk -v b="$BEGIN_MARK" -v e="$END_MARK" '$0 == b { skip = 1; next } skip && $0 == e { skip = 0; next } !skip' "$1"
}

# has_content FILE: FILE has a line that is not blank or a comment.
has_content() { grep -q '^[[:space:]]*[^#[:space:]]' "$1"; }

# check_config FILE DUMP: containerd on the node loads FILE (as the node's configuration would
# be loaded) and writes what it makes of it to DUMP; a refusal ends the installation.
check_config() {
	candidate="$CONTAINERD_CONFIG.rune-deploy.new"
	cp "$1" "$(node "$candidate")"
	if ! on_node "$CONTAINERD" --config "$candidate" config dump >"$2" 2>"$2.err"; then
		rm -f "$(node "$candidate")"
		die "containerd rejects the edited configuration, $CONTAINERD_CONFIG is unchanged: $(cat "$2.err")"
	fi
	rm -f "$(node "$candidate")"
}

# runtime_sections DUMP: the CRI runtimes of a configuration dump, except rune.
runtime_sections() {
	awk -v p='[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.' '
		/^[[:space:]]*\[/ {
			h = $0
			sub(/^[[:space:]]+/, "", h)
			keep = index(h, p) == 1 && index(h, p "rune]") != 1 && index(h, p "rune.") != 1
		}
		keep { sub(/^[[:space:]]+/, ""); print }' "$1"
}

# replace_containerd_config NEW: make NEW the node's containerd configuration (its mode and
# owner kept), once containerd accepts it.
replace_containerd_config() {
	f=$(node "$CONTAINERD_CONFIG")
	check_config "$1" "$1.dump"
	rm -f "$1.dump" "$1.dump.err"
	if [ -e "$f" ] && [ ! -e "$(state containerd-config.orig)" ]; then
		cp -p "$f" "$(state containerd-config.orig)"
	fi
	next=$(node "$CONTAINERD_CONFIG.rune-deploy.new")
	if [ -e "$f" ]; then
		cp -p "$f" "$next"
		cat "$1" >"$next"
	else
		cp "$1" "$next"
		chmod 0644 "$next"
	fi
	mv -f "$next" "$f"
}

# compose_v2 BASE [RUNTIMES]: BASE with rune-deploy's block: the runtime rune, and RUNTIMES.
compose_v2() {
	cat "$1"
	echo "$BEGIN_MARK"
	if [ -n "${2:-}" ]; then
		echo "# containerd's default runtimes: a runtimes table of rune alone would replace them"
		cat "$2"
	fi
	handler containerd-1.6-1.7.toml | sed '/^[[:space:]]*version[[:space:]]*=/d; /^#/d' | sed '/./,$!d'
	echo "$END_MARK"
}

# add_runtime_v2: append the runtime block to the main configuration (containerd 1.x imports
# would replace the whole CRI section). The runtimes containerd had stay exactly as they were:
# when the file defines none, containerd's defaults (runc) would be replaced by a table holding
# only rune, so the block carries them too. Sets CHANGED when it changed anything.
add_runtime_v2() {
	f=$(node "$CONTAINERD_CONFIG")
	work="$WORK/v2"
	mkdir -p "$work"
	if [ -f "$f" ] && has_content "$f"; then
		strip_block "$f" >"$work/base"
	else
		[ -e "$f" ] || : >"$(state containerd-config.created)"
		echo "version = 2" >"$work/base"
	fi
	if grep -Eq '^[[:space:]]*\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.("rune"|rune)\]' "$work/base"; then
		rm -rf "$work"
		die "$CONTAINERD_CONFIG already defines the runtime rune outside rune-deploy's block; remove it, or keep it and do not run rune-deploy"
	fi
	check_config "$work/base" "$work/base.dump"
	runtime_sections "$work/base.dump" >"$work/base.runtimes"
	compose_v2 "$work/base" >"$work/new"
	check_config "$work/new" "$work/new.dump"
	if ! runtime_sections "$work/new.dump" | cmp -s - "$work/base.runtimes"; then
		compose_v2 "$work/base" "$work/base.runtimes" >"$work/new"
		check_config "$work/new" "$work/new.dump"
		if ! runtime_sections "$work/new.dump" | cmp -s - "$work/base.runtimes"; then
			rm -rf "$work"
			die "adding the runtime rune would change containerd's other runtimes; add containerd/containerd-1.6-1.7.toml to $CONTAINERD_CONFIG by hand"
		fi
	fi
	if [ -f "$f" ] && cmp -s "$work/new" "$f"; then
		rm -rf "$work"
		return 0
	fi
	replace_containerd_config "$work/new"
	rm -rf "$work"
	CHANGED=true
	log "added the runtime rune to $CONTAINERD_CONFIG"
}

# add_runtime_v3: a drop-in in conf.d, imported by the main configuration (containerd 2.x
# merges imports key by key). Sets CHANGED when it changed anything.
add_runtime_v3() {
	dropin=$(node "$CONTAINERD_CONF_D/$DROPIN")
	mkdir -p "$(dirname "$dropin")"
	handler containerd-2.x.toml >"$WORK/dropin"
	if ! cmp -s "$WORK/dropin" "$dropin"; then
		cp "$WORK/dropin" "$dropin"
		CHANGED=true
		log "installed $CONTAINERD_CONF_D/$DROPIN"
	fi
	f=$(node "$CONTAINERD_CONFIG")
	import="$CONTAINERD_CONF_D/$DROPIN"
	tmp="$WORK/config.new"
	if [ ! -f "$f" ] || ! has_content "$f"; then
		[ -e "$f" ] || : >"$(state containerd-config.created)"
		printf 'version = 3\nimports = ["%s"] %s\n' "$import" "$IMPORT_MARK" >"$tmp"
	elif grep -q '^[[:space:]]*imports[[:space:]]*=' "$f"; then
		if grep -Fq "$import" "$f" || grep -Fq "$CONTAINERD_CONF_D/*.toml" "$f"; then
			rm -f "$tmp"
			return 0
		fi
		rm -f "$tmp"
		die "$CONTAINERD_CONFIG has imports that include neither $import nor $CONTAINERD_CONF_D/*.toml; add one of them"
	else
		sed "/^[[:space:]]*version[[:space:]]*=/a\\
imports = [\"$import\"] $IMPORT_MARK" "$f" >"$tmp"
	fi
	if [ -f "$f" ] && cmp -s "$tmp" "$f"; then
		rm -f "$tmp"
		return 0
	fi
	replace_containerd_config "$tmp"
	rm -f "$tmp"
	CHANGED=true
	log "made $CONTAINERD_CONFIG import $import"
}

restart_containerd() {
	log "restarting containerd: $RESTART_CONTAINERD"
	on_node $RESTART_CONTAINERD || die "restart of containerd failed; restart it by hand"
}

install() {
	mkdir -p "$(state '')"
	install_binaries
	install_config
	version=$(containerd_config_version)
	prev=$(cat "$(state containerd-config.version)" 2>/dev/null || true)
	[ -z "$prev" ] || [ "$prev" = "$version" ] ||
		die "rune-deploy configured containerd as version $prev before, and the node now has version $version: run cleanup first"
	echo "$version" >"$(state containerd-config.version)"
	CHANGED=false
	case $version in
	2) add_runtime_v2 ;;
	*) add_runtime_v3 ;; # containerd 2.x merges the drop-in into versions 3 and 4 alike
	esac
	if $CHANGED; then
		restart_containerd
	else
		log "containerd's configuration already has the runtime rune"
	fi
	log "installed"
}

# rune_containers prints the state files of rune containers on the node.
rune_containers() {
	for s in "$(node "$RUNE_ROOT")"/*/state.json "$(node "$RUNE_ROOT")"/*/*/state.json; do
		[ -e "$s" ] && echo "${s#"$HOST_ROOT"}"
	done
	return 0
}

cleanup() {
	running=$(rune_containers)
	if [ -n "$running" ]; then
		log "$running"
		die "rune containers still exist on this node; the runtime stays installed (delete their pods, then run cleanup again)"
	fi
	f=$(node "$CONTAINERD_CONFIG")
	version=$(cat "$(state containerd-config.version)" 2>/dev/null || true)
	changed=false
	case $version in
	2)
		if [ -f "$f" ] && grep -qxF "$BEGIN_MARK" "$f"; then
			tmp="$WORK/config.new"
			strip_block "$f" >"$tmp"
			if [ -e "$(state containerd-config.created)" ] && [ "$(cat "$tmp")" = "version = 2" ]; then
				rm -f "$f"
			else
				replace_containerd_config "$tmp"
			fi
			rm -f "$tmp"
			changed=true
		fi
		;;
	3 | 4)
		if [ -e "$(node "$CONTAINERD_CONF_D/$DROPIN")" ]; then
			rm -f "$(node "$CONTAINERD_CONF_D/$DROPIN")"
			changed=true
		fi
		if [ -f "$f" ] && grep -qF "$IMPORT_MARK" "$f"; then
			tmp="$WORK/config.new"
			grep -vF "$IMPORT_MARK" "$f" >"$tmp" || true
			if [ -e "$(state containerd-config.created)" ] && [ "$(cat "$tmp")" = "version = 3" ]; then
				rm -f "$f"
			else
				replace_containerd_config "$tmp"
			fi
			rm -f "$tmp"
		fi
		;;
	esac
	if $changed; then
		restart_containerd
	fi
	link=$(node "$SHIM_LINK_DIR/containerd-shim-rune-v2")
	if [ -L "$link" ] && [ "$(readlink "$link")" = "$INSTALL_DIR/bin/containerd-shim-rune-v2" ]; then
		rm -f "$link"
	fi
	for b in $BINARIES; do
		rm -f "$(node "$INSTALL_DIR/bin/$b")"
	done
	rmdir "$(node "$INSTALL_DIR/bin")" 2>/dev/null || true
	if [ -e "$(state config.installed)" ]; then
		if [ -e "$(state config.toml.orig)" ]; then
			mv -f "$(state config.toml.orig)" "$(node "$CONFIG_DST")"
		else
			rm -f "$(node "$CONFIG_DST")"
			rmdir "$(dirname "$(node "$CONFIG_DST")")" 2>/dev/null || true
		fi
	fi
	rm -rf "$(state '')"
	rmdir "$(node "$INSTALL_DIR")" 2>/dev/null || true
	log "removed"
}

run() {
	install
	# The trap is in place before readiness is reported, and it stops the sleeper it knows by pid:
	# nothing of the installer outlives it.
	sleeper=
	# ($! as well: a signal between "sleep &" and the assignment finds the sleeper there.)
	trap 'log "stopping: uninstalling"; rm -f "$READY_FILE"; for p in $sleeper $!; do kill "$p" 2>/dev/null || true; done; cleanup; exit 0' TERM INT
	: >"$READY_FILE"
	log "waiting; deleting this pod uninstalls"
	while :; do
		sleep 86400 &
		sleeper=$!
		wait "$sleeper" || true
	done
}

case ${1:-} in
install) install ;;
cleanup) cleanup ;;
run) run ;;
*)
	echo "usage: rune-deploy install | cleanup | run" >&2
	exit 2
	;;
esac
