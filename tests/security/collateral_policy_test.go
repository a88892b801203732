package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
)

// Collateral the verifier trusts (hole 9 of the trust-holes issue).
//
// Party: an attested peer (a confidential service, inclavared, or whoever answers an Enclave-TLS
// handshake), which chooses the endorsements its certificate carries. Attacks: leave the CRLs
// out, so that a revoked PCK goes unnoticed; send an old TCB info from before the platform was
// found out of date. Defences: policies can demand revocation lists ("require_crl") and a
// maximum collateral age ("max_collateral_age"), and the verifier's own TCB info and QE identity
// win over the peer's.
//
// The platform here is a real TDX quote re-signed under a test PKI that the tenant trusts
// explicitly as an Intel root (as one trusts Intel's pre-production PKI), so that the test can
// issue CRLs and TCB infos of any date.

func TestPeerChosenCollateral(t *testing.T) {
	s := dcapSamples[1] // TDX v4
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := forge(t, s, "a test Intel PKI", rootKey, nil, nil, now)
	rootCRL, pckCRL, err := f.pki.CRLs(now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issuer := append(f.pki.IssuerChainPEM(), 0) // as Intel's libraries hand it over, NUL-terminated
	complete := &enclavetls.IntelEndorsements{Version: 1, TCBInfo: f.collateral[0], QEIdentity: f.collateral[1],
		TCBInfoIssuerChain: issuer, QEIdentityIssuerChain: issuer, RootCACRL: rootCRL, PCKCRL: pckCRL}
	noCRLs := *complete
	noCRLs.RootCACRL, noCRLs.PCKCRL = nil, nil

	// An old TCB info, 20 days before now (still inside its 30 days of validity), when this platform was UpToDate; and the
	// verifier's own current one, saying OutOfDate.
	oldTCB, err := f.pki.Resign(f.tcb, upToDateAt(now.Add(-20*24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	oldQE, err := f.pki.Resign(f.qe, upToDateAt(now.Add(-20*24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	old := *complete
	old.TCBInfo, old.QEIdentity = oldTCB, oldQE
	currentOutOfDate, err := f.pki.Resign(f.tcb, func(b []byte) []byte {
		return tcbStatus.ReplaceAll(upToDateAt(now)(b), []byte(`"tcbStatus":"OutOfDate"`))
	})
	if err != nil {
		t.Fatal(err)
	}

	strict := mustPolicy(t, `{"tees":{"tdx":{"allow_any_measurement":true,"require_crl":true,"max_collateral_age":"7d"}}}`)
	trusting := attestation.Options{IntelRoots: []*x509.Certificate{f.pki.Root}}
	ownCollateral := trusting
	ownCollateral.Collateral = [][]byte{currentOutOfDate, f.collateral[1], f.pki.IssuerChainPEM()}

	for _, tc := range []struct {
		name         string
		endorsements *enclavetls.IntelEndorsements
		opts         attestation.Options
		violations   []string // policy rules that must fail; none: accepted
		status       string
	}{
		{"complete, current endorsements: accepted", complete, trusting, nil, "UpToDate"},
		{"peer leaves the CRLs out", &noCRLs, trusting, []string{"require_crl"}, "UpToDate"},
		{"peer sends 20-day-old collateral", &old, trusting, []string{"max_collateral_age"}, "UpToDate"},
		{"peer's favourable TCB info against the verifier's own", &old, ownCollateral, []string{"tcb_statuses"}, "OutOfDate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := ratlsCertificate(t, f, tc.endorsements)
			p, err := enclavetls.VerifyCertificate(context.Background(), cert, tc.opts, nil)
			if err != nil {
				t.Fatalf("the certificate does not verify, so the policy is not what is tested: %v", err)
			}
			if p.Result.TCBStatus != tc.status {
				t.Errorf("TCB status %q, want %q (collateral %+v)", p.Result.TCBStatus, tc.status, p.Result.Collateral)
			}
			err = strict.Check(p.Result)
			var got []string
			for _, v := range policy.Violations(err) {
				got = append(got, v.Rule)
			}
			if strings.Join(got, ",") != strings.Join(tc.violations, ",") {
				t.Fatalf("violations %v, want %v (%v; collateral %+v)", got, tc.violations, err, p.Result.Collateral)
			}
		})
	}
}

// TestCollateralAgeAndCRLsOnRealSamples applies the new rules to Intel's own collateral: the
// SGX sample's TCB info and QE identity are 3½ days old at the sample's time, and carry no CRL.
func TestCollateralAgeAndCRLsOnRealSamples(t *testing.T) {
	s := dcapSamples[0]
	opts := attestation.Options{Now: s.at, Collateral: [][]byte{readSample(t, s.tcb), readSample(t, s.qe), readSample(t, "sgx/oasis_tcb_signing_chain.pem")}}
	res, err := attestation.Verify(context.Background(), readSample(t, s.quote), opts)
	if err != nil {
		t.Fatal(err)
	}
	base := `"allow_any_measurement":true,"tcb_statuses":["SWHardeningNeeded"]`
	for _, tc := range []struct {
		rules, violation string
	}{
		{`"max_collateral_age":"30d"`, ""},
		{`"max_collateral_age":"72h"`, "max_collateral_age"},
		{`"require_crl":true`, "require_crl"},
	} {
		err := mustPolicy(t, `{"tees":{"intelSgx":{`+base+`,`+tc.rules+`}}}`).Check(res)
		var got string
		if vs := policy.Violations(err); len(vs) > 0 {
			got = vs[0].Rule
		}
		if got != tc.violation {
			t.Errorf("%s: violation %q, want %q (%v)", tc.rules, got, tc.violation, err)
		}
	}
}

func mustPolicy(t *testing.T, s string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
