package tdx

import (
	"context"
	"testing"

	gotdxverify "github.com/google/go-tdx-guest/verify"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/verify"
)

// BenchmarkVerifyTDXv4 verifies the C0806F v4 quote with full collateral (TCB info, TD-QE
// identity, TCB signing chain): signatures, PCK chain, collateral signatures and TCB matching,
// all of them every time (the verification memo off).
func BenchmarkVerifyTDXv4(b *testing.B) {
	benchmarkVerifyTDXv4(b, false)
}

// BenchmarkVerifyTDXv4WarmCache is a long-lived verifier seeing a known platform again: the PCK
// chain, collateral signatures and QE report signature come from the memo.
func BenchmarkVerifyTDXv4WarmCache(b *testing.B) {
	benchmarkVerifyTDXv4(b, true)
}

func benchmarkVerifyTDXv4(b *testing.B, warm bool) {
	dcap.CacheVerifications(warm)
	defer dcap.CacheVerifications(true)
	quote := sample(b, quoteC0806F)
	opts := attestation.Options{Now: atC0806F, Collateral: samples(b, tcbC0806F, qe2024, signingChain)}
	ctx := context.Background()
	for b.Loop() {
		res, err := (Verifier{}).Verify(ctx, quote, opts)
		if err != nil || res.TCBStatus != "UpToDate" {
			b.Fatalf("%v %v", res, err)
		}
	}
}

// BenchmarkVerifyTDXv4NoCollateral is the same quote without collateral (signatures and PCK chain
// only), to compare with go-tdx-guest below.
func BenchmarkVerifyTDXv4NoCollateral(b *testing.B) {
	dcap.CacheVerifications(false)
	defer dcap.CacheVerifications(true)
	quote := sample(b, quoteC0806F)
	opts := attestation.Options{Now: atC0806F}
	ctx := context.Background()
	for b.Loop() {
		if _, err := (Verifier{}).Verify(ctx, quote, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGoTDXGuestVerifyTDXv4NoCollateral runs google/go-tdx-guest v0.3.1's verifier on the
// same quote and time without collateral (GetCollateral and CheckRevocations off), for comparison.
func BenchmarkGoTDXGuestVerifyTDXv4NoCollateral(b *testing.B) {
	quote := sample(b, quoteC0806F)
	roots, err := verify.TrustAnchors(nil) // same pinned root, parsed once, as ours
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		opts := &gotdxverify.Options{Now: atC0806F, TrustedRoots: roots}
		if err := gotdxverify.RawTdxQuote(quote, opts); err != nil {
			b.Fatal(err)
		}
	}
}
