package snp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// Real evidence of every current AMD product line (testdata/attestation/README.md names each
// file's source, licence and pinned time). The expected values were established independently of
// this package: openssl verify at the pinned time for each chain, Python's cryptography package for
// the report signature, and a separate script for the hwID/CHIP_ID and TCB comparisons and the
// field values, each decoded with the product line's layout.
var (
	msTime     = time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC)
	vlekTime   = time.Date(2024, 12, 11, 0, 0, 0, 0, time.UTC)
	virteeTime = time.Date(2024, 11, 7, 0, 0, 0, 0, time.UTC)
)

func readSNPSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata.Attestation(t), "sev-snp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// derOf returns the DER of a PEM or DER certificate file.
func derOf(t testing.TB, b []byte) []byte {
	t.Helper()
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes
	}
	return b
}

func TestRealProducts(t *testing.T) {
	const msMeasurement = "5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1"
	tests := []struct {
		name, report, cert string
		at                 time.Time
		extended           bool // send the certificate in the report's table instead of collateral
		measurement        string
		details            map[string]string
	}{
		{name: "Milan v3", report: "ms_report_v3_milan.bin", cert: "ms_vcek_milan.pem", at: msTime, measurement: msMeasurement,
			details: map[string]string{"product": "Milan-B0", "product_line": "Milan", "report_version": "3", "signing_key": "VCEK",
				"cpuid_family": "0x19", "cpuid_model": "0x01", "cpuid_stepping": "1", "vmpl": "0", "policy_debug": "false",
				"reported_tcb": "0xdb18000000000004", "reported_tcb_bl_spl": "4", "reported_tcb_tee_spl": "0",
				"reported_tcb_snp_spl": "24", "reported_tcb_ucode_spl": "219", "current_tcb_ucode_spl": "219",
				"firmware_current": "1.55 build 29", "chip_id_masked": "false", "platform_alias_check_complete": "true"}},
		{name: "Genoa v3, 64-byte hwID", report: "ms_report_v3_genoa.bin", cert: "ms_vcek_genoa.pem", at: msTime, measurement: msMeasurement,
			details: map[string]string{"product": "Genoa", "product_line": "Genoa", "report_version": "3",
				"cpuid_family": "0x19", "cpuid_model": "0x11", "cpuid_stepping": "1",
				"reported_tcb": "0x541700000000000a", "reported_tcb_bl_spl": "10", "reported_tcb_tee_spl": "0",
				"reported_tcb_snp_spl": "23", "reported_tcb_ucode_spl": "84", "firmware_current": "1.55 build 40",
				"chip_id": "b1e24a27bbc3a4d58090d8b89851dce3b8031544be249b9ac17132bb222b027622347ee4d0fe4f689efdfc47a68cefc686cbb448d01436506ee1e28010cab7c0"}},
		{name: "Turin v5, 8-byte hwID", report: "ms_report_v5_turin.bin", cert: "ms_vcek_turin.pem", at: msTime,
			measurement: "6d6c354511d6f7c6d7504668903dc5bdc066a048b651840d8d03fb85299ebfa142fccf1d1b0baca496841bdf243619d4",
			details: map[string]string{"product": "Turin", "product_line": "Turin", "report_version": "5",
				"cpuid_family": "0x1a", "cpuid_model": "0x02", "cpuid_stepping": "1",
				"reported_tcb": "0x5100000004010101", "reported_tcb_fmc_spl": "1", "reported_tcb_bl_spl": "1",
				"reported_tcb_tee_spl": "1", "reported_tcb_snp_spl": "4", "reported_tcb_ucode_spl": "81", "current_tcb_fmc_spl": "1",
				"launch_mit_vector": "0x000000000000003f", "current_mit_vector": "0x000000000000003f",
				"platform_info": "0x0000000000000065", "firmware_current": "1.55 build 65",
				"chip_id": "59790fb1c39f35c1" + strings.Repeat("00", 56)}},
		{name: "Turin v5, extended report", report: "ms_report_v5_turin.bin", cert: "ms_vcek_turin.pem", at: msTime, extended: true,
			details: map[string]string{"product_line": "Turin", "collateral_source": "peer"}},
		{name: "Milan v3, VLEK", report: "coco_report_v3_milan_vlek.bin", cert: "coco_vlek_milan.der", at: vlekTime,
			measurement: "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
			details: map[string]string{"product": "Milan", "product_line": "Milan", "signing_key": "VLEK",
				"csp_id": "CN=cc-us-east-2.amazonaws.com", "vmpl": "1", "report_version": "3", "chip_id_masked": "true",
				"reported_tcb": "0xd918000000000004", "reported_tcb_ucode_spl": "217", "current_tcb_ucode_spl": "220"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			report, cert := readSNPSample(t, tc.report), readSNPSample(t, tc.cert)
			opts := attestation.Options{Now: tc.at, Collateral: [][]byte{cert}}
			if tc.extended {
				report = append(bytes.Clone(report), MarshalCertTable([]CertEntry{{GUID: guidVCEK, Data: derOf(t, cert)}})...)
				opts.Collateral = nil
			}
			res, err := attestation.Verify(context.Background(), report, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Verified || res.TEE != attestation.SNP || res.Debug || res.TCBStatus != "" {
				t.Errorf("verified=%v tee=%v debug=%v tcb=%q", res.Verified, res.TEE, res.Debug, res.TCBStatus)
			}
			if tc.measurement != "" && res.Measurements["measurement"] != tc.measurement {
				t.Errorf("measurement %s, want %s", res.Measurements["measurement"], tc.measurement)
			}
			for k, want := range tc.details {
				if got := res.Details[k]; got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestRealProductsRejected(t *testing.T) {
	tests := []struct {
		name, report string
		mutate       func([]byte) []byte
		collateral   []string
		at           time.Time
		verifier     *Verifier
		wantErr      string
	}{
		// The certificates below all chain to AMD: each case fails on the binding checks alone.
		{name: "Turin report, Genoa VCEK", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_genoa.pem"}, at: msTime,
			wantErr: "report CPUID is Turin (family 0x1a model 0x02 stepping 1) but the certificate is for Genoa"},
		{name: "Genoa report, Milan VCEK", report: "ms_report_v3_genoa.bin", collateral: []string{"ms_vcek_milan.pem"}, at: msTime,
			wantErr: "report CPUID is Genoa"},
		{name: "Turin report, another Turin chip's VCEK", report: "ms_report_v5_turin.bin", collateral: []string{"virtee_vcek_turin.der"}, at: msTime,
			wantErr: "VCEK hwID 1e550a8ee5cf9f4d is not the report's CHIP_ID 59790fb1c39f35c1"},
		{name: "Turin report, VLEK only", report: "ms_report_v5_turin.bin", collateral: []string{"coco_vlek_milan.der"}, at: msTime,
			wantErr: "no VCEK certificate"},
		{name: "VLEK report after the VLEK expired", report: "coco_report_v3_milan_vlek.bin", collateral: []string{"coco_vlek_milan.der"},
			at: time.Date(2025, 12, 11, 0, 0, 0, 0, time.UTC), wantErr: "expired"},
		{name: "Turin report, only Milan and Genoa trusted", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_turin.pem"}, at: msTime,
			verifier: &Verifier{ProductLines: []string{"Milan", "Genoa"}}, wantErr: "certificate chain to ARK-Turin"},
		{name: "Turin report relabelled v3", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_turin.pem"}, at: msTime,
			mutate: func(b []byte) []byte { b[0] = 3; return b }, wantErr: "mitigation vectors exist from version 5"},
		{name: "Turin report with CHIP_ID tail set", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_turin.pem"}, at: msTime,
			mutate: func(b []byte) []byte { b[0x1a0+8] = 1; return b }, wantErr: "followed by 56 zero bytes"},
		{name: "Turin report with CHIP_ID zeroed", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_turin.pem"}, at: msTime,
			mutate: func(b []byte) []byte { clear(b[0x1a0:0x1e0]); return b }, wantErr: "signature"},
		{name: "Turin report, MASK_CHIP_KEY", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_turin.pem"}, at: msTime,
			mutate: func(b []byte) []byte { b[0x48] |= 2; return b }, wantErr: "MASK_CHIP_KEY"},
		{name: "Turin report, CPUID of Genoa", report: "ms_report_v5_turin.bin", collateral: []string{"ms_vcek_turin.pem"}, at: msTime,
			mutate: func(b []byte) []byte { b[0x188], b[0x189] = 0x19, 0x11; return b }, wantErr: "report CPUID is Genoa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			report := bytes.Clone(readSNPSample(t, tc.report))
			if tc.mutate != nil {
				report = tc.mutate(report)
			}
			var col [][]byte
			for _, c := range tc.collateral {
				col = append(col, readSNPSample(t, c))
			}
			v := tc.verifier
			if v == nil {
				v = &Verifier{}
			}
			res, err := v.Verify(context.Background(), report, attestation.Options{Now: tc.at, Collateral: col})
			if err == nil {
				t.Fatalf("verified: %v", res.Details)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestRealProductsByteFlips flips bytes the product-specific checks read (CPUID, CHIP_ID, the TCB
// fields, KEY_INFO, the mitigation vectors) and a few others in every real report: each flip
// must fail.
func TestRealProductsByteFlips(t *testing.T) {
	offsets := []int{0x00, 0x08, 0x30, 0x38, 0x3f, 0x48, 0x50, 0x90, 0x180, 0x181, 0x183, 0x187, 0x188, 0x189, 0x18a,
		0x1a0, 0x1a7, 0x1a8, 0x1df, 0x1e0, 0x1f0, 0x1f8, 0x200, 0x29f, 0x2a0, 0x2e8, 0x32f}
	for _, s := range []struct {
		report, cert string
		at           time.Time
	}{
		{"ms_report_v3_milan.bin", "ms_vcek_milan.pem", msTime},
		{"ms_report_v3_genoa.bin", "ms_vcek_genoa.pem", msTime},
		{"ms_report_v5_turin.bin", "ms_vcek_turin.pem", msTime},
		{"coco_report_v3_milan_vlek.bin", "coco_vlek_milan.der", vlekTime},
	} {
		report := readSNPSample(t, s.report)
		opts := attestation.Options{Now: s.at, Collateral: [][]byte{readSNPSample(t, s.cert)}}
		if _, err := (&Verifier{}).Verify(context.Background(), report, opts); err != nil {
			t.Fatalf("%s unmodified: %v", s.report, err)
		}
		for _, off := range offsets {
			for _, mask := range []byte{0x01, 0x80} {
				b := bytes.Clone(report)
				b[off] ^= mask
				if _, err := (&Verifier{}).Verify(context.Background(), b, opts); err == nil {
					t.Errorf("%s: byte 0x%03x ^ 0x%02x verified", s.report, off, mask)
				}
			}
		}
	}
}

func mustCert(t testing.TB, b []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(derOf(t, b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
