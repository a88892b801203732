package snp

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// Result.ValidUntil must be the earliest time at which the same report with the same inputs
// stops verifying (or verifies differently): enclavetls's verdict cache reuses a verdict only
// before it. The expected value is computed from the inputs themselves; at ValidUntil the report
// still verifies, one second later it fails for the input that ends first.

// checkSNPEdge verifies report with opts at want and one second later.
func checkSNPEdge(t *testing.T, report []byte, opts attestation.Options, want time.Time, failure string) {
	t.Helper()
	opts.Now = want
	if _, err := (&Verifier{}).Verify(context.Background(), report, opts); err != nil {
		t.Fatalf("at ValidUntil %s: %v", want.Format(time.RFC3339), err)
	}
	opts.Now = want.Add(time.Second)
	if _, err := (&Verifier{}).Verify(context.Background(), report, opts); err == nil || !strings.Contains(err.Error(), failure) {
		t.Fatalf("one second after ValidUntil: %v, want %q", err, failure)
	}
}

func earliestOf(certs ...*x509.Certificate) time.Time {
	var m time.Time
	for _, c := range certs {
		if m.IsZero() || c.NotAfter.Before(m) {
			m = c.NotAfter
		}
	}
	return m
}

// TestValidUntilRecordedSNP: the recorded reports with their VCEK or VLEK; the chain's other
// certificates are AMD's published ASK/ASVK and ARK (testdata roots, the same as built in). For
// the AWS VLEK (valid to 2025-12-10) the VLEK itself ends first.
func TestValidUntilRecordedSNP(t *testing.T) {
	for _, tc := range []struct {
		name, report, cert, chain string
		at                        time.Time
	}{
		{"Milan v2 (go-sev-guest)", "gosev_report_v2_milan.bin", "gosev_vcek_milan.der", "amd_ask_ark_milan.pem", sampleTime},
		{"Milan v3", "ms_report_v3_milan.bin", "ms_vcek_milan.pem", "amd_ask_ark_milan.pem", msTime},
		{"Genoa v3", "ms_report_v3_genoa.bin", "ms_vcek_genoa.pem", "amd_ask_ark_genoa.pem", msTime},
		{"Turin v5", "ms_report_v5_turin.bin", "ms_vcek_turin.pem", "amd_ask_ark_turin_vcek.pem", msTime},
		{"Milan v3, VLEK", "coco_report_v3_milan_vlek.bin", "coco_vlek_milan.der", "amd_ask_ark_milan_vlek.pem", vlekTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			report, certFile := readSNPSample(t, tc.report), readSNPSample(t, tc.cert)
			leaf := mustCert(t, derOf(t, certFile))
			chain, err := attestation.ParsePEMCertificates(testdata.ReadAttestation(t, "roots/"+tc.chain))
			if err != nil {
				t.Fatal(err)
			}
			want := earliestOf(append(chain, leaf)...)
			opts := attestation.Options{Now: tc.at, Collateral: [][]byte{certFile}}
			res, err := (&Verifier{}).Verify(context.Background(), report, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.ValidUntil.Equal(want) {
				t.Fatalf("ValidUntil %s, want %s", res.ValidUntil.Format(time.RFC3339), want.Format(time.RFC3339))
			}
			checkSNPEdge(t, report, opts, want, "certificate chain to ARK-")
		})
	}
}

// TestValidUntilEarliestWinsSNP: a synthetic Milan hierarchy (trusted through Options.AMDRoots)
// where each dated input in turn is the earliest: the VCEK's notAfter, an applied CRL's
// nextUpdate, or a second candidate VCEK not yet valid (from then on it is tried too).
func TestValidUntilEarliestWinsSNP(t *testing.T) {
	milan := newTestChain(t, "Milan", false)
	chip := bytes.Repeat([]byte{0xc1}, 64)
	spl := map[int]int{1: 3, 2: 0, 3: 8, 8: 115}
	const tcb = uint64(115)<<56 | uint64(8)<<48 | 3
	soon, late := sampleTime.Add(72*time.Hour), sampleTime.Add(365*24*time.Hour)
	from := sampleTime.Add(-24 * time.Hour)
	for _, tc := range []struct {
		name                      string
		vcekUntil, crlUntil, next time.Time // next: a later VCEK's notBefore (zero: none)
		failure                   string    // "" for a start: the report still verifies
	}{
		{"VCEK notAfter", soon, late, time.Time{}, "certificate chain to ARK-Milan"},
		{"CRL nextUpdate", late, soon, time.Time{}, "ARK-Milan CRL is valid"},
		{"candidate VCEK not yet valid", late, late, soon, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vcek, key := milan.issueEK(t, ekSpec{productName: "Milan-B1", hwID: chip, spl: spl, notBefore: from, notAfter: tc.vcekUntil})
			report := buildReport(t, reportSpec{version: 2, chipID: chip, reportedTCB: tcb, currentTCB: tcb}, key)
			crl := issueCRL(t, milan.ark, milan.arkKey, from, tc.crlUntil)
			collateral := [][]byte{milan.ica.Raw, vcek.Raw, crl}
			if !tc.next.IsZero() {
				// The chip's next VCEK (another key: the same report does not verify with it).
				later, _ := milan.issueEK(t, ekSpec{productName: "Milan-B1", hwID: chip, spl: spl, notBefore: tc.next, notAfter: late})
				collateral = append(collateral, later.Raw)
			}
			opts := attestation.Options{Now: sampleTime, AMDRoots: []*x509.Certificate{milan.ark}, Collateral: collateral}
			res, err := (&Verifier{}).Verify(context.Background(), report, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Details["crl_checked"] != "true" || !res.ValidUntil.Equal(soon) {
				t.Fatalf("crl_checked %s, ValidUntil %s, want %s", res.Details["crl_checked"], res.ValidUntil.Format(time.RFC3339), soon.Format(time.RFC3339))
			}
			if tc.failure != "" {
				checkSNPEdge(t, report, opts, soon, tc.failure)
			}
		})
	}
}
