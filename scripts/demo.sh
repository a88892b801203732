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
verdictd_pid=
cleanup() {
  [ -n "$inclavared_pid" ] && kill "$inclavared_pid" 2>/dev/null && wait "$inclavared_pid" 2>/dev/null
  [ -n "$verdictd_pid" ] && kill "$verdictd_pid" 2>/dev/null && wait "$verdictd_pid" 2>/dev/null
  for id in $(rune list -q 2>/dev/null); do rune delete -f "$id" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rm -rf "$work"; mkdir -p "$work"

say "Bundle: a busybox rootfs with a WebAssembly workload"
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,app,etc,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh echo cat ls sleep true id sha256sum; do ln -sf busybox "$rootfs/bin/$a"; done
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
rune delete -f demo-service
kill "$inclavared_pid"; wait "$inclavared_pid" 2>/dev/null || true; inclavared_pid=

say "Key broker: the tenant's verdictd releases a key, and a sealed module's key, only to attested enclaves"
kbs=$work/kbs; mkdir -p "$kbs/resources/demo/key"
"$bin/verdict" keygen "$kbs/resources/demo/key/app"              # the tenant's secret
pin=$("$bin/verdict" tls-identity --host 127.0.0.1 "$kbs/cert.pem" "$kbs/key.pem")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/verdict" seal --key-id demo/key/app --key "$kbs/resources/demo/key/app" \
  "$rootfs/app/hello.wasm" "$rootfs/app/hello.sealed.wasm"          # the tenant seals its module
rm "$rootfs/app/hello.wasm"                                          # the image holds only ciphertext
# Two enclave containers that trust the broker by its pin; host network, to reach it on loopback.
enclave_bundle() { # NAME RUNTIME ENV ARGS...
  local b=$work/$1 rt=$2 env=$3; shift 3
  mkdir -p "$b"; cp "$work/bundle/config.json" "$b/"
  python3 - "$b/config.json" "$rootfs" "$rt" "$env" "$@" <<'PY'
import json, sys
p, rootfs, rt, env, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
c = json.load(open(p))
c["root"]["path"] = rootfs
c["process"]["args"] = args
c["process"]["env"] = [e for e in c["process"]["env"] if not e.startswith("ENCLAVE_")] + ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + rt] + env.split()
c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/run/svc"]
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
json.dump(c, open(p, "w"), indent=1)
PY
}
broker="ENCLAVE_KBS_URL=https://127.0.0.1:$port ENCLAVE_KBS_PIN=$pin"
enclave_bundle secret builtin:native "$broker ENCLAVE_SECRETS=demo/key/app:/run/secrets/app" sha256sum /run/secrets/app
enclave_bundle sealed builtin:wasm "$broker" /app/hello.sealed.wasm
rune create -b "$work/secret" demo-secret >"$work/secret.out"
rune create -b "$work/sealed" demo-sealed >"$work/sealed.out"
# The tenant's reference values (here read from rune; a tenant computes them: docs/measurement.md).
m1=$(rune attest demo-secret | python3 -c 'import json,sys; print(json.load(sys.stdin)["measurement"])')
m2=$(rune attest demo-sealed | python3 -c 'import json,sys; print(json.load(sys.stdin)["measurement"])')
cat > "$kbs/policy.json" <<JSON
{"default": {"tees": {"sim": {"measurements": {"measurement": ["$m1", "$m2"]}, "allow_unknown_tcb": true}}}}
JSON
"$bin/verdictd" --listen "127.0.0.1:$port" --tls-cert "$kbs/cert.pem" --tls-key "$kbs/key.pem" \
  --policy "$kbs/policy.json" --resources "$kbs/resources" --sim-root "$work/sim-platform.pem" 2>"$kbs/verdictd.log" &
verdictd_pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$kbs/verdictd.log" 2>/dev/null && break; sleep 0.1; done
wait_stopped() { for _ in $(seq 100); do rune state "$1" | grep -q '"stopped"' && return; sleep 0.1; done; }
rune start demo-secret; wait_stopped demo-secret
echo "the enclave read its key:  $(cut -d' ' -f1 "$work/secret.out")"
echo "the tenant's key digest:   $(sha256sum "$kbs/resources/demo/key/app" | cut -d' ' -f1)"
[ "$(cut -d' ' -f1 "$work/secret.out")" = "$(sha256sum "$kbs/resources/demo/key/app" | cut -d' ' -f1)" ]
rune start demo-sealed; wait_stopped demo-sealed
echo "the sealed module ran:     $(head -1 "$work/sealed.out")"
grep -q "Hello from an enclave container" "$work/sealed.out"
grep -o '"msg":"released"[^}]*' "$kbs/verdictd.log" | head -2
rune delete demo-secret; rune delete demo-sealed
say "Done: measured, attested locally and remotely, and trusted with the tenant's keys"
