#!/usr/bin/env bash
# Enclave container lifecycle vs the same workload as an ordinary container, in one run (as root):
#   sudo bench/enclave/run.sh [ITERATIONS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make -s -C "$top" build >/dev/null
mk() { # bundle dir, then args as JSON, then extra env as JSON
  mkdir -p "$1/rootfs/app" "$1/rootfs/etc"
  echo bench > "$1/rootfs/etc/hostname"
  (cd "$1" && "$top/bin/rune" spec)
  python3 - "$1/config.json" "$2" "$3" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = json.loads(sys.argv[2])
c["process"]["env"] += json.loads(sys.argv[3])
json.dump(c, open(p, "w"), indent=1)
PY
}
mk "$work/plain" '["/app/hello"]' '[]'
mk "$work/enclave" '["/app/hello.wasm"]' '["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm"]'
(cd "$top" && CGO_ENABLED=0 go build -o "$work/plain/rootfs/app/hello" ./examples/hello)
(cd "$top" && GOOS=wasip1 GOARCH=wasm go build -o "$work/enclave/rootfs/app/hello.wasm" ./examples/hello)
(cd "$top" && go build -o "$work/enclave-bench" ./bench/enclave)
"$work/enclave-bench" -rune "$top/bin/rune" -plain "$work/plain" -enclave "$work/enclave" -n "$n"
