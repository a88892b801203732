package sgx

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/verify"
)

// TestMemoNeverServesWhatNoLongerHolds warms the verification memo, then changes one input at a
// time: a later time past the PCK certificate's or the collateral's validity, a CRL that revokes
// the PCK certificate, other trust anchors, a flipped byte. Each must fail exactly as it does
// without the memo.
func TestMemoNeverServesWhatNoLongerHolds(t *testing.T) {
	ctx := context.Background()
	quote := sample(t, quoteFile)
	full := samples(t, tcbInfoFile, qeIDFile, signingChain)
	warm := func(opts attestation.Options) {
		t.Helper()
		for range 2 {
			if _, err := (Verifier{}).Verify(ctx, quote, opts); err != nil {
				t.Fatalf("warming: %v", err)
			}
		}
	}
	base := attestation.Options{Now: pinned, Collateral: full}
	warm(base)
	for _, tc := range []struct {
		name string
		opts attestation.Options
		want string
	}{
		{"PCK certificate expired", attestation.Options{Now: pckExpired, Collateral: full}, "expired"},
		{"QE identity expired", attestation.Options{Now: qeIdentityExpiry, Collateral: full}, "QE identity (QE): expired"},
		{"QE identity not yet issued", attestation.Options{Now: qeIdentityFuture, Collateral: full}, "issued in the future"},
		{"tampered TCB info", attestation.Options{Now: pinned, Collateral: [][]byte{bytes.Replace(full[0], []byte("SWHardeningNeeded"), []byte("UpToDate"), 1), full[1], full[2]}}, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (Verifier{}).Verify(ctx, quote, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}

	// A quote under a test Intel PKI: warmed without a CRL, then a CRL revokes its PCK
	// certificate; and the same quote with other anchors.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pki, err := dcaptest.NewPKI(key, nil, pinned.Add(-time.Hour), pinned.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := pki.Reforge(quote, dcaptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := attestation.Options{Now: pinned, IntelRoots: []*x509.Certificate{pki.Root}}
	warm(opts)
	_, pckCRL, err := pki.CRLs(pinned.Add(-time.Minute), pki.LastPCK.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	revoked := opts
	revoked.Collateral = [][]byte{pckCRL}
	if _, err := (Verifier{}).Verify(ctx, forged, revoked); !errors.Is(err, verify.ErrRevoked) {
		t.Fatalf("revoked after warming: %v", err)
	}
	other, err := dcaptest.NewPKI(key, nil, pinned.Add(-time.Hour), pinned.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (Verifier{}).Verify(ctx, forged, attestation.Options{Now: pinned, IntelRoots: []*x509.Certificate{other.Root}}); err == nil ||
		!strings.Contains(err.Error(), "PCK chain") {
		t.Fatalf("other anchors after warming: %v", err)
	}
	if _, err := (Verifier{}).Verify(ctx, forged, attestation.Options{Now: pinned}); err == nil {
		t.Fatal("no extra anchors after warming: verified")
	}
}

// BenchmarkVerifySGXv3WarmCache is a long-lived verifier seeing a known platform again: PCK
// chain, TCB info, QE identity and their signers come from the memo; only the quote's own
// signatures are checked.
func BenchmarkVerifySGXv3WarmCache(b *testing.B) {
	benchmarkVerify(b, true)
}

func benchmarkVerify(b *testing.B, warm bool) {
	dcap.CacheVerifications(warm)
	defer dcap.CacheVerifications(true)
	quote := sample(b, quoteFile)
	opts := attestation.Options{Now: pinned, Collateral: samples(b, tcbInfoFile, qeIDFile, signingChain)}
	ctx := context.Background()
	for b.Loop() {
		res, err := (Verifier{}).Verify(ctx, quote, opts)
		if err != nil || res.TCBStatus != "SWHardeningNeeded" {
			b.Fatalf("%v %v", res, err)
		}
	}
}
