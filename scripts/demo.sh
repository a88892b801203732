#!/usr/bin/env bash
# The main job, end to end on the built-in default TEE (sim): an ordinary container and an enclave
# container (builtin:wasm) under rune, the enclave's measurement and its attestation evidence.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
work=${DEMO_DIR:-/tmp/rune-demo}
root=$work/state
rune() { "$bin/rune" --root "$root" "$@"; }
cleanup() {
  for id in $(rune list -q 2>/dev/null); do rune delete -f "$id" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rm -rf "$work"; mkdir -p "$work"

say "Bundle: a busybox rootfs with a WebAssembly workload"
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,app,etc,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh echo cat ls sleep true id; do ln -sf busybox "$rootfs/bin/$a"; done
echo enclave-demo > "$rootfs/etc/hostname"
(cd "$top" && GOOS=wasip1 GOARCH=wasm go build -o "$rootfs/app/hello.wasm" ./examples/hello)
(cd "$work/bundle" && rune spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo ordinary container: $(id)"]
json.dump(c, open(p, "w"), indent=1)
PY

say "Ordinary container (rune run)"
rune run -b "$work/bundle" demo-plain

say "Enclave container: ENCLAVE_TYPE=sim ENCLAVE_RUNTIME_PATH=builtin:wasm"
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/app/hello.wasm"]
c["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm"]
json.dump(c, open(p, "w"), indent=1)
PY
rune create -b "$work/bundle" demo-enclave
rune state demo-enclave | grep -E '"(id|status)"'
nonce=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
say "Attestation evidence (nonce $nonce)"
rune attest --nonce "$nonce" --output "$work/evidence.bin" demo-enclave | tee "$work/attest.json"
measurement=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["measurement"])' "$work/attest.json")
rune start demo-enclave
sleep 0.5
rune delete demo-enclave

say "shelter verifies the evidence against this host's sim platform and reference values"
rune sim-platform-cert > "$work/sim-platform.pem"
cat > "$work/policy.json" <<JSON
{"tees": {"sim": {"measurements": {"measurement": ["$measurement"]}, "allow_unknown_tcb": true}}}
JSON
"$bin/shelter" verify --roots "$work/sim-platform.pem" --policy "$work/policy.json" "$work/evidence.bin"
