#!/usr/bin/env bash
# The main job, end to end on the built-in default TEE (sim): an ordinary container and an enclave
# container (builtin:wasm) under rune, the enclave's measurement and its attestation evidence.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
work=${DEMO_DIR:-/tmp/rune-demo}
root=$work/state
rune() { "$bin/rune" --root "$root" "$@"; }
inclavared_pid=
cleanup() {
  [ -n "$inclavared_pid" ] && kill "$inclavared_pid" 2>/dev/null && wait "$inclavared_pid" 2>/dev/null
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
"$bin/shelter" verify --sim-root "$work/sim-platform.pem" --policy "$work/policy.json" "$work/evidence.bin"

say "Remote attestation: a confidential service in an enclave container, inclavared, shelter"
svc=$work/svc; mkdir -p "$svc" "$rootfs/run/svc"
(cd "$top" && CGO_ENABLED=0 go build -o "$rootfs/app/confidential-service" ./examples/confidential-service)
python3 - "$work/bundle/config.json" "$svc" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/app/confidential-service", "--listen", "unix:///run/svc/svc.sock", "--message", "hello from the enclave"]
c["process"]["env"] = [e for e in c["process"]["env"] if not e.startswith("ENCLAVE_")] + ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"]
c["mounts"].append({"destination": "/run/svc", "type": "bind", "source": sys.argv[2], "options": ["rbind", "rw"]})
json.dump(c, open(p, "w"), indent=1)
PY
rune run -d -b "$work/bundle" demo-service </dev/null >"$work/service.log" 2>&1
for _ in $(seq 100); do [ -S "$svc/svc.sock" ] && break; sleep 0.1; done
svc_measurement=$(rune attest demo-service | python3 -c 'import json,sys; print(json.load(sys.stdin)["measurement"])')
policy() { echo "{\"tees\": {\"sim\": {\"measurements\": {\"measurement\": [\"$1\"]}, \"allow_unknown_tcb\": true}}}"; }
policy "$svc_measurement" > "$work/service-policy.json"
policy "$("$bin/inclavared" --print-measurement)" > "$work/inclavared-policy.json"
"$bin/inclavared" --listen "unix://$work/inclavared.sock" --upstream "unix://$svc/svc.sock" \
  --upstream-policy "$work/service-policy.json" --sim-root "$work/sim-platform.pem" \
  --sim-platform-key "${RUNE_SIM_PLATFORM_KEY:-/var/lib/rune/sim/platform-key.pem}" \
  >"$work/inclavared.log" 2>&1 &  # no --client-policy: shelter (no evidence of its own) gets evidence only
inclavared_pid=$!
for _ in $(seq 100); do [ -S "$work/inclavared.sock" ] && break; sleep 0.1; done
"$bin/shelter" remoteattestation --addr "unix://$work/inclavared.sock" --sim-root "$work/sim-platform.pem" \
  --policy "$work/service-policy.json" --inclavared-policy "$work/inclavared-policy.json"
say "Done: the enclave's measurement and evidence verified, locally and remotely"
