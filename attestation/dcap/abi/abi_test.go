package abi

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func sample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

// quoteSamples locates each sample's signature data by the fixed layouts of the quote versions.
var quoteSamples = []struct {
	file       string
	sigOffset  int // offset of the 4-byte signature data length
	layout     SignatureLayout
	trailing   int
	certType   uint16
	certSize   int
	fmspc      string
	components []uint8 // nil: not checked
	pcesvn     uint16
}{
	{"sgx/oasis_quote_v3_pck_chain.bin", 432, LayoutV3, 0, 5, 3678, "00606A000000", []uint8{7, 9, 3, 3, 255, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 13},
	{"sgx/oasis_quote_v3_encrypted_ppid.bin", 432, LayoutV3, 0, 3, 404, "", nil, 0},
	{"tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin", 632, LayoutV4, 0, 5, 3678, "C0806F000000", nil, 0},
	{"tdx/oasis_quote_v4_tdx_trailing70.bin", 632, LayoutV4, 70, 5, 3678, "C0806F000000", nil, 0},
	{"tdx/oasis_quote_v4_tdx_fmspc_50806F000000_outofdate.bin", 632, LayoutV4, 0, 5, 3677, "50806F000000", []uint8{3, 3, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}, 11},
	{"tdx/gotdx_quote_v4_spr_e4_trailing39.dat", 632, LayoutV4, 39, 5, 3677, "50806F000000", []uint8{3, 3, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}, 11},
	{"tdx/gotdx_quote_v5.dat", 48 + 6 + 648, LayoutV4, 0, 5, 3678, "90C06F000000", nil, 0},
}

func signatureData(t testing.TB, file string, off, trailing int) []byte {
	b := sample(t, file)
	n := int(binary.LittleEndian.Uint32(b[off:]))
	if off+4+n+trailing != len(b) {
		t.Fatalf("%s: signature data %d bytes at %d does not end the file (%d bytes)", file, n, off+4, len(b))
	}
	return b[off+4 : off+4+n]
}

func TestParseSignatureDataAndPCKExtension(t *testing.T) {
	for _, s := range quoteSamples {
		t.Run(s.file, func(t *testing.T) {
			sd, err := ParseSignatureData(signatureData(t, s.file, s.sigOffset, s.trailing), s.layout)
			if err != nil {
				t.Fatal(err)
			}
			if len(sd.QEAuthData) != 32 || sd.Certification.Type != s.certType || len(sd.Certification.Data) != s.certSize {
				t.Fatalf("auth data %d, certification type %d size %d", len(sd.QEAuthData), sd.Certification.Type, len(sd.Certification.Data))
			}
			certs, err := sd.Certification.PCKChain()
			if s.certType != CertDataPCKCertChain {
				if !errors.Is(err, ErrUnsupportedCertificationData) || !strings.Contains(err.Error(), "type 3 (PPID encrypted with RSA-3072)") {
					t.Fatalf("PCKChain error %v, want unsupported type 3", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 3 {
				t.Fatalf("%d certificates, want 3", len(certs))
			}
			ext, err := PCKExtensionFromCertificate(certs[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.ToUpper(hexString(ext.FMSPC[:])); got != s.fmspc {
				t.Errorf("FMSPC %s, want %s", got, s.fmspc)
			}
			if ext.PCEID != [2]byte{} {
				t.Errorf("PCEID %x, want 0000", ext.PCEID)
			}
			// With tcbType 0 the TCB components are the CPUSVN bytes.
			if !bytes.Equal(ext.TCBComponents[:], ext.CPUSVN[:]) {
				t.Errorf("components %v differ from CPUSVN %x", ext.TCBComponents, ext.CPUSVN)
			}
			if s.components != nil && (!bytes.Equal(ext.TCBComponents[:], s.components) || ext.PCESVN != s.pcesvn) {
				t.Errorf("components %v PCESVN %d, want %v and %d", ext.TCBComponents, ext.PCESVN, s.components, s.pcesvn)
			}
			if _, err := PCKExtensionFromCertificate(certs[1]); err == nil {
				t.Error("the PCK CA certificate has no SGX extension, parse must fail")
			}
		})
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&0xf])
	}
	return sb.String()
}

func TestPCKExtensionPlatformFields(t *testing.T) {
	sd, err := ParseSignatureData(signatureData(t, quoteSamples[0].file, 432, 0), LayoutV3)
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := sd.Certification.PCKChain()
	ext, err := PCKExtensionFromCertificate(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	if ext.SGXType != SGXTypeScalable || len(ext.PlatformInstanceID) != 16 || ext.DynamicPlatform == nil || !*ext.DynamicPlatform ||
		ext.CachedKeys == nil || *ext.CachedKeys || ext.SMTEnabled == nil || *ext.SMTEnabled {
		t.Errorf("SGX type %d, platform instance %x, dynamic %v cached %v smt %v", ext.SGXType, ext.PlatformInstanceID, ext.DynamicPlatform, ext.CachedKeys, ext.SMTEnabled)
	}
}

// pckExtensionDER returns the SGX sample's PCK extension value and its top-level entries.
func pckExtensionDER(t testing.TB) ([]byte, []extensionEntry) {
	sd, err := ParseSignatureData(signatureData(t, quoteSamples[0].file, 432, 0), LayoutV3)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := sd.Certification.PCKChain()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range certs[0].Extensions {
		if e.Id.Equal(OIDSGXExtension) {
			var entries []extensionEntry
			if _, err := asn1.Unmarshal(e.Value, &entries); err != nil {
				t.Fatal(err)
			}
			return e.Value, entries
		}
	}
	t.Fatal("no SGX extension")
	return nil, nil
}

func TestParsePCKExtensionRejects(t *testing.T) {
	der, entries := pckExtensionDER(t)
	remarshal := func(f func([]extensionEntry) []extensionEntry) []byte {
		es := f(append([]extensionEntry(nil), entries...))
		b, err := asn1.Marshal(es)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withValue := func(oid asn1.ObjectIdentifier, v any) []byte {
		return remarshal(func(es []extensionEntry) []extensionEntry {
			for i := range es {
				if es[i].ID.Equal(oid) {
					raw, err := asn1.Marshal(v)
					if err != nil {
						t.Fatal(err)
					}
					es[i].Value = asn1.RawValue{FullBytes: raw}
				}
			}
			return es
		})
	}
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"empty", nil, "SGX extension"},
		{"truncated", der[:len(der)-5], "SGX extension"},
		{"trailing bytes", append(bytes.Clone(der), 0x00), "trailing"},
		{"missing FMSPC", remarshal(func(es []extensionEntry) []extensionEntry {
			var out []extensionEntry
			for _, e := range es {
				if !e.ID.Equal(oidFMSPC) {
					out = append(out, e)
				}
			}
			return out
		}), "missing entry " + oidFMSPC.String()},
		{"duplicate PCEID", remarshal(func(es []extensionEntry) []extensionEntry {
			for _, e := range es {
				if e.ID.Equal(oidPCEID) {
					return append(es, e)
				}
			}
			return es
		}), "duplicate entry"},
		{"FMSPC of 5 bytes", withValue(oidFMSPC, []byte{1, 2, 3, 4, 5}), "FMSPC is 5 bytes"},
		{"FMSPC as integer", withValue(oidFMSPC, 7), "FMSPC"},
		{"SGX type out of range", withValue(oidSGXType, asn1.Enumerated(7)), "out of range"},
		{"TCB not a sequence", withValue(oidTCB, 1), "TCB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePCKExtension(tc.der)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := ParsePCKExtension(der); err != nil {
		t.Fatalf("unmodified extension: %v", err)
	}
}

func TestParseTCBInfoSamples(t *testing.T) {
	tests := []struct {
		file             string
		id               string
		fmspc            string
		evalNumber       uint32
		issue, next      string
		levels           int
		firstStatus      string
		moduleIdentities []string
	}{
		{"sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", "SGX", "00606a000000", 13, "2022-12-19T09:40:10Z", "2023-01-18T09:40:10Z", 0, "SWHardeningNeeded", nil},
		{"tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json", "TDX", "c0806f000000", 17, "2024-09-02T07:25:12Z", "2024-10-02T07:25:12Z", 0, "UpToDate", []string{"TDX_03", "TDX_01"}},
		{"tdx/gotdx_tcbinfo_tdx_v3_fmspc_50806f000000.json", "TDX", "50806f000000", 0, "2023-06-18T08:42:58Z", "2023-07-18T08:42:58Z", 0, "UpToDate", nil},
		{"tdx/gotdx_tcbinfo_tdx_v3_fmspc_90c06f000000.json", "TDX", "90c06f000000", 18, "2026-02-01T14:49:26Z", "2026-03-03T14:49:26Z", 0, "UpToDate", []string{"TDX_03", "TDX_01"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := sample(t, tc.file)
			ti, err := ParseTCBInfo(raw)
			if err != nil {
				t.Fatal(err)
			}
			if ti.ID != tc.id || ti.Version != 3 || hexString(ti.FMSPC[:]) != tc.fmspc || ti.TCBType != 0 {
				t.Errorf("id %s version %d fmspc %x tcbType %d", ti.ID, ti.Version, ti.FMSPC, ti.TCBType)
			}
			if tc.evalNumber != 0 && ti.TCBEvaluationDataNumber != tc.evalNumber {
				t.Errorf("tcbEvaluationDataNumber %d, want %d", ti.TCBEvaluationDataNumber, tc.evalNumber)
			}
			if ti.IssueDate.Format(time.RFC3339) != tc.issue || ti.NextUpdate.Format(time.RFC3339) != tc.next {
				t.Errorf("issueDate %s nextUpdate %s", ti.IssueDate, ti.NextUpdate)
			}
			if len(ti.TCBLevels) == 0 || ti.TCBLevels[0].Status != tc.firstStatus {
				t.Errorf("levels %d, first %+v", len(ti.TCBLevels), ti.TCBLevels)
			}
			for _, l := range ti.TCBLevels {
				if tc.id == "SGX" && l.TDXComponents != nil {
					t.Errorf("SGX level with TDX components")
				}
				if tc.id == "TDX" && l.TDXComponents == nil {
					t.Errorf("TDX level without TDX components")
				}
			}
			var ids []string
			for _, m := range ti.TDXModuleIdentities {
				ids = append(ids, m.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.moduleIdentities, ",") {
				t.Errorf("module identities %v, want %v", ids, tc.moduleIdentities)
			}
			if (ti.TDXModule != nil) != (tc.id == "TDX") {
				t.Errorf("tdxModule %v for %s", ti.TDXModule, tc.id)
			}
			// The signed bytes are the raw text of the tcbInfo value, exactly as served.
			prefix := []byte(`{"tcbInfo":`)
			end := bytes.LastIndex(raw, []byte(`,"signature":`))
			if !bytes.HasPrefix(raw, prefix) || end < 0 || !bytes.Equal(ti.Raw, raw[len(prefix):end]) {
				t.Error("Raw is not the exact tcbInfo text")
			}
			if len(ti.Signature) != 64 {
				t.Errorf("signature %d bytes", len(ti.Signature))
			}
		})
	}
}

// Intel's signers of the SGX QE and of the TD QE (the QE reports in the quote samples carry them).
const (
	sgxQESigner = "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"
	tdQESigner  = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"
)

func TestParseQEIdentitySamples(t *testing.T) {
	tests := []struct {
		file        string
		id          string
		issue, next string
		firstISVSVN uint16
		mrsigner    string
	}{
		{"sgx/oasis_qeidentity_qe_v2.json", "QE", "2022-12-16T12:45:36Z", "2023-01-15T12:45:36Z", 6, sgxQESigner},
		{"tdx/oasis_qeidentity_td_qe_2024-09.json", "TD_QE", "2024-09-02T06:47:57Z", "2024-10-02T06:47:57Z", 0, tdQESigner},
		{"tdx/gotdx_qeidentity_td_qe_2023-06.json", "TD_QE", "2023-06-08T07:24:59Z", "2023-07-08T07:24:59Z", 0, tdQESigner},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := sample(t, tc.file)
			qi, err := ParseQEIdentity(raw)
			if err != nil {
				t.Fatal(err)
			}
			if qi.ID != tc.id || qi.Version != 2 || qi.IssueDate.Format(time.RFC3339) != tc.issue || qi.NextUpdate.Format(time.RFC3339) != tc.next {
				t.Errorf("id %s version %d issued %s next %s", qi.ID, qi.Version, qi.IssueDate, qi.NextUpdate)
			}
			if hexString(qi.MRSIGNER[:]) != tc.mrsigner {
				t.Errorf("MRSIGNER %x, want %s", qi.MRSIGNER, tc.mrsigner)
			}
			if tc.firstISVSVN != 0 && qi.TCBLevels[0].ISVSVN != tc.firstISVSVN {
				t.Errorf("first level ISVSVN %d", qi.TCBLevels[0].ISVSVN)
			}
			prefix := []byte(`{"enclaveIdentity":`)
			end := bytes.LastIndex(raw, []byte(`,"signature":`))
			if !bytes.HasPrefix(raw, prefix) || end < 0 || !bytes.Equal(qi.Raw, raw[len(prefix):end]) {
				t.Error("Raw is not the exact enclaveIdentity text")
			}
		})
	}
}

const v2TCBInfo = `{"tcbInfo":{"version":2,"issueDate":"2021-01-01T00:00:00Z","nextUpdate":"2021-02-01T00:00:00Z","fmspc":"00906ED50000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":10,"tcbLevels":[` +
	`{"tcb":{"sgxtcbcomp01svn":1,"sgxtcbcomp02svn":2,"sgxtcbcomp03svn":3,"sgxtcbcomp04svn":4,"sgxtcbcomp05svn":5,"sgxtcbcomp06svn":6,"sgxtcbcomp07svn":7,"sgxtcbcomp08svn":8,"sgxtcbcomp09svn":9,"sgxtcbcomp10svn":10,"sgxtcbcomp11svn":11,"sgxtcbcomp12svn":12,"sgxtcbcomp13svn":13,"sgxtcbcomp14svn":14,"sgxtcbcomp15svn":15,"sgxtcbcomp16svn":16,"pcesvn":10},"tcbDate":"2020-11-11T00:00:00Z","tcbStatus":"UpToDate"}]},` +
	`"signature":"` + sig64 + `"}`

const sig64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestParseTCBInfoVersion2(t *testing.T) {
	ti, err := ParseTCBInfo([]byte(v2TCBInfo))
	if err != nil {
		t.Fatal(err)
	}
	if ti.ID != TCBInfoIDSGX || ti.Version != 2 || len(ti.TCBLevels) != 1 || ti.TCBLevels[0].PCESVN != 10 || ti.TCBLevels[0].SGXComponents[15] != 16 || ti.TCBLevels[0].TDXComponents != nil {
		t.Errorf("%+v", ti)
	}
}

func TestParseTCBInfoRejects(t *testing.T) {
	good := string(sample(t, "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json"))
	tests := []struct {
		name, old, new string
		base           string
		want           string
	}{
		{"version 4", `"version":3`, `"version":4`, good, "unsupported version 4"},
		{"unknown id", `"id":"TDX"`, `"id":"SEV"`, good, "unknown id"},
		{"short FMSPC", `"fmspc":"c0806f000000"`, `"fmspc":"c0806f"`, good, "fmspc is 3 bytes"},
		{"FMSPC not hex", `"fmspc":"c0806f000000"`, `"fmspc":"c0806f00000z"`, good, "fmspc"},
		{"bad issueDate", `"issueDate":"2024-09-02T07:25:12Z"`, `"issueDate":"yesterday"`, good, "issueDate"},
		{"missing tdxModule", `"tdxModule"`, `"tdxModuleX"`, good, "without \"tdxModule\""},
		{"SVN 256", `{"svn":2,`, `{"svn":256,`, good, "out of range"},
		{"negative SVN", `{"svn":2,`, `{"svn":-1,`, good, "out of range"},
		{"component without svn", `"sgxtcbcomponents":[{"svn":`, `"sgxtcbcomponents":[{"x":`, good, "sgxtcbcomponents[0].svn"},
		{"15 SGX components", `"sgxtcbcomponents":[{"svn":7,"category":"BIOS","type":"Early Microcode Update"},`, `"sgxtcbcomponents":[`, good, "15 entries, want 16"},
		{"signature too short", `"signature":"`, `"signature":"00`, good, "signature is 65 bytes"},
		{"signature not hex", `"signature":"`, `"signature":"zz`, good, "signature"},
		{"no signature", `"signature":`, `"signatureX":`, good, `no "signature"`},
		{"v2 with 15 components", `"sgxtcbcomp16svn":16,`, ``, v2TCBInfo, "sgxtcbcomp16svn"},
		{"v2 with TDX id", `"version":2,`, `"version":2,"id":"TDX",`, v2TCBInfo, "version 2 TCB info with id"},
		{"no levels", `"tcbLevels":[`, `"tcbLevels":[],"x":[`, v2TCBInfo, "no tcbLevels"},
		{"not JSON", `{"tcbInfo"`, `["tcbInfo"`, good, "envelope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(tc.base, tc.old, tc.new, 1)
			if doc == tc.base {
				t.Fatalf("test mutation %q did not apply", tc.old)
			}
			_, err := ParseTCBInfo([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseQEIdentityRejects(t *testing.T) {
	good := string(sample(t, "sgx/oasis_qeidentity_qe_v2.json"))
	tests := []struct{ name, old, new, want string }{
		{"version 1", `"version":2`, `"version":1`, "unsupported version 1"},
		{"short MRSIGNER", `"mrsigner":"8C4F`, `"mrsigner":"`, "mrsigner is 30 bytes"},
		{"attributes mask length", `"attributesMask":"FB`, `"attributesMask":"`, "attributesMask"},
		{"ISVPRODID too large", `"isvprodid":1`, `"isvprodid":70000`, "out of range"},
		{"missing tcbStatus", `"tcbStatus":"UpToDate"`, `"status":"UpToDate"`, "tcbStatus"},
		{"missing id", `"id":"QE",`, ``, `missing "id"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(good, tc.old, tc.new, 1)
			if doc == good {
				t.Fatalf("test mutation %q did not apply", tc.old)
			}
			_, err := ParseQEIdentity([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseCollateral(t *testing.T) {
	files := [][]byte{
		sample(t, "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"),
		sample(t, "tdx/oasis_qeidentity_td_qe_2024-09.json"),
		sample(t, "sgx/oasis_tcb_signing_chain.pem"),                  // 2 certificates
		sample(t, "tdx/gotdx_pck_crl_platform_2023-06-08.der"),        // DER CRL
		sample(t, "roots/gotdx_intel_sgx_root_ca_crl_2023-04-03.der"), // DER CRL
		sample(t, "sev-snp/gosev_vcek_milan.der"),                     // DER certificate (another TEE's)
	}
	c, err := ParseCollateral(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TCBInfos) != 1 || len(c.QEIdentities) != 1 || len(c.Certificates) != 3 || len(c.CRLs) != 2 {
		t.Errorf("TCB infos %d, QE identities %d, certificates %d, CRLs %d", len(c.TCBInfos), len(c.QEIdentities), len(c.Certificates), len(c.CRLs))
	}
	if n := len(c.CRLs[0].RevokedCertificateEntries); n != 44 {
		t.Errorf("PCK CRL has %d entries, want 44", n)
	}
	broken := strings.Replace(string(files[0]), `"fmspc":"00606A000000"`, `"fmspc":"00"`, 1)
	for name, f := range map[string][]byte{
		"malformed TCB info":  []byte(broken),
		"malformed PEM cert":  []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"both kinds in one":   []byte(`{"tcbInfo":{},"enclaveIdentity":{}}`),
		"PEM without a block": []byte("-----BEGIN nothing"),
		"QE identity no sig":  []byte(`{"enclaveIdentity":{"id":"QE"}}`),
		// Nothing is silently ignored: the user who passed it would believe it was used.
		"an SNP report":     sample(t, "sev-snp/gosev_report_v2_milan.bin"),
		"unrelated JSON":    []byte(`{"unrelated":true}`),
		"empty":             []byte("  \n"),
		"a PEM private key": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"JSON array":        []byte(`[1]`),
	} {
		if _, err := ParseCollateral([][]byte{f}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPCKChainCertificationData(t *testing.T) {
	chain := sample(t, "sgx/oasis_tcb_signing_chain.pem")
	tests := []struct {
		name  string
		cd    CertificationData
		certs int
		want  string
	}{
		{"trailing NUL", CertificationData{Type: 5, Data: append(bytes.Clone(chain), 0)}, 2, ""},
		{"no NUL", CertificationData{Type: 5, Data: chain}, 2, ""},
		{"leading junk", CertificationData{Type: 5, Data: append([]byte("junk"), chain...)}, 0, "non-PEM data"},
		{"junk between", CertificationData{Type: 5, Data: bytes.Replace(chain, []byte("-----\n-----BEGIN"), []byte("-----\nxx-----BEGIN"), 1)}, 0, "non-PEM data after certificate 1"},
		{"junk after", CertificationData{Type: 5, Data: append(bytes.Clone(chain), 'x', 0)}, 0, "non-PEM data"},
		{"empty", CertificationData{Type: 5, Data: []byte{0}}, 0, "no certificate"},
		{"private key block", CertificationData{Type: 5, Data: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, 0, `"PRIVATE KEY"`},
		{"PPID cleartext", CertificationData{Type: 1}, 0, "unsupported certification data type 1"},
		{"platform manifest", CertificationData{Type: 7}, 0, "unsupported certification data type 7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := tc.cd.PCKChain()
			if tc.want == "" {
				if err != nil || len(certs) != tc.certs {
					t.Fatalf("%d certificates, %v", len(certs), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseHeaderAndEnclaveReport(t *testing.T) {
	q := sample(t, "sgx/oasis_quote_v3_pck_chain.bin")
	h, err := ParseHeader(q)
	if err != nil || h.Version != 3 || h.AttestationKeyType != 2 || h.TEEType != 0 || h.QEVendorID != IntelQEVendorID {
		t.Fatalf("%+v %v", h, err)
	}
	if _, err := ParseHeader(q[:47]); err == nil {
		t.Error("47-byte header accepted")
	}
	r, err := ParseEnclaveReport(q[48 : 48+384])
	if err != nil || r.Debug() || r.ISVProdID != 0 || hexString(r.MRENCLAVE[:]) != "68823bc62f409ee33a32ea270cfe45d4b19a6fb3c8570d7bc186cbe062398e8f" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := ParseEnclaveReport(q[48 : 48+383]); err == nil {
		t.Error("383-byte report accepted")
	}
	dbg := bytes.Clone(q[48 : 48+384])
	dbg[48] |= 0x02
	if r, _ := ParseEnclaveReport(dbg); !r.Debug() {
		t.Error("DEBUG attribute not seen")
	}
}

func TestParseSignatureDataRejects(t *testing.T) {
	v3 := signatureData(t, quoteSamples[0].file, 432, 0)
	v4 := signatureData(t, quoteSamples[2].file, 632, 0)
	tests := []struct {
		name   string
		b      []byte
		layout SignatureLayout
		want   string
	}{
		{"v3 one byte extra", append(bytes.Clone(v3), 0), LayoutV3, "1 bytes after the certification data"},
		{"v3 truncated", v3[:len(v3)-1], LayoutV3, "exceeds"},
		{"v3 read as v4", v3, LayoutV4, "certification data type"},
		{"v4 read as v3", v4, LayoutV3, ""},
		{"v4 one byte extra", append(bytes.Clone(v4), 0), LayoutV4, "after the certification data"},
		{"short", v3[:100], LayoutV3, "needs"},
		{"unknown layout", v3, SignatureLayout(9), "unknown layout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSignatureData(tc.b, tc.layout)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
