#!/usr/bin/env bash
# verdictd on loopback: attest + resource release per second (fresh client each time) and
# releases per second on an attested session; as root, the start-up of an enclave container
# without a broker, with one secret and with a sealed entrypoint, as ratios. See README.md.
# Env: KBS_BENCHTIME (3s), KBS_COUNT (3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
make -s build >/dev/null
out=$(go test -run '^$' -bench . -benchtime "${KBS_BENCHTIME:-3s}" -count "${KBS_COUNT:-3}" ./bench/kbs | tee /dev/stderr)
echo "$out" | awk '
/^BenchmarkStartup\// {
  split($1, a, "/"); v = a[2]; sub(/-[0-9]+$/, "", v)
  ns[v] += $3; n[v]++
}
END {
  if (!n["plain"]) exit
  base = ns["plain"] / n["plain"]
  split("plain one-secret sealed", order, " ")
  for (i = 1; i <= 3; i++) { v = order[i]; if (n[v]) printf "startup %-10s %6.1f ms  %.2fx plain  (+%.1f ms)\n", v, ns[v]/n[v]/1e6, (ns[v]/n[v])/base, (ns[v]/n[v]-base)/1e6 }
}'
