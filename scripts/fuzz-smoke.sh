#!/usr/bin/env bash
# Runs every fuzz target of the module briefly (FUZZTIME each, default 3s), as CI does: parsers of
# untrusted bytes must survive a short burst of generated input beyond their seed corpus.
# Longer runs by hand: FUZZTIME=5m scripts/fuzz-smoke.sh ./attestation/tdx
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
n=0
for d in "${dirs[@]}"; do
  for target in $(grep -h '^func Fuzz' "$d"/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
    echo "fuzz $d $target ($fuzztime)"
    # A short minimisation time: minimising a multi-kilobyte seed can otherwise stall for minutes.
    corpus="$d/testdata/fuzz/$target"
    before=$( (ls "$corpus" 2>/dev/null || true) | wc -l)
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$d" >/tmp/fuzz-$$.log 2>&1; then
      # A finding always leaves its failing input in the corpus directory. A failure without one is
      # the fuzzing engine itself (a worker starved on a loaded machine): that gets one more run.
      if [ "$( (ls "$corpus" 2>/dev/null || true) | wc -l)" != "$before" ] ||
         ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$d" >>/tmp/fuzz-$$.log 2>&1; then
        cat /tmp/fuzz-$$.log; rm -f /tmp/fuzz-$$.log; echo "fuzz target $target in $d failed" >&2; exit 1
      fi
      echo "  (engine failure without a finding; passed on the second run)"
    fi
    n=$((n+1))
  done
done
rm -f /tmp/fuzz-$$.log
echo "fuzz: $n targets ran for $fuzztime each without a failure"
