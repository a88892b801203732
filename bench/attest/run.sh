#!/usr/bin/env bash
# Attestation benchmark, in one run:
#   1. Enclave-TLS handshakes/s (sim TEE: cached evidence, fresh evidence, mutual, mutual fresh),
#      each beside its peer run alternately with it in the same rounds: plain TLS 1.3 (one-way)
#      for the one-way handshakes, plain mutual TLS 1.3 for the mutual ones; the same key type
#      (ECDSA P-256); and the floor the mandatory signatures leave;
#   2. a CPU profile of the mutual fresh attested handshake: where the extra cost goes;
#   3. the verification of an RA-TLS certificate with hardware (SGX) evidence and collateral, with
#      the verdict remembered (verdict cache) against verified afresh (warm memo, and cold);
#   4. verifications/s of the SGX, TDX and SNP samples (and sim evidence), beside go-tdx-guest and
#      go-sev-guest on the same samples.
# See README.md.
#
# Usage: run.sh            (from anywhere in the repository)
# Env:   ATTEST_BENCHTIME (2s), ATTEST_COUNT (5 rounds: medians are reported),
#        ATTEST_PROFILETIME (4s: how long the profiled benchmark runs)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCHTIME=${ATTEST_BENCHTIME:-2s}
COUNT=${ATTEST_COUNT:-5}
PROFILETIME=${ATTEST_PROFILETIME:-4s}
die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
command -v go >/dev/null || die "missing go"
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "ATTEST_COUNT must be a positive integer"
cd "$REPO"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# bench PKG REGEX [extra go test flags…]: prints "name ns/op" (median over COUNT runs) per benchmark.
bench() {
	local pkg=$1 re=$2
	shift 2
	go test -run '^$' -bench "$re" -benchtime "$BENCHTIME" -count "$COUNT" "$@" "$pkg" >"$TMP/out" 2>&1 ||
		{ cat "$TMP/out" >&2; die "go test -bench failed in $pkg"; }
	awk '/^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name); print name, $3 }' "$TMP/out" |
		sort -k1,1 -k2,2n |
		awk '{ n[$1]++; v[$1, n[$1]] = $2 } END { for (k in n) print k, v[k, int((n[k] + 1) / 2)] }' | sort
}

rate() { awk -v ns="$1" 'BEGIN { printf "%.0f", 1e9/ns }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# median: the median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

go test -c -o "$TMP/enclavetls.test" ./enclavetls >/dev/null
# Each attested handshake runs right after its peer, in every round; even rounds run the list
# backwards, so that a change of load in a round weighs on both sides of each pair.
HS=(HandshakePlainTLS13 HandshakeEnclaveTLS HandshakeEnclaveTLSFresh HandshakePlainTLS13Mutual HandshakeEnclaveTLSMutual
	HandshakeEnclaveTLSMutualFresh ECDSAP256Sign ECDSAP256Verify)
echo "== Enclave-TLS handshakes (net.Pipe in one process, ECDSA P-256 certificates, TLS 1.3, sim TEE;" \
	"$COUNT alternating rounds of -benchtime $BENCHTIME; medians)"
load_before=$(loadavg)
for ((r = 1; r <= COUNT; r++)); do
	order=("${HS[@]}")
	if ((r % 2 == 0)); then
		order=()
		for ((i = ${#HS[@]} - 1; i >= 0; i--)); do order+=("${HS[i]}"); done
	fi
	for n in "${order[@]}"; do
		ns=$("$TMP/enclavetls.test" -test.run '^$' -test.bench "^Benchmark$n\$" -test.benchtime "$BENCHTIME" |
			awk '/^Benchmark/ { print $3; exit }')
		[[ -n $ns ]] || die "benchmark $n gave no result"
		echo "$r $n $ns"
	done
done >"$TMP/rounds"
load_after=$(loadavg)
ns() { awk -v n="$1" '$2 == n || $2 == "Handshake" n { print $3 }' "$TMP/rounds" | median; }
# ratio A B: the median over rounds of A's ns/op / B's ns/op (B's handshakes/s relative to A's).
ratio() {
	awk -v a="Handshake$1" -v b="Handshake$2" '$2 == a { x[$1] = $3 } $2 == b { y[$1] = $3 } END { for (r in x) print x[r] / y[r] }' "$TMP/rounds" |
		median | awk '{ printf "%.2f", $1 }'
}
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t) ? "meets" : "MISSES" }'; }
printf '%-32s %10s %12s   %-18s %6s   %s\n' benchmark ns/op handshakes/s peer ratio target
row() { # name peer target
	local n=$1 peer=${2:-} target=${3:-} r="" v=""
	if [[ -n $peer ]]; then
		r=$(ratio "$peer" "$n")
		[[ -n $target ]] && v=">= $target: $(verdict "$r" "$target")"
	fi
	printf '%-32s %10.0f %12s   %-18s %6s   %s\n' "Handshake$n" "$(ns "$n")" "$(rate "$(ns "$n")")" "${peer:+$peer}" "$r" "$v"
}
row PlainTLS13
row EnclaveTLS PlainTLS13 0.9
row EnclaveTLSFresh PlainTLS13 0.7
row PlainTLS13Mutual
row EnclaveTLSMutual PlainTLS13Mutual
row EnclaveTLSMutualFresh PlainTLS13Mutual 0.7
echo "(ratio: median over the rounds of the attested handshake's handshakes/s over its peer's in the same round;" \
	"mutual fresh against one-way plain, as reported before: $(ratio PlainTLS13 EnclaveTLSMutualFresh))"
sign=$(ns ECDSAP256Sign) verify=$(ns ECDSAP256Verify)
floor() { awk -v p="$(ns "$1")" -v k="$2" -v s="$sign" -v v="$verify" 'BEGIN { printf "%.2f", p / (p + k * (s + v)) }'; }
printf 'ECDSA P-256 here: sign %.0f ns, verify %.0f ns. Floor with every check kept (the peer plus what a fresh\n' "$sign" "$verify"
echo "attested side must add: evidence signature, certificate signature; the verifier: certificate self-signature," \
	"evidence (report) signature): fresh $(floor PlainTLS13 2), mutual fresh $(floor PlainTLS13Mutual 4)."
echo "load average (1, 5, 15 min): before $load_before, after $load_after; $(nproc) CPUs"

echo
echo "== Where the mutual fresh handshake's time goes (CPU profile of BenchmarkHandshakeEnclaveTLSMutualFresh, cumulative)"
"$TMP/enclavetls.test" -test.run '^$' -test.bench '^BenchmarkHandshakeEnclaveTLSMutualFresh$' -test.benchtime "$PROFILETIME" \
	-test.cpuprofile "$TMP/cpu.prof" >/dev/null
go tool pprof -top -cum -nodecount=500 -nodefraction=0 -edgefraction=0 "$TMP/enclavetls.test" "$TMP/cpu.prof" 2>/dev/null >"$TMP/top"
# Rows: the handshake as a whole, the attestation check and its parts, making certificates, and
# the TLS 1.3 handshake's own cryptography.
printf '%-58s %8s\n' function "cum %"
for f in 'crypto/tls.(*Conn).HandshakeContext' \
	'enclavetls.(*Verifier).VerifyCertificate' \
	'enclavetls.(*verdictCache).get' \
	'attestation/sim.(*Verifier).Verify' \
	'crypto/x509.(*Certificate).CheckSignature' \
	'enclavetls.ParseTaggedEvidence' \
	'enclavetls.ParseClaims' \
	'attestation/policy.(*Policy).Check' \
	'enclavetls.(*Identity).newCertificate' \
	'enclavetls.(*simTEE).evidence' \
	'enclavetls.(*certShape).certificate' \
	'crypto/ecdsa.VerifyASN1' \
	'crypto/ecdsa.Verify$' \
	'crypto/ecdsa.SignASN1' \
	'crypto/x509.ParseCertificate' \
	'crypto/ecdh' \
	'crypto/internal/fips140/mlkem' \
	'runtime.mallocgc' \
	'runtime.gcBgMarkWorker'; do
	awk -v f="$f" 'index($0, f) || ($6 ~ f) { name=$6; sub(/^github.com\/inclavare-containers\/inclavare-go\//, "", name)
		printf "%-58s %8s\n", name, $5; exit }' "$TMP/top"
done
echo "(cum % of all samples, both ends of the handshake; a function's share includes what it calls;" \
	"ecdsa.Verify is sim's report signature, VerifyASN1 the certificate self-signatures and CertificateVerify)"

echo
echo "== RA-TLS certificate with SGX evidence (recorded rats-tls certificate, Intel's recorded TCB info, QE identity," \
	"TCB signing chain; Verifier with policy; $COUNT alternating rounds of -benchtime $BENCHTIME; medians)"
VS=(VerifySGXCertificateFresh VerifySGXCertificateCached VerifySGXCertificateCold)
for ((r = 1; r <= COUNT; r++)); do
	order=("${VS[@]}")
	((r % 2 == 0)) && order=("${VS[2]}" "${VS[1]}" "${VS[0]}")
	for n in "${order[@]}"; do
		ns=$("$TMP/enclavetls.test" -test.run '^$' -test.bench "^Benchmark$n\$" -test.benchtime "$BENCHTIME" |
			awk '/^Benchmark/ { print $3; exit }')
		[[ -n $ns ]] || die "benchmark $n gave no result"
		echo "$r $n $ns"
	done
done >"$TMP/vrounds"
vns() { awk -v n="$1" '$2 == n { print $3 }' "$TMP/vrounds" | median; }
# vratio A B: the median over rounds of A's ns/op / B's ns/op.
vratio() {
	awk -v a="$1" -v b="$2" '$2 == a { x[$1] = $3 } $2 == b { y[$1] = $3 } END { for (r in x) print x[r] / y[r] }' "$TMP/vrounds" |
		median | awk '{ printf "%.1f", $1 }'
}
printf '%-32s %10s %16s   %s\n' benchmark ns/op verifications/s note
printf '%-32s %10.0f %16s   %s\n' VerifySGXCertificateCached "$(vns VerifySGXCertificateCached)" \
	"$(rate "$(vns VerifySGXCertificateCached)")" "verdict reused (key lookup, copy, policy)"
printf '%-32s %10.0f %16s   %s\n' VerifySGXCertificateFresh "$(vns VerifySGXCertificateFresh)" \
	"$(rate "$(vns VerifySGXCertificateFresh)")" "no verdict cache, memo warm (a known platform)"
printf '%-32s %10.0f %16s   %s\n' VerifySGXCertificateCold "$(vns VerifySGXCertificateCold)" \
	"$(rate "$(vns VerifySGXCertificateCold)")" "no verdict cache, no memo"
echo "cached verdict: $(vratio VerifySGXCertificateFresh VerifySGXCertificateCached)x the verifications/s of a fresh" \
	"(warm) verification, $(vratio VerifySGXCertificateCold VerifySGXCertificateCached)x of a cold one (medians of per-round ratios)"

echo
echo "== Evidence verification (samples from testdata/attestation, benchtime $BENCHTIME, median of $COUNT)"
{
	bench ./attestation/sgx 'VerifySGXv3'
	bench ./attestation/tdx 'Verify|GoTDXGuest'
	bench ./attestation/snp 'VerifySNP|GoSevGuest'
	bench ./attestation/sim 'VerifySim'
} >"$TMP/ver"
printf '%-42s %12s %14s  %s\n' benchmark ns/op verifications/s note
while read -r name ns; do
	case $name in
	VerifySGXv3) note="ours, cold: quote, PCK chain, TCB info + QE identity (no Go SGX peer in go.mod)" ;;
	VerifySGXv3WarmCache) note="ours, warm: a known platform again (only the quote's own signature is new)" ;;
	VerifySGXv3NoCollateral) note="ours, cold: signatures and PCK chain only" ;;
	VerifyTDXv4) note="ours, cold: with collateral (TCB info, TD-QE identity)" ;;
	VerifyTDXv4WarmCache) note="ours, warm: a known platform again" ;;
	VerifyTDXv4NoCollateral) note="ours, same work as the next row" ;;
	GoTDXGuestVerifyTDXv4NoCollateral) note="go-tdx-guest v0.3.1 verify.RawTdxQuote, same quote and time" ;;
	VerifySNP) note="ours, cold: report signature, VCEK -> ASK -> ARK (Milan)" ;;
	VerifySNPWarmCache) note="ours, warm: a known chip again (the report's own signature is new)" ;;
	GoSevGuestVerify) note="go-sev-guest v0.15.0 verify.SnpAttestation, same report, VCEK, roots" ;;
	VerifySim) note="sim evidence, cold (platform certificate, endorsement and report signatures)" ;;
	VerifySimWarmCache) note="sim evidence of a known enclave (only the report signature is new)" ;;
	*) note="" ;;
	esac
	printf '%-42s %12.0f %14s  %s\n' "$name" "$ns" "$(rate "$ns")" "$note"
done <"$TMP/ver"
