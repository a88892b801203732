package sgx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
)

// Result.ValidUntil must be the earliest time at which the same quote with the same inputs stops
// verifying (or verifies differently): a verdict cache (enclavetls) reuses a verdict only before
// it. These tests compute the expected minimum from the inputs themselves, then check the edge:
// at ValidUntil the quote still verifies, one second later it fails for the reason of the input
// that ends first.

// earliest returns the earliest of ts.
func earliest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if m.IsZero() || t.Before(m) {
			m = t
		}
	}
	return m
}

// notAfters returns the notAfter of every certificate in the PEM or DER files.
func notAfters(t *testing.T, files ...[]byte) []time.Time {
	t.Helper()
	c, err := abi.ParseCollateral(files)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, cert := range c.Certificates {
		out = append(out, cert.NotAfter)
	}
	for _, crl := range c.CRLs {
		out = append(out, crl.NextUpdate)
	}
	for _, ti := range c.TCBInfos {
		out = append(out, ti.NextUpdate)
	}
	for _, qi := range c.QEIdentities {
		out = append(out, qi.NextUpdate)
	}
	return out
}

// quoteChainNotAfters returns the notAfter of each certificate the quote's PCK chain carries.
func quoteChainNotAfters(t *testing.T, quote []byte) []time.Time {
	t.Helper()
	q, err := ParseQuote(quote, false)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := q.Signature.Certification.PCKChain()
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, c := range chain {
		out = append(out, c.NotAfter)
	}
	return out
}

// checkEdge verifies quote with opts at want (ValidUntil: it must still verify, with the same
// TCB status) and one second later (it must fail, saying failure).
func checkEdge(t *testing.T, quote []byte, opts attestation.Options, first *attestation.Result, want time.Time, failure string) {
	t.Helper()
	opts.Now = want
	res, err := (Verifier{}).Verify(context.Background(), quote, opts)
	if err != nil {
		t.Fatalf("at ValidUntil %s: %v", want.Format(time.RFC3339), err)
	}
	if res.TCBStatus != first.TCBStatus || !res.ValidUntil.Equal(first.ValidUntil) {
		t.Fatalf("at ValidUntil: status %q valid until %s, first %q %s", res.TCBStatus, res.ValidUntil, first.TCBStatus, first.ValidUntil)
	}
	opts.Now = want.Add(time.Second)
	if _, err := (Verifier{}).Verify(context.Background(), quote, opts); err == nil || !strings.Contains(err.Error(), failure) {
		t.Fatalf("one second after ValidUntil: %v, want an error saying %q", err, failure)
	}
}

// TestValidUntilRecordedSGX: the recorded SGX quote, without collateral (the PCK chain's
// earliest notAfter) and with its TCB info, QE identity and TCB signing chain (the QE identity's
// nextUpdate, 2023-01-15T12:45:36Z, comes first).
func TestValidUntilRecordedSGX(t *testing.T) {
	quote := sample(t, quoteFile)
	chain := quoteChainNotAfters(t, quote)
	full := samples(t, tcbInfoFile, qeIDFile, signingChain)
	for _, tc := range []struct {
		name       string
		collateral [][]byte
		want       time.Time
		failure    string
	}{
		{"no collateral", nil, earliest(chain...), "PCK chain at"},
		{"TCB info, QE identity, TCB signing chain", full, earliest(append(chain, notAfters(t, full...)...)...), "QE identity (QE): expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := attestation.Options{Now: pinned, Collateral: tc.collateral}
			res, err := (Verifier{}).Verify(context.Background(), quote, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.ValidUntil.Equal(tc.want) {
				t.Fatalf("ValidUntil %s, want %s", res.ValidUntil.Format(time.RFC3339), tc.want.Format(time.RFC3339))
			}
			checkEdge(t, quote, opts, res, tc.want, tc.failure)
		})
	}
}

var (
	issueDateRE  = regexp.MustCompile(`"issueDate":"[^"]+"`)
	nextUpdateRE = regexp.MustCompile(`"nextUpdate":"[^"]+"`)
	evalNumberRE = regexp.MustCompile(`"tcbEvaluationDataNumber":[0-9]+`)
	tcbStatusRE  = regexp.MustCompile(`"tcbStatus":"[A-Za-z]+"`)
)

// dated re-dates a TCB info or QE identity body.
func dated(issued, next time.Time) func([]byte) []byte {
	return func(b []byte) []byte {
		b = issueDateRE.ReplaceAll(b, []byte(`"issueDate":"`+issued.UTC().Format(time.RFC3339)+`"`))
		return nextUpdateRE.ReplaceAll(b, []byte(`"nextUpdate":"`+next.UTC().Format(time.RFC3339)+`"`))
	}
}

// TestValidUntilEarliestWins: the real SGX quote and collateral re-signed under a test Intel PKI
// (trusted as an explicit Intel root), where every dated input can be given any date. In each case
// one input ends (or, not yet valid, starts) three days after the verification time and all others
// a year later: ValidUntil must be that input's date, and past it the quote must fail for that
// input (or, for one that starts, verify differently).
func TestValidUntilEarliestWins(t *testing.T) {
	at := pinned
	soon, late := at.Add(3*24*time.Hour), at.Add(365*24*time.Hour)
	type dates struct {
		root, pck, tcbSigning, tcbInfo, qeIdentity, pckCRL, rootCRL time.Time
		newerTCBInfo, laterCert                                     time.Time // starts; zero: none
	}
	for _, tc := range []struct {
		name    string
		set     func(d *dates)
		failure string // after ValidUntil; "" for a start (the verdict changes instead)
	}{
		{"PCK certificate notAfter", func(d *dates) { d.pck = soon }, "PCK chain at"},
		{"root and PCK CA notAfter", func(d *dates) { d.root = soon }, "PCK chain at"},
		{"TCB Signing certificate notAfter", func(d *dates) { d.tcbSigning = soon }, "Intel SGX TCB Signing serial"},
		{"TCB info nextUpdate", func(d *dates) { d.tcbInfo = soon }, "TCB info (SGX, FMSPC 00606A000000): expired"},
		{"QE identity nextUpdate", func(d *dates) { d.qeIdentity = soon }, "QE identity (QE): expired"},
		{"PCK CRL nextUpdate", func(d *dates) { d.pckCRL = soon }, `CRL of "Intel SGX PCK Platform CA": expired`},
		{"root CA CRL nextUpdate", func(d *dates) { d.rootCRL = soon }, `CRL of "Intel SGX Root CA": expired`},
		{"newer TCB info not yet issued", func(d *dates) { d.newerTCBInfo = soon }, ""},
		{"certificate not yet valid", func(d *dates) { d.laterCert = soon }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dates{late, late, late, late, late, late, late, time.Time{}, time.Time{}}
			tc.set(&d)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			from := at.Add(-24 * time.Hour)
			pki, err := dcaptest.NewPKI(key, nil, from, d.root)
			if err != nil {
				t.Fatal(err)
			}
			if err := pki.ReissueTCBSigning(from, d.tcbSigning); err != nil {
				t.Fatal(err)
			}
			quote, err := pki.Reforge(sample(t, quoteFile), dcaptest.Options{PCKNotBefore: from, PCKNotAfter: d.pck})
			if err != nil {
				t.Fatal(err)
			}
			tcb, err := pki.Resign(sample(t, tcbInfoFile), dated(at.Add(-time.Hour), d.tcbInfo))
			if err != nil {
				t.Fatal(err)
			}
			qe, err := pki.Resign(sample(t, qeIDFile), dated(at.Add(-time.Hour), d.qeIdentity))
			if err != nil {
				t.Fatal(err)
			}
			rootCRL, _, err := pki.CRLsUntil(at.Add(-time.Hour), d.rootCRL)
			if err != nil {
				t.Fatal(err)
			}
			_, pckCRL, err := pki.CRLsUntil(at.Add(-time.Hour), d.pckCRL)
			if err != nil {
				t.Fatal(err)
			}
			collateral := [][]byte{tcb, qe, pki.IssuerChainPEM(), rootCRL, pckCRL}
			// Every end the verdict rests on, read back from what the verifier is given.
			ends := append(quoteChainNotAfters(t, quote), notAfters(t, collateral...)...)
			var starts []time.Time
			if !d.newerTCBInfo.IsZero() {
				// Intel's next TCB info for this platform, issued in three days: this platform
				// is then OutOfDate, and a fresh verification would say so.
				newer, err := pki.Resign(sample(t, tcbInfoFile), func(b []byte) []byte {
					b = evalNumberRE.ReplaceAll(dated(d.newerTCBInfo, late)(b), []byte(`"tcbEvaluationDataNumber":14`))
					return tcbStatusRE.ReplaceAll(b, []byte(`"tcbStatus":"OutOfDate"`))
				})
				if err != nil {
					t.Fatal(err)
				}
				collateral = append(collateral, newer)
				starts = append(starts, d.newerTCBInfo)
			}
			if !d.laterCert.IsZero() {
				// The TCB Signing certificate's successor, valid from in three days: from then
				// on the verifier may build its chain through it.
				next := *pki
				if err := next.ReissueTCBSigning(d.laterCert, late); err != nil {
					t.Fatal(err)
				}
				collateral = append(collateral, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: next.TCBSigning.Raw}))
				starts = append(starts, d.laterCert)
			}
			want := earliest(append(ends, starts...)...)
			if !want.Equal(soon) {
				t.Fatalf("test setup: the earliest input is at %s, not the case's %s", want, soon)
			}
			opts := attestation.Options{Now: at, IntelRoots: []*x509.Certificate{pki.Root}, Collateral: collateral}
			res, err := (Verifier{}).Verify(context.Background(), quote, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.ValidUntil.Equal(want) || !res.Collateral.RevocationChecked || res.TCBStatus != "SWHardeningNeeded" {
				t.Fatalf("ValidUntil %s (want %s), revocation checked %v, status %q", res.ValidUntil.Format(time.RFC3339),
					want.Format(time.RFC3339), res.Collateral.RevocationChecked, res.TCBStatus)
			}
			switch {
			case tc.failure != "":
				checkEdge(t, quote, opts, res, want, tc.failure)
			case !d.newerTCBInfo.IsZero():
				// At ValidUntil the newer TCB info is issued: the verdict is another one.
				opts.Now = want
				later, err := (Verifier{}).Verify(context.Background(), quote, opts)
				if err != nil {
					t.Fatal(err)
				}
				if later.TCBStatus != "OutOfDate" {
					t.Fatalf("with the newer TCB info issued: status %q, want OutOfDate", later.TCBStatus)
				}
				if res.TCBStatus == later.TCBStatus {
					t.Fatal("the verdict did not change")
				}
			}
		})
	}
}
