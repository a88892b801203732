package tdx

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// TestValidUntilRecordedTDX: Result.ValidUntil of the recorded TDX quotes is the earliest end of
// what the verdict rests on, computed here from the inputs themselves (PCK chain, TCB signing
// chain, TCB info, TD-QE identity, PCK and root CA CRLs); at ValidUntil the quote still verifies,
// one second later it fails for that input. The SPR E4 quote at 2023-07-01 shows the recorded
// PCK CRL winning (2023-07-08T07:27:52Z), and with the TD-QE identity added that one winning
// (07:24:59Z, three minutes earlier).
func TestValidUntilRecordedTDX(t *testing.T) {
	withCRLs := []string{pckCRL, rootCRL}
	for _, tc := range []struct {
		name       string
		quote      string
		at         time.Time
		collateral []string
		trailing   bool
		failure    string
	}{
		{"C0806F, no collateral", quoteC0806F, atC0806F, nil, false, "PCK chain at"},
		{"C0806F, TCB info and TD-QE identity", quoteC0806F, atC0806F, []string{tcbC0806F, qe2024, signingChain}, false, "QE identity (TD_QE): expired"},
		{"SPR E4, PCK and root CA CRLs", quoteSPRE4, atGoTDX, withCRLs, true, `CRL of "Intel SGX PCK Platform CA": expired`},
		{"SPR E4, CRLs and TD-QE identity", quoteSPRE4, atGoTDX, append(withCRLs, qe2023, signingChain), true, "QE identity (TD_QE): expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quote := sample(t, tc.quote)
			files := samples(t, tc.collateral...)
			q, err := ParseQuote(quote, tc.trailing)
			if err != nil {
				t.Fatal(err)
			}
			chain, err := q.Signature.Certification.PCKChain()
			if err != nil {
				t.Fatal(err)
			}
			col, err := abi.ParseCollateral(files)
			if err != nil {
				t.Fatal(err)
			}
			var want time.Time
			note := func(d time.Time) {
				if want.IsZero() || d.Before(want) {
					want = d
				}
			}
			for _, c := range append(chain, col.Certificates...) {
				note(c.NotAfter)
			}
			for _, crl := range col.CRLs {
				note(crl.NextUpdate)
			}
			for _, ti := range col.TCBInfos {
				note(ti.NextUpdate)
			}
			for _, qi := range col.QEIdentities {
				note(qi.NextUpdate)
			}
			opts := attestation.Options{Now: tc.at, Collateral: files, AllowTrailingData: tc.trailing}
			res, err := (Verifier{}).Verify(context.Background(), quote, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.ValidUntil.Equal(want) {
				t.Fatalf("ValidUntil %s, want %s", res.ValidUntil.Format(time.RFC3339), want.Format(time.RFC3339))
			}
			opts.Now = want
			if _, err := (Verifier{}).Verify(context.Background(), quote, opts); err != nil {
				t.Fatalf("at ValidUntil: %v", err)
			}
			opts.Now = want.Add(time.Second)
			if _, err := (Verifier{}).Verify(context.Background(), quote, opts); err == nil || !strings.Contains(err.Error(), tc.failure) {
				t.Fatalf("one second after ValidUntil: %v, want %q", err, tc.failure)
			}
		})
	}
}
