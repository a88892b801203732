package snp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/memo"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

var sampleTime = time.Date(2022, 9, 24, 1, 0, 0, 0, time.UTC)

const sampleMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"

type sample struct {
	report, vcekDER, milanChain, genoaChain []byte
}

func loadSample(t testing.TB) sample {
	t.Helper()
	dir := testdata.Attestation(t)
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return sample{
		report:     read("sev-snp/gosev_report_v2_milan.bin"),
		vcekDER:    read("sev-snp/gosev_vcek_milan.der"),
		milanChain: read("roots/amd_ask_ark_milan.pem"),
		genoaChain: read("roots/amd_ask_ark_genoa.pem"),
	}
}

func TestBuiltinRootsPinned(t *testing.T) {
	roots, err := builtinRoots()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range ProductLines {
		pr := roots[line]
		if pr == nil || pr.ark == nil || pr.ask == nil || pr.asvk == nil {
			t.Fatalf("%s: incomplete built-in roots", line)
		}
		// A different ARK under the same name must fail the pin.
		other := roots[ProductLines[(indexOf(line)+1)%len(ProductLines)]].ark
		if err := checkARK(other, line); err == nil {
			t.Errorf("ARK %s accepted as ARK-%s", other.Subject.CommonName, line)
		}
	}
}

func indexOf(line string) int {
	for i, l := range ProductLines {
		if l == line {
			return i
		}
	}
	return -1
}

func TestVerifyRealSample(t *testing.T) {
	s := loadSample(t)
	vcekPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.vcekDER})
	for name, collateral := range map[string][][]byte{
		"DER VCEK":              {s.vcekDER},
		"PEM VCEK":              {vcekPEM},
		"PEM VCEK + ASK/ARK":    {[]byte("unrelated collateral"), s.milanChain, vcekPEM},
		"extended report table": nil,
	} {
		t.Run(name, func(t *testing.T) {
			evidence := s.report
			if collateral == nil {
				evidence = append(bytes.Clone(s.report), MarshalCertTable([]CertEntry{{GUID: guidVCEK, Data: s.vcekDER}})...)
			}
			res, err := attestation.Verify(context.Background(), evidence, attestation.Options{Now: sampleTime, Collateral: collateral})
			if err != nil {
				t.Fatal(err)
			}
			wantRD := make([]byte, 64)
			copy(wantRD, []byte{1, 2, 3, 4, 5})
			checks := []struct {
				what      string
				got, want any
			}{
				{"tee", res.TEE, attestation.SNP},
				{"verified", res.Verified, true},
				{"debug", res.Debug, true},
				{"tcb status", res.TCBStatus, ""},
				{"svn", *res.SVN, uint64(0)},
				{"report data", hex.EncodeToString(res.ReportData), hex.EncodeToString(wantRD)},
				{"measurement", res.Measurements["measurement"], sampleMeasurement},
				{"host_data", res.Measurements["host_data"], strings.Repeat("0", 64)},
				{"report_id_ma", res.Measurements["report_id_ma"], strings.Repeat("f", 64)},
				{"signer", res.Signer, ""},
				{"product", res.Details["product"], "Milan-B0"},
				{"product_line", res.Details["product_line"], "Milan"},
				{"signing key", res.Details["signing_key"], "VCEK"},
				{"policy_debug", res.Details["policy_debug"], "true"},
				{"policy_smt", res.Details["policy_smt"], "true"},
				{"policy_migrate_ma", res.Details["policy_migrate_ma"], "false"},
				{"vmpl", res.Details["vmpl"], "0"},
				{"firmware", res.Details["firmware_current"], "1.49 build 3"},
				{"reported tcb", res.Details["reported_tcb"], "0x4405000000000002"},
				{"bl", res.Details["reported_tcb_bl_spl"], "2"},
				{"tee spl", res.Details["reported_tcb_tee_spl"], "0"},
				{"snp", res.Details["reported_tcb_snp_spl"], "5"},
				{"ucode", res.Details["reported_tcb_ucode_spl"], "68"},
				{"chip id prefix", res.Details["chip_id"][:8], "3ac3fe21"},
				{"crl", res.Details["crl_checked"], "false"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestVerifyRealSampleRejected(t *testing.T) {
	s := loadSample(t)
	otherARK, err := attestation.ParsePEMCertificates(s.genoaChain)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		verifier *Verifier
		evidence []byte
		opts     attestation.Options
		wantErr  string
	}{
		{name: "no VCEK", opts: attestation.Options{Now: sampleTime}, wantErr: "no VCEK certificate"},
		// An ASK is an intermediate: given as a root it is refused, not trusted as an anchor.
		{name: "ASK given as an AMD root", opts: attestation.Options{Now: sampleTime, AMDRoots: otherARK[:1], Collateral: [][]byte{s.vcekDER}},
			wantErr: `AMD root "SEV-Genoa" is not an ARK`},
		{name: "only Genoa trusted", verifier: &Verifier{ProductLines: []string{"Genoa"}},
			opts: attestation.Options{Now: sampleTime, Collateral: [][]byte{s.vcekDER}}, wantErr: "ARK-Milan"},
		{name: "only Genoa trusted, Genoa chain and Genoa root offered", verifier: &Verifier{ProductLines: []string{"Genoa"}},
			opts:    attestation.Options{Now: sampleTime, AMDRoots: otherARK[1:], Collateral: [][]byte{s.genoaChain, s.vcekDER}},
			wantErr: "ARK-Milan"},
		{name: "only Genoa trusted, Milan chain in evidence table", verifier: &Verifier{ProductLines: []string{"Genoa"}},
			evidence: append(bytes.Clone(s.report), MarshalCertTable([]CertEntry{
				{GUID: guidVCEK, Data: s.vcekDER}, {GUID: guidASK, Data: mustPEM(t, s.milanChain)[0].Raw},
				{GUID: guidARK, Data: mustPEM(t, s.milanChain)[1].Raw}})...),
			opts: attestation.Options{Now: sampleTime}, wantErr: "ARK-Milan"},
		{name: "VCEK expired", opts: attestation.Options{Now: time.Date(2029, 9, 25, 0, 0, 0, 0, time.UTC), Collateral: [][]byte{s.vcekDER}},
			wantErr: "expired"},
		{name: "VCEK not yet valid", opts: attestation.Options{Now: time.Date(2022, 9, 24, 0, 55, 0, 0, time.UTC), Collateral: [][]byte{s.vcekDER}},
			wantErr: "not yet valid"},
		{name: "truncated", evidence: s.report[:ReportSize-1], opts: attestation.Options{Now: sampleTime, Collateral: [][]byte{s.vcekDER}},
			wantErr: "need at least"},
		{name: "garbage after report", evidence: append(bytes.Clone(s.report), 1, 2, 3), opts: attestation.Options{Now: sampleTime, Collateral: [][]byte{s.vcekDER}},
			wantErr: "certificate table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.verifier
			if v == nil {
				v = &Verifier{}
			}
			ev := tc.evidence
			if ev == nil {
				ev = s.report
			}
			res, err := v.Verify(context.Background(), ev, tc.opts)
			if err == nil {
				t.Fatalf("verified: %+v", res)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func mustPEM(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	c, err := attestation.ParsePEMCertificates(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestByteFlips flips each byte of the signed region and of the signature: every change must fail.
func TestByteFlips(t *testing.T) {
	s := loadSample(t)
	v := &Verifier{}
	opts := attestation.Options{Now: sampleTime, Collateral: [][]byte{s.vcekDER}}
	if _, err := v.Verify(context.Background(), s.report, opts); err != nil {
		t.Fatalf("unmodified sample: %v", err)
	}
	for i := 0; i < ReportSize; i++ {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(s.report)
			b[i] ^= mask
			if res, err := v.Verify(context.Background(), b, opts); err == nil {
				t.Errorf("byte 0x%03x ^ 0x%02x verified: measurement %s", i, mask, res.Measurements["measurement"])
			}
		}
	}
}

func TestMatch(t *testing.T) {
	s := loadSample(t)
	v := &Verifier{}
	short := s.report[:ReportSize-1]
	v9 := bytes.Clone(s.report)
	v9[0] = 9
	algo2 := bytes.Clone(s.report)
	algo2[0x34] = 2
	for name, tc := range map[string]struct {
		in   []byte
		want bool
	}{
		"sample": {s.report, true}, "extended": {append(bytes.Clone(s.report), make([]byte, 24)...), true},
		"short": {short, false}, "version 9": {v9, false}, "algo 2": {algo2, false}, "empty": {nil, false},
	} {
		if got := v.Match(tc.in); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", name, got, tc.want)
		}
	}
}

// TestSyntheticChecks signs reports with a synthetic hierarchy so that each binding check
// (chip, TCB, product, key kind, roots) is shown to fail on its own while everything else holds.
func TestSyntheticChecks(t *testing.T) {
	milan := newTestChain(t, "Milan", false)
	milanVLEK := newTestChain(t, "Milan", true)
	turin := newTestChain(t, "Turin", false)
	chip := bytes.Repeat([]byte{0xc1}, 64)
	otherChip := bytes.Repeat([]byte{0xc2}, 64)
	milanSPL := map[int]int{1: 3, 2: 0, 4: 0, 5: 0, 6: 0, 7: 0, 3: 8, 8: 115}
	const milanTCB = uint64(115)<<56 | uint64(8)<<48 | 3
	vcek, vcekKey := milan.issueEK(t, ekSpec{productName: "Milan-B1", hwID: chip, spl: milanSPL})
	otherVCEK, otherKey := milan.issueEK(t, ekSpec{productName: "Milan-B1", hwID: otherChip, spl: milanSPL})
	vlek, vlekKey := milanVLEK.issueEK(t, ekSpec{cn: "SEV-VLEK", productName: "Milan", cspID: "cloud", spl: milanSPL})
	askVLEK, askVLEKKey := milan.issueEK(t, ekSpec{cn: "SEV-VLEK", productName: "Milan", cspID: "cloud", spl: milanSPL})
	turinSPL := map[int]int{9: 1, 1: 2, 2: 3, 3: 4, 8: 90}
	const turinTCB = uint64(90)<<56 | 4<<24 | 3<<16 | 2<<8 | 1
	// A Turin CHIP_ID is 8 bytes followed by zeros; its VCEK's hwID is those 8 bytes.
	turinChip := append(bytes.Repeat([]byte{0xd1}, 8), make([]byte, 56)...)
	turinHW := turinChip[:8]
	turinVCEK, turinKey := turin.issueEK(t, ekSpec{productName: "Turin", hwID: turinHW, spl: turinSPL})
	noFMC, noFMCKey := turin.issueEK(t, ekSpec{productName: "Turin", hwID: turinHW, spl: map[int]int{1: 2, 2: 3, 3: 4, 8: 90}})
	turinLongHW, turinLongHWKey := turin.issueEK(t, ekSpec{productName: "Turin", hwID: chip, spl: turinSPL})
	milanShortHW, milanShortHWKey := milan.issueEK(t, ekSpec{productName: "Milan-B0", hwID: turinHW, spl: milanSPL})
	unknownSPL, unknownSPLKey := milan.issueEK(t, ekSpec{productName: "Milan-B1", hwID: chip, spl: map[int]int{1: 3, 2: 0, 3: 8, 8: 115, 10: 1}})
	unknownProduct, unknownProductKey := milan.issueEK(t, ekSpec{productName: "Venice", hwID: chip, spl: milanSPL})
	genoa := newTestChain(t, "Genoa", false)
	genoaVCEK, genoaKey := genoa.issueEK(t, ekSpec{productName: "Genoa", hwID: chip, spl: milanSPL})
	genoaVLEKChain := newTestChain(t, "Genoa", true)
	genoaVLEK, genoaVLEKKey := genoaVLEKChain.issueEK(t, ekSpec{cn: "SEV-VLEK", productName: "Genoa", cspID: "cloud", spl: milanSPL})
	turinVLEKChain := newTestChain(t, "Turin", true)
	turinVLEK, turinVLEKKey := turinVLEKChain.issueEK(t, ekSpec{cn: "SEV-VLEK", productName: "Turin", cspID: "cloud", spl: turinSPL})
	turinV5 := reportSpec{version: 5, fms: [3]byte{0x1a, 0x02, 0x01}, chipID: turinChip, reportedTCB: turinTCB, currentTCB: turinTCB,
		launchMit: 0x3f, currentMit: 0x3f}
	withTurin := func(f func(*reportSpec)) reportSpec { s := turinV5; f(&s); return s }
	genoaV3 := reportSpec{version: 3, fms: [3]byte{0x19, 0x11, 0x01}, chipID: chip, reportedTCB: milanTCB, currentTCB: milanTCB}

	base := reportSpec{version: 2, chipID: chip, reportedTCB: milanTCB, currentTCB: milanTCB, measurement: 0xab}
	with := func(f func(*reportSpec)) reportSpec { s := base; f(&s); return s }
	roots := []*x509.Certificate{milan.ark, milanVLEK.ark, turin.ark, genoa.ark, genoaVLEKChain.ark, turinVLEKChain.ark}
	col := func(certs ...*x509.Certificate) [][]byte {
		var out [][]byte
		for _, c := range certs {
			out = append(out, c.Raw)
		}
		return out
	}

	tests := []struct {
		name       string
		spec       reportSpec
		key        *ecdsa.PrivateKey // signs the report
		collateral [][]byte
		roots      []*x509.Certificate
		table      []CertEntry
		wantErr    string            // "" means it must verify
		details    map[string]string // expected Result.Details entries when it verifies
	}{
		{name: "baseline", spec: base, key: vcekKey, collateral: col(milan.ica, vcek)},
		{name: "VCEK and ASK from the report's table", spec: base, key: vcekKey,
			table: []CertEntry{{GUID: guidVCEK, Data: vcek.Raw}, {GUID: guidASK, Data: milan.ica.Raw}}},
		{name: "root only in the report's table is not trusted", spec: base, key: vcekKey, roots: []*x509.Certificate{},
			table:   []CertEntry{{GUID: guidVCEK, Data: vcek.Raw}, {GUID: guidASK, Data: milan.ica.Raw}, {GUID: guidARK, Data: milan.ark.Raw}},
			wantErr: "certificate chain to ARK-Milan"},
		{name: "root only in collateral is not trusted", spec: base, key: vcekKey, roots: []*x509.Certificate{},
			collateral: col(milan.ark, milan.ica, vcek), wantErr: "certificate chain to ARK-Milan"},
		{name: "ASK missing", spec: base, key: vcekKey, collateral: col(vcek), wantErr: "certificate chain"},
		{name: "VCEK of another chip", spec: base, key: otherKey, collateral: col(milan.ica, otherVCEK), wantErr: "is not the report's CHIP_ID"},
		{name: "right VCEK among several", spec: base, key: vcekKey, collateral: col(milan.ica, otherVCEK, vcek)},
		{name: "signed by another chip's key", spec: base, key: otherKey, collateral: col(milan.ica, vcek), wantErr: "signature"},
		{name: "REPORTED_TCB above certificate", spec: with(func(s *reportSpec) { s.reportedTCB += 1 << 48; s.currentTCB += 1 << 48 }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "REPORTED_TCB"},
		{name: "REPORTED_TCB below certificate", spec: with(func(s *reportSpec) { s.reportedTCB--; s.currentTCB-- }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "REPORTED_TCB"},
		{name: "REPORTED_TCB above CURRENT_TCB", spec: with(func(s *reportSpec) { s.currentTCB-- }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "above CURRENT_TCB"},
		// MASK_CHIP_ID (host configuration) zeroes CHIP_ID; nothing in KEY_INFO says so.
		{name: "CHIP_ID masked", spec: with(func(s *reportSpec) { s.chipID = nil }),
			key: vcekKey, collateral: col(milan.ica, vcek), details: map[string]string{"chip_id_masked": "true"}},
		// KEY_INFO.MASK_CHIP_KEY means the firmware wrote zeros instead of signing: a report that
		// says so is not evidence, whatever its signature bytes hold.
		{name: "MASK_CHIP_KEY set", spec: with(func(s *reportSpec) { s.keyInfo = 2; s.chipID = nil }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "MASK_CHIP_KEY"},
		{name: "MASK_CHIP_KEY set, chip id present", spec: with(func(s *reportSpec) { s.keyInfo = 2 }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "MASK_CHIP_KEY"},
		{name: "v3 report, Milan CPUID", spec: with(func(s *reportSpec) { s.version = 3; s.fms = [3]byte{0x19, 0x01, 0x01} }),
			key: vcekKey, collateral: col(milan.ica, vcek)},
		{name: "v3 report, Genoa CPUID, Milan VCEK", spec: with(func(s *reportSpec) { s.version = 3; s.fms = [3]byte{0x19, 0x11, 0x01} }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "CPUID is Genoa"},
		{name: "root of another product line", spec: base, key: vcekKey, roots: []*x509.Certificate{turin.ark},
			collateral: col(milan.ica, vcek), wantErr: "certificate chain to ARK-Milan"},
		{name: "VLEK", spec: with(func(s *reportSpec) { s.keyInfo = 1 << 2; s.chipID = nil }),
			key: vlekKey, collateral: col(milanVLEK.ica, vlek)},
		{name: "VLEK report, only a VCEK", spec: with(func(s *reportSpec) { s.keyInfo = 1 << 2 }),
			key: vcekKey, collateral: col(milan.ica, vcek), wantErr: "no VLEK certificate"},
		{name: "VLEK issued by the ASK, not the ASVK", spec: with(func(s *reportSpec) { s.keyInfo = 1 << 2; s.chipID = nil }),
			key: askVLEKKey, collateral: col(milan.ica, askVLEK), wantErr: "no chain SEV-VLEK -> SEV-VLEK-Milan"},
		{name: "Turin v5 report, Turin layout", spec: turinV5, key: turinKey, collateral: col(turin.ica, turinVCEK),
			details: map[string]string{"reported_tcb_fmc_spl": "1", "reported_tcb_bl_spl": "2", "reported_tcb_tee_spl": "3",
				"reported_tcb_snp_spl": "4", "reported_tcb_ucode_spl": "90", "launch_mit_vector": "0x000000000000003f",
				"cpuid_family": "0x1a", "cpuid_model": "0x02", "cpuid_stepping": "1", "chip_id_masked": "false"}},
		{name: "Turin v3 report", spec: withTurin(func(s *reportSpec) { s.version = 3; s.launchMit, s.currentMit = 0, 0 }),
			key: turinKey, collateral: col(turin.ica, turinVCEK)},
		// A v2 report has no CPUID: the certificate alone names the line (and so the TCB layout).
		{name: "Turin v2 report", spec: withTurin(func(s *reportSpec) { s.version = 2; s.fms = [3]byte{}; s.launchMit, s.currentMit = 0, 0 }),
			key: turinKey, collateral: col(turin.ica, turinVCEK), details: map[string]string{"reported_tcb_fmc_spl": "1"}},
		{name: "Turin CHIP_ID masked", spec: withTurin(func(s *reportSpec) { s.chipID = nil }), key: turinKey, collateral: col(turin.ica, turinVCEK),
			details: map[string]string{"chip_id_masked": "true"}},
		{name: "Turin TCB written in the Milan layout", spec: withTurin(func(s *reportSpec) {
			s.reportedTCB = uint64(90)<<56 | 4<<48 | 3<<8 | 2
			s.currentTCB = s.reportedTCB
		}), key: turinKey, collateral: col(turin.ica, turinVCEK), wantErr: "REPORTED_TCB"},
		{name: "Turin REPORTED_TCB fmc above CURRENT_TCB", spec: withTurin(func(s *reportSpec) { s.currentTCB = turinTCB - 1 }),
			key: turinKey, collateral: col(turin.ica, turinVCEK), wantErr: "REPORTED_TCB fmc level 1 is above CURRENT_TCB's 0"},
		{name: "Turin VCEK without fmcSPL", spec: turinV5, key: noFMCKey, collateral: col(turin.ica, noFMC), wantErr: "fmcSPL"},
		{name: "Turin CHIP_ID with non-zero tail", spec: withTurin(func(s *reportSpec) { s.chipID = bytes.Clone(turinChip); s.chipID[63] = 1 }),
			key: turinKey, collateral: col(turin.ica, turinVCEK), wantErr: "followed by 56 zero bytes"},
		{name: "Turin CHIP_ID of another chip", spec: withTurin(func(s *reportSpec) { s.chipID = bytes.Clone(turinChip); s.chipID[0] ^= 1 }),
			key: turinKey, collateral: col(turin.ica, turinVCEK), wantErr: "is not the report's CHIP_ID"},
		{name: "Turin VCEK with a 64-byte hwID", spec: withTurin(func(s *reportSpec) { s.chipID = chip }),
			key: turinLongHWKey, collateral: col(turin.ica, turinLongHW), wantErr: "Turin VCEK hwID has 64 bytes, want 8"},
		{name: "Milan VCEK with an 8-byte hwID", spec: with(func(s *reportSpec) { s.chipID = turinChip }),
			key: milanShortHWKey, collateral: col(milan.ica, milanShortHW), wantErr: "Milan VCEK hwID has 8 bytes, want 64"},
		{name: "Turin CPUID, Genoa VCEK", spec: with(func(s *reportSpec) { s.version = 3; s.fms = [3]byte{0x1a, 0x02, 0x01} }),
			key: genoaKey, collateral: col(genoa.ica, genoaVCEK), wantErr: "CPUID is Turin"},
		{name: "Turin v2 report, mitigation vector bytes set", spec: withTurin(func(s *reportSpec) { s.version = 2; s.fms = [3]byte{} }),
			key: turinKey, collateral: col(turin.ica, turinVCEK), wantErr: "mitigation vectors exist from version 5"},
		{name: "Turin v5 report, VLEK with ASVK", spec: withTurin(func(s *reportSpec) { s.keyInfo = 1 << 2; s.chipID = nil }),
			key: turinVLEKKey, collateral: col(turinVLEKChain.ica, turinVLEK),
			details: map[string]string{"signing_key": "VLEK", "csp_id": "cloud", "product_line": "Turin", "reported_tcb_fmc_spl": "1"}},
		{name: "Turin VLEK report, ASVK missing", spec: withTurin(func(s *reportSpec) { s.keyInfo = 1 << 2; s.chipID = nil }),
			key: turinVLEKKey, collateral: col(turinVLEK), wantErr: "certificate chain to ARK-Turin"},
		{name: "Genoa v3 report, 64-byte hwID", spec: genoaV3, key: genoaKey, collateral: col(genoa.ica, genoaVCEK),
			details: map[string]string{"product_line": "Genoa", "reported_tcb_snp_spl": "8", "cpuid_model": "0x11"}},
		// Bergamo and Siena are Genoa-line parts (family 19h, models A0h–AFh).
		{name: "Genoa v3 report, model A0h", spec: func() reportSpec { s := genoaV3; s.fms = [3]byte{0x19, 0xa0, 0x02}; return s }(),
			key: genoaKey, collateral: col(genoa.ica, genoaVCEK)},
		{name: "Genoa v3 report, VLEK with ASVK", spec: func() reportSpec { s := genoaV3; s.keyInfo = 1 << 2; s.chipID = nil; return s }(),
			key: genoaVLEKKey, collateral: col(genoaVLEKChain.ica, genoaVLEK), details: map[string]string{"signing_key": "VLEK", "product_line": "Genoa"}},
		{name: "CPUID of an unknown line", spec: func() reportSpec { s := genoaV3; s.fms = [3]byte{0x1a, 0x50, 0x00}; return s }(),
			key: genoaKey, collateral: col(genoa.ica, genoaVCEK), wantErr: "family 0x1a model 0x50 is not a product line"},
		{name: "unknown product name", spec: base, key: unknownProductKey, collateral: col(milan.ica, unknownProduct), wantErr: `unknown product name "Venice"`},
		{name: "unknown SPL extension", spec: base, key: unknownSPLKey, collateral: col(milan.ica, unknownSPL), wantErr: "unknown TCB extension"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			report := buildReport(t, tc.spec, tc.key)
			if tc.table != nil {
				report = append(report, MarshalCertTable(tc.table)...)
			}
			r := roots
			if tc.roots != nil {
				r = tc.roots
			}
			// Built-in AMD roots stay trusted too: they must not help a synthetic chain.
			res, err := (&Verifier{}).Verify(context.Background(), report, attestation.Options{Now: sampleTime, AMDRoots: r, Collateral: tc.collateral})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !res.Verified || res.Measurements["measurement"] != strings.Repeat("ab", 48) && tc.spec.measurement != 0 {
					t.Errorf("result %+v", res)
				}
				for k, want := range tc.details {
					if got := res.Details[k]; got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("verified: %+v", res)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	milan := newTestChain(t, "Milan", false)
	turin := newTestChain(t, "Turin", false)
	chip := bytes.Repeat([]byte{0xc1}, 64)
	spl := map[int]int{1: 3, 2: 0, 3: 8, 8: 115}
	const tcb = uint64(115)<<56 | uint64(8)<<48 | 3
	vcek, key := milan.issueEK(t, ekSpec{productName: "Milan-B1", hwID: chip, spl: spl})
	report := buildReport(t, reportSpec{version: 2, chipID: chip, reportedTCB: tcb, currentTCB: tcb}, key)
	from, until := sampleTime.Add(-24*time.Hour), sampleTime.Add(24*time.Hour)

	forgerKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	forgedARK := createCert(t, &x509.Certificate{Subject: named("ARK-Milan"), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, &forgerKey.PublicKey, forgerKey)
	pemCRL := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: issueCRL(t, milan.ark, milan.arkKey, from, until, big.NewInt(1))})

	tests := []struct {
		name        string
		crl         []byte
		wantErr     string
		wantChecked string
	}{
		{name: "no CRL", wantChecked: "false"},
		{name: "CRL without this ASK", crl: issueCRL(t, milan.ark, milan.arkKey, from, until, big.NewInt(1)), wantChecked: "true"},
		{name: "PEM CRL", crl: pemCRL, wantChecked: "true"},
		{name: "another product's CRL revoking the serial", crl: issueCRL(t, turin.ark, turin.arkKey, from, until, milan.ica.SerialNumber), wantChecked: "false"},
		{name: "ASK revoked", crl: issueCRL(t, milan.ark, milan.arkKey, from, until, milan.ica.SerialNumber), wantErr: "is revoked"},
		{name: "stale CRL", crl: issueCRL(t, milan.ark, milan.arkKey, from.Add(-48*time.Hour), from), wantErr: "CRL is valid"},
		{name: "CRL from the future", crl: issueCRL(t, milan.ark, milan.arkKey, until, until.Add(time.Hour)), wantErr: "CRL is valid"},
		{name: "forged CRL", crl: issueCRL(t, forgedARK, forgerKey, from, until), wantErr: "CRL naming ARK-Milan"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			collateral := [][]byte{milan.ica.Raw, vcek.Raw}
			if tc.crl != nil {
				collateral = append(collateral, tc.crl)
			}
			res, err := (&Verifier{}).Verify(context.Background(), report, attestation.Options{Now: sampleTime,
				AMDRoots: []*x509.Certificate{milan.ark, turin.ark}, Collateral: collateral})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Details["crl_checked"] != tc.wantChecked {
				t.Errorf("crl_checked = %q, want %q", res.Details["crl_checked"], tc.wantChecked)
			}
		})
	}
}

func TestSyntheticTurinDetails(t *testing.T) {
	turin := newTestChain(t, "Turin", false)
	chip := append(bytes.Repeat([]byte{0xc1}, 8), make([]byte, 56)...)
	vcek, key := turin.issueEK(t, ekSpec{productName: "Turin-B0", hwID: chip[:8], spl: map[int]int{9: 1, 1: 2, 2: 3, 3: 4, 8: 90}})
	const tcb = uint64(90)<<56 | 4<<24 | 3<<16 | 2<<8 | 1
	report := buildReport(t, reportSpec{version: 3, fms: [3]byte{0x1a, 0x02, 0x00}, chipID: chip, reportedTCB: tcb, currentTCB: tcb}, key)
	res, err := (&Verifier{}).Verify(context.Background(), report, attestation.Options{Now: sampleTime, AMDRoots: []*x509.Certificate{turin.ark},
		Collateral: [][]byte{turin.ica.Raw, vcek.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"reported_tcb_fmc_spl": "1", "reported_tcb_bl_spl": "2", "reported_tcb_tee_spl": "3",
		"reported_tcb_snp_spl": "4", "reported_tcb_ucode_spl": "90", "product_line": "Turin", "policy_debug": "false"} {
		if res.Details[k] != want {
			t.Errorf("%s = %q, want %q", k, res.Details[k], want)
		}
	}
	if res.Debug {
		t.Error("debug reported for a policy without the debug bit")
	}
}

func TestCertTable(t *testing.T) {
	vcek := []byte("vcek-bytes")
	good := MarshalCertTable([]CertEntry{{GUID: guidVCEK, Data: vcek}, {GUID: guidASK, Data: []byte("ask")}})
	raw := func(entries ...[3]any) []byte {
		var b []byte
		for _, e := range entries {
			h := make([]byte, 24)
			g := e[0].(GUID)
			copy(h, g[:])
			putU32(h[16:], e[1].(uint32))
			putU32(h[20:], e[2].(uint32))
			b = append(b, h...)
		}
		return b
	}
	term := [3]any{GUID{}, uint32(0), uint32(0)}
	tests := []struct {
		name          string
		in            []byte
		allowTrailing bool
		want          int // entries, or -1 for an error
		wantErr       string
	}{
		{name: "good", in: good, want: 2},
		{name: "page padding", in: append(bytes.Clone(good), make([]byte, 4000)...), want: 2},
		{name: "stray bytes", in: append(bytes.Clone(good), 0, 0, 7), want: -1, wantErr: "non-zero byte"},
		{name: "stray bytes allowed", in: append(bytes.Clone(good), 0, 0, 7), allowTrailing: true, want: 2},
		{name: "empty table", in: raw(term), want: 0},
		{name: "no terminator", in: raw([3]any{guidVCEK, uint32(0), uint32(1)}), want: -1, wantErr: "terminating"},
		{name: "offset+length wraps 32 bits", in: append(raw([3]any{guidVCEK, uint32(0xFFFFFFF0), uint32(0x20)}, term), make([]byte, 64)...),
			want: -1, wantErr: "outside"},
		{name: "offset into header", in: append(raw([3]any{guidVCEK, uint32(0), uint32(8)}, term), make([]byte, 8)...), want: -1, wantErr: "header"},
		{name: "zero length", in: append(raw([3]any{guidVCEK, uint32(48), uint32(0)}, term), 1), want: -1, wantErr: "zero length"},
		{name: "duplicate GUID", in: append(raw([3]any{guidVCEK, uint32(72), uint32(1)}, [3]any{guidVCEK, uint32(72), uint32(1)}, term), 1),
			want: -1, wantErr: "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCertTable(tc.in, tc.allowTrailing)
			if tc.want < 0 {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d entries, want %d", len(got), tc.want)
			}
		})
	}
	got, _ := parseCertTable(good, false)
	if got[0].GUID.String() != vcekGUID || !bytes.Equal(got[0].Data, vcek) {
		t.Errorf("first entry %v %q", got[0].GUID, got[0].Data)
	}
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func FuzzParseEvidence(f *testing.F) {
	s := loadSample(f)
	f.Add(s.report)
	f.Add(append(bytes.Clone(s.report), MarshalCertTable([]CertEntry{{GUID: guidVCEK, Data: s.vcekDER}})...))
	f.Add(append(bytes.Clone(s.report), 0xff, 0xff))
	f.Add(s.report[:100])
	for _, name := range []string{"ms_report_v5_turin.bin", "ms_report_v3_genoa.bin", "coco_report_v3_milan_vlek.bin"} {
		f.Add(readSNPSample(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b, false)
		if err != nil {
			return
		}
		if len(ev.Raw) != ReportSize || !MatchReport(b) {
			t.Fatalf("parsed evidence that does not match: %d bytes", len(ev.Raw))
		}
	})
}

// BenchmarkVerifySNP does every check every time (the verification memo off).
func BenchmarkVerifySNP(b *testing.B) {
	memo.SetEnabled(false)
	defer memo.SetEnabled(true)
	benchmarkVerifySNP(b)
}

// BenchmarkVerifySNPWarmCache is a long-lived verifier seeing a known chip again: the VCEK chain
// (RSA-4096 checks) comes from the memo; the report's own signature is checked.
func BenchmarkVerifySNPWarmCache(b *testing.B) {
	benchmarkVerifySNP(b)
}

func benchmarkVerifySNP(b *testing.B) {
	s := loadSample(b)
	v := &Verifier{}
	opts := attestation.Options{Now: sampleTime, Collateral: [][]byte{s.vcekDER}}
	if _, err := v.Verify(context.Background(), s.report, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), s.report, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// TestChainMemoNeverServesWhatNoLongerHolds: after a warm verification, a later time past the
// VCEK's validity and a verifier that no longer trusts the line's ARK both fail as without the memo.
func TestChainMemoNeverServesWhatNoLongerHolds(t *testing.T) {
	s := loadSample(t)
	opts := attestation.Options{Now: sampleTime, Collateral: [][]byte{s.vcekDER}}
	for range 2 {
		if _, err := (&Verifier{}).Verify(context.Background(), s.report, opts); err != nil {
			t.Fatal(err)
		}
	}
	vcek, err := x509.ParseCertificate(s.vcekDER)
	if err != nil {
		t.Fatal(err)
	}
	late := opts
	late.Now = vcek.NotAfter.Add(time.Second)
	if _, err := (&Verifier{}).Verify(context.Background(), s.report, late); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after the VCEK expired: %v", err)
	}
	if _, err := (&Verifier{ProductLines: []string{"Genoa"}}).Verify(context.Background(), s.report, opts); err == nil {
		t.Fatal("a verifier that does not trust ARK-Milan accepted the warmed chain")
	}
}

// BenchmarkGoSevGuestVerify runs go-sev-guest's own verify.SnpAttestation on the same sample,
// offline, with its embedded Milan roots, for comparison with BenchmarkVerifySNP.
func BenchmarkGoSevGuestVerify(b *testing.B) {
	s := loadSample(b)
	report, err := abi.ReportToProto(s.report)
	if err != nil {
		b.Fatal(err)
	}
	root := trust.AMDRootCertsProduct("Milan")
	if err := root.FromKDSCertBytes(s.milanChain); err != nil {
		b.Fatal(err)
	}
	opts := &verify.Options{DisableCertFetching: true, Now: sampleTime,
		TrustedRoots: map[string][]*trust.AMDRootCerts{"Milan": {root}}}
	att := &spb.Attestation{Report: report, CertificateChain: &spb.CertificateChain{VcekCert: s.vcekDER}}
	if err := verify.SnpAttestation(att, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := verify.SnpAttestation(att, opts); err != nil {
			b.Fatal(err)
		}
	}
}
