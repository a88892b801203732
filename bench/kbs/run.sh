#!/usr/bin/env bash
# verdictd on loopback: attest + resource release per second (fresh client each time) and
# releases per second on an attested session. See README.md.
# Env: KBS_BENCHTIME (3s), KBS_COUNT (3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
go test -run '^$' -bench . -benchtime "${KBS_BENCHTIME:-3s}" -count "${KBS_COUNT:-3}" ./bench/kbs
