#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a fresh Debian 12 machine (as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(runc crun containerd docker.io podman conmon busybox-static umoci skopeo criu hyperfine libseccomp-dev
      containernetworking-plugins gcc make pkg-config iproute2 procps psmisc util-linux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "Go 1.26 is required (not found in PATH)" >&2; exit 1; }
go mod download
# The image encryption tests' stand-in for skopeo copy (Debian 12's skopeo has no ocicrypt key
# providers): a module of its own, built by the tests.
(cd tests/imagecrypt/imgcopy && go mod download)
