package shelter

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// Pinned times and collateral of the samples, as the testdata README gives them.
var (
	sgxTime     = mustTime("2022-12-20T00:50:04Z")
	tdxC08Time  = mustTime("2024-09-02T07:43:52Z")
	tdxTrail70  = mustTime("2024-09-21T12:00:00Z")
	tdxOODTime  = mustTime("2023-06-18T12:36:16Z")
	tdxE4Time   = mustTime("2023-07-01T01:00:00Z")
	tdxV5Time   = mustTime("2026-02-03T01:00:00Z")
	snpTime     = mustTime("2022-09-24T01:00:00Z")
	sgxColl     = []string{"sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json", "sgx/oasis_qeidentity_qe_v2.json", "sgx/oasis_tcb_signing_chain.pem"}
	tdxC08Coll  = []string{"tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json", "tdx/oasis_qeidentity_td_qe_2024-09.json", "sgx/oasis_tcb_signing_chain.pem"}
	tdx508Coll  = []string{"tdx/gotdx_tcbinfo_tdx_v3_fmspc_50806f000000.json", "tdx/gotdx_qeidentity_td_qe_2023-06.json", "sgx/oasis_tcb_signing_chain.pem"}
	tdxCRLColl  = []string{"tdx/gotdx_pck_crl_platform_2023-06-08.der", "roots/oasis_intel_pck_platform_ca_chain.pem"}
	tdxV5Coll   = []string{"tdx/gotdx_tcbinfo_tdx_v3_fmspc_90c06f000000.json", "sgx/oasis_tcb_signing_chain.pem"}
	snpColl     = []string{"sev-snp/gosev_vcek_milan.der"}
	examplePath = "../attestation/policy/testdata/example.json"
)

func readSample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

func readAll(t testing.TB, rels ...[]string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, group := range rels {
		for _, r := range group {
			out = append(out, readSample(t, r))
		}
	}
	return out
}

func parsePolicy(t testing.TB, s string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSamples gives each sample the verdict the testdata README states, at its pinned time, with
// and without collateral.
func TestSamples(t *testing.T) {
	example, err := policy.Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		file       string
		at         time.Time
		collateral [][]string
		trailing   bool
		policy     *policy.Policy
		// expectations
		ok, verified bool
		tee          attestation.TEE
		tcb          string
		measurement  [2]string // name, value
		err          string    // substring of the first error
		violations   []string  // rules
	}{
		{name: "SGX quote, no collateral", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime,
			ok: true, verified: true, tee: attestation.SGX,
			measurement: [2]string{"mrenclave", "68823bc62f409ee33a32ea270cfe45d4b19a6fb3c8570d7bc186cbe062398e8f"}},
		{name: "SGX quote with collateral", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime, collateral: [][]string{sgxColl},
			ok: true, verified: true, tee: attestation.SGX, tcb: "SWHardeningNeeded"},
		{name: "SGX quote, example policy, collateral", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime, collateral: [][]string{sgxColl},
			policy: example, ok: true, verified: true, tee: attestation.SGX, tcb: "SWHardeningNeeded"},
		// A TCB info without its QE identity decides no status: the policy that needs one rejects.
		{name: "SGX quote, example policy, TCB info without QE identity", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime,
			collateral: [][]string{{sgxColl[0], sgxColl[2]}}, policy: example, verified: true, tee: attestation.SGX, violations: []string{"allow_unknown_tcb"}},
		{name: "SGX quote, example policy, no collateral", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime,
			policy: example, verified: true, tee: attestation.SGX, violations: []string{"allow_unknown_tcb"}},
		{name: "SGX quote, other MRENCLAVE required", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime, collateral: [][]string{sgxColl},
			policy:   parsePolicy(t, `{"tees":{"intelSgx":{"measurements":{"mrenclave":["`+strings.Repeat("ab", 32)+`"]},"tcb_statuses":["SWHardeningNeeded"]}}}`),
			verified: true, tee: attestation.SGX, tcb: "SWHardeningNeeded", violations: []string{"measurements.mrenclave"}},
		{name: "SGX quote, TEE not allowed", file: "sgx/oasis_quote_v3_pck_chain.bin", at: sgxTime,
			policy:   parsePolicy(t, `{"tees":{"tdx":{"allow_any_measurement":true}}}`),
			verified: true, tee: attestation.SGX, violations: []string{"tees"}},
		{name: "SGX quote, PCK expired", file: "sgx/oasis_quote_v3_pck_chain.bin", at: mustTime("2029-12-05T11:12:02Z"),
			tee: attestation.SGX, err: "expired"},
		{name: "SGX quote, QE identity expired", file: "sgx/oasis_quote_v3_pck_chain.bin", at: mustTime("2023-01-15T12:45:37Z"), collateral: [][]string{sgxColl},
			tee: attestation.SGX, err: "QE identity"},
		{name: "SGX quote, encrypted PPID", file: "sgx/oasis_quote_v3_encrypted_ppid.bin", at: sgxTime,
			tee: attestation.SGX, err: "pass the platform's PCK certificate"},
		{name: "SGX quote, encrypted PPID, with policy", file: "sgx/oasis_quote_v3_encrypted_ppid.bin", at: sgxTime, policy: example,
			tee: attestation.SGX, err: "PPID encrypted with RSA-3072", violations: []string{"verified"}},

		{name: "TDX v4, no collateral", file: "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin", at: tdxC08Time,
			ok: true, verified: true, tee: attestation.TDX,
			measurement: [2]string{"mrtd", "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"}},
		{name: "TDX v4 with collateral", file: "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin", at: tdxC08Time, collateral: [][]string{tdxC08Coll},
			ok: true, verified: true, tee: attestation.TDX, tcb: "UpToDate"},
		{name: "TDX v4, example policy", file: "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin", at: tdxC08Time, collateral: [][]string{tdxC08Coll},
			policy: example, ok: true, verified: true, tee: attestation.TDX, tcb: "UpToDate"},
		{name: "TDX v4, 70 zero bytes of padding", file: "tdx/oasis_quote_v4_tdx_trailing70.bin", at: tdxTrail70, collateral: [][]string{tdxC08Coll},
			ok: true, verified: true, tee: attestation.TDX, tcb: "UpToDate"},
		{name: "TDX v4 out of date, no collateral", file: "tdx/oasis_quote_v4_tdx_fmspc_50806F000000_outofdate.bin", at: tdxOODTime,
			ok: true, verified: true, tee: attestation.TDX},
		{name: "TDX v4 out of date, collateral", file: "tdx/oasis_quote_v4_tdx_fmspc_50806F000000_outofdate.bin", at: tdxOODTime, collateral: [][]string{tdx508Coll},
			tee: attestation.TDX, err: "TCB level not supported"},
		{name: "TDX SPR E4, 39 trailing bytes, strict", file: "tdx/gotdx_quote_v4_spr_e4_trailing39.dat", at: tdxE4Time,
			tee: attestation.TDX, err: "trailing data"},
		{name: "TDX SPR E4, tolerant", file: "tdx/gotdx_quote_v4_spr_e4_trailing39.dat", at: tdxE4Time, trailing: true,
			ok: true, verified: true, tee: attestation.TDX},
		{name: "TDX SPR E4, tolerant, collateral and CRL", file: "tdx/gotdx_quote_v4_spr_e4_trailing39.dat", at: tdxE4Time, trailing: true,
			collateral: [][]string{tdx508Coll, tdxCRLColl}, tee: attestation.TDX, err: "TCB level not supported"},
		{name: "TDX v5, no collateral", file: "tdx/gotdx_quote_v5.dat", at: tdxV5Time,
			ok: true, verified: true, tee: attestation.TDX,
			measurement: [2]string{"mrtd", "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"}},
		{name: "TDX v5, collateral with an expired issuer", file: "tdx/gotdx_quote_v5.dat", at: tdxV5Time, collateral: [][]string{tdxV5Coll},
			tee: attestation.TDX, err: "expired"},

		{name: "SNP report without VCEK", file: "sev-snp/gosev_report_v2_milan.bin", at: snpTime,
			tee: attestation.SNP, err: "no VCEK"},
		{name: "SNP report with VCEK", file: "sev-snp/gosev_report_v2_milan.bin", at: snpTime, collateral: [][]string{snpColl},
			ok: true, verified: true, tee: attestation.SNP,
			measurement: [2]string{"measurement", "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"}},
		{name: "SNP report, policy forbids debug", file: "sev-snp/gosev_report_v2_milan.bin", at: snpTime, collateral: [][]string{snpColl},
			policy: example, verified: true, tee: attestation.SNP, violations: []string{"allow_debug"}},
		{name: "SNP report, policy allows debug", file: "sev-snp/gosev_report_v2_milan.bin", at: snpTime, collateral: [][]string{snpColl},
			policy: parsePolicy(t, `{"tees":{"snp":{"measurements":{"measurement":["b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"]},"allow_unknown_tcb":true,"allow_debug":true}}}`),
			ok:     true, verified: true, tee: attestation.SNP},
		{name: "SNP report before the VCEK", file: "sev-snp/gosev_report_v2_milan.bin", at: mustTime("2022-09-24T00:00:00Z"), collateral: [][]string{snpColl},
			tee: attestation.SNP, err: "VCEK"},
		{name: "not evidence", file: "tdx/gotdx_qeidentity_td_qe_2023-06.json", at: tdxE4Time, err: "not evidence of a known format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Verify(context.Background(), VerifyInput{
				Subject: tc.file, Data: readSample(t, tc.file), Policy: tc.policy,
				Options: attestation.Options{Now: tc.at, Collateral: readAll(t, tc.collateral...), AllowTrailingData: tc.trailing},
			})
			// tc.ok says the evidence passes what was checked; without a policy that is no verdict:
			// ok stays false and the report says nothing was decided.
			wantOK, wantDecided := tc.ok && tc.policy != nil, tc.policy != nil || !tc.ok
			if r.OK != wantOK || r.Decided != wantDecided || r.Verified != tc.verified || r.TEE != string(tc.tee) || r.TCBStatus != tc.tcb {
				t.Fatalf("got ok=%v decided=%v verified=%v tee=%q tcb=%q errors=%q violations=%+v", r.OK, r.Decided, r.Verified, r.TEE, r.TCBStatus, r.Errors, r.Policy.Violations)
			}
			if tc.measurement[0] != "" && r.Measurements[tc.measurement[0]] != tc.measurement[1] {
				t.Errorf("%s = %q", tc.measurement[0], r.Measurements[tc.measurement[0]])
			}
			switch {
			case tc.err == "" && len(r.Errors) != 0:
				t.Errorf("unexpected errors %q", r.Errors)
			case tc.err != "" && (len(r.Errors) == 0 || !strings.Contains(r.Errors[0], tc.err)):
				t.Errorf("errors %q, want one containing %q", r.Errors, tc.err)
			}
			var rules []string
			for _, v := range r.Policy.Violations {
				rules = append(rules, v.Rule)
			}
			if !slices.Equal(rules, tc.violations) {
				t.Errorf("violations %v, want %v", rules, tc.violations)
			}
			if r.Policy.Checked != (tc.policy != nil) || r.Policy.Satisfied != (tc.policy != nil && tc.ok) {
				t.Errorf("policy verdict %+v", r.Policy)
			}
		})
	}
}

// simSetup is a sim platform, an enclave key and the platform certificate (the trust anchor).
type simSetup struct {
	platform    *sim.Platform
	key         *sim.EnclaveKey
	measurement string
}

func newSim(t testing.TB, name string) *simSetup {
	t.Helper()
	p, key, m := simtest.Enclave(t, name, "shelter-test")
	return &simSetup{platform: p, key: key, measurement: m}
}

func (s *simSetup) policy(t testing.TB) *policy.Policy {
	return parsePolicy(t, `{"tees":{"sim":{"measurements":{"measurement":["`+s.measurement+`"]},"allow_unknown_tcb":true}}}`)
}

func (s *simSetup) identity(t testing.TB) *enclavetls.Identity {
	t.Helper()
	id, err := enclavetls.NewIdentity(func(_ context.Context, rd [64]byte) ([]byte, error) { return s.key.Evidence(rd) }, enclavetls.IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSimEvidenceAndCertificates(t *testing.T) {
	s := newSim(t, "workload")
	ev, err := s.key.Evidence([64]byte{0xaa})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := s.identity(t).FreshCertificate(context.Background(), []byte("n0nce"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	roots := attestation.Options{SimRoots: []*x509.Certificate{s.platform.Certificate()}}
	for _, tc := range []struct {
		name     string
		data     []byte
		opts     attestation.Options
		policy   *policy.Policy
		nonce    []byte
		ok       bool
		kind     string
		keyBound bool
		err      string
	}{
		{"sim evidence", ev, roots, s.policy(t), nil, true, KindEvidence, false, ""},
		{"sim evidence, no policy", ev, roots, nil, nil, true, KindEvidence, false, ""},
		{"sim evidence without the platform certificate", ev, attestation.Options{}, nil, nil, false, KindEvidence, false, "no trusted sim platform"},
		{"sim evidence, other measurement", ev, roots, newSim(t, "other").policy(t), nil, false, KindEvidence, false, ""},
		{"sim evidence with a nonce", ev, roots, nil, []byte("x"), false, KindEvidence, false, "nonce"},
		{"RA-TLS certificate, DER", cert.Certificate[0], roots, s.policy(t), nil, true, KindCertificate, true, ""},
		{"RA-TLS certificate, PEM, nonce", pemCert, roots, s.policy(t), []byte("n0nce"), true, KindCertificate, true, ""},
		{"RA-TLS certificate, wrong nonce", pemCert, roots, s.policy(t), []byte("other"), false, KindCertificate, false, "another nonce"},
		{"two certificates", append(pemCert, pemCert...), roots, nil, nil, false, KindCertificate, false, "2 certificates"},
		{"PEM key, not a certificate", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), roots, nil, nil, false, KindCertificate, false, "want CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Verify(context.Background(), VerifyInput{Data: tc.data, Options: tc.opts, Policy: tc.policy, Nonce: tc.nonce})
			wantOK, wantDecided := tc.ok && tc.policy != nil, tc.policy != nil || !tc.ok
			if r.OK != wantOK || r.Decided != wantDecided || r.Kind != tc.kind || r.KeyBound != tc.keyBound {
				t.Fatalf("ok=%v decided=%v kind=%s keyBound=%v errors=%q violations=%+v", r.OK, r.Decided, r.Kind, r.KeyBound, r.Errors, r.Policy.Violations)
			}
			if r.Simulated != (r.TEE == string(attestation.Sim)) {
				t.Errorf("simulated=%v for TEE %q", r.Simulated, r.TEE)
			}
			if tc.err != "" && (len(r.Errors) == 0 || !strings.Contains(r.Errors[0], tc.err)) {
				t.Fatalf("errors %q, want %q", r.Errors, tc.err)
			}
			if tc.ok && (r.TEE != "sim" || r.Measurements["measurement"] != s.measurement || r.Details["simulated"] != "true") {
				t.Fatalf("report %+v", r)
			}
		})
	}
}

// TestJSONShape checks the fields scripts rely on, on a pass and on a failure.
func TestJSONShape(t *testing.T) {
	pass := Verify(context.Background(), VerifyInput{Data: readSample(t, "sgx/oasis_quote_v3_pck_chain.bin"),
		Options: attestation.Options{Now: sgxTime, Collateral: readAll(t, sgxColl)}, Policy: parsePolicy(t, `{"tees":{"intelSgx":{"signers":["9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a"],"tcb_statuses":["SWHardeningNeeded"]}}}`)})
	fail := Verify(context.Background(), VerifyInput{Data: []byte("garbage")})
	for name, r := range map[string]*Report{"pass": pass, "fail": fail} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for key, kind := range map[string]string{"tee": "string", "verified": "bool", "tcb_status": "string",
			"measurements": "object", "report_data": "string", "errors": "array", "policy": "object", "ok": "bool"} {
			if got := jsonKind(m[key]); got != kind {
				t.Errorf("%s: %q is %s, want %s (%s)", name, key, got, kind, b)
			}
		}
		pol := m["policy"].(map[string]any)
		if jsonKind(pol["violations"]) != "array" || jsonKind(pol["checked"]) != "bool" || jsonKind(pol["satisfied"]) != "bool" {
			t.Errorf("%s: policy %v", name, pol)
		}
	}
	if !pass.OK || pass.ReportData != "026a69ced96c3e0295d16d6b388e057a137a14319671662a5844c7472f3c62ae0e3d3f99b77dd89b0fc1436c4fe96828391a52588a0f883455a18b8f5872e3f0" {
		t.Errorf("pass: ok=%v report_data=%s", pass.OK, pass.ReportData)
	}
	if fail.OK || len(fail.Errors) != 1 {
		t.Errorf("fail: %+v", fail)
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case float64:
		return "number"
	case nil:
		return "null"
	}
	return "?"
}

func TestWriteText(t *testing.T) {
	s := newSim(t, "text")
	ev, _ := s.key.Evidence([64]byte{})
	opts := attestation.Options{SimRoots: []*x509.Certificate{s.platform.Certificate()}}
	for _, tc := range []struct {
		name   string
		pol    *policy.Policy
		data   []byte
		expect []string
	}{
		{"no policy", nil, ev, []string{"SIMULATED", "verified:     yes", "UNDECIDED", "nothing was decided", "measurement:  " + s.measurement}},
		{"policy holds", s.policy(t), ev, []string{"policy:       satisfied", "PASS: evidence verified and the policy holds"}},
		{"policy violated", newSim(t, "x").policy(t), ev, []string{"VIOLATED", "violation:    measurements.measurement", "verdict:      FAIL"}},
		{"garbage", nil, []byte("junk"), []string{"verified:     NO", "error:", "verdict:      FAIL"}},
	} {
		var b strings.Builder
		if err := Verify(context.Background(), VerifyInput{Data: tc.data, Options: opts, Policy: tc.pol}).WriteText(&b); err != nil {
			t.Fatal(err)
		}
		for _, e := range tc.expect {
			if !strings.Contains(b.String(), e) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, e, b.String())
			}
		}
	}
}

// TestEndorsementKeyCertificates: an AMD VCEK or VLEK given alone gets its chain verdict, never
// "not evidence" and never a policy verdict (it says nothing about a guest).
func TestEndorsementKeyCertificates(t *testing.T) {
	msTime := mustTime("2026-02-06T00:00:00Z")
	turinPEM := readSample(t, "sev-snp/ms_vcek_turin.pem")
	allowAny := parsePolicy(t, `{"tees":{"snp":{"allow_any_measurement":true,"allow_unknown_tcb":true,"allow_debug":true}}}`)
	for _, tc := range []struct {
		name    string
		data    []byte
		at      time.Time
		policy  *policy.Policy
		nonce   []byte
		ok      bool
		details map[string]string
		err     string
	}{
		{name: "Milan VCEK, DER", data: readSample(t, "sev-snp/gosev_vcek_milan.der"), at: snpTime, ok: true,
			details: map[string]string{"certificate": "VCEK", "product_line": "Milan", "chain": "SEV-VCEK -> SEV-Milan -> ARK-Milan", "tcb": "0x4405000000000002"}},
		{name: "Genoa VCEK, PEM", data: readSample(t, "sev-snp/ms_vcek_genoa.pem"), at: msTime, ok: true,
			details: map[string]string{"product": "Genoa", "chain": "SEV-VCEK -> SEV-Genoa -> ARK-Genoa"}},
		{name: "Turin VCEK, PEM", data: turinPEM, at: msTime, ok: true,
			details: map[string]string{"product_line": "Turin", "hw_id": "59790fb1c39f35c1", "fmc_spl": "1", "tcb": "0x5100000004010101"}},
		{name: "Milan VLEK, DER", data: readSample(t, "sev-snp/coco_vlek_milan.der"), at: mustTime("2024-12-11T00:00:00Z"), ok: true,
			details: map[string]string{"certificate": "VLEK", "csp_id": "CN=cc-us-east-2.amazonaws.com", "chain": "SEV-VLEK -> SEV-VLEK-Milan -> ARK-Milan"}},
		{name: "VLEK expired", data: readSample(t, "sev-snp/coco_vlek_milan.der"), at: msTime, err: "expired"},
		{name: "Turin VCEK before it was issued", data: turinPEM, at: snpTime, err: "not yet valid"},
		{name: "a policy cannot hold for a certificate", data: turinPEM, at: msTime, policy: allowAny, err: "not evidence"},
		{name: "nor a nonce", data: turinPEM, at: msTime, nonce: []byte("n"), err: "not evidence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Verify(context.Background(), VerifyInput{Subject: tc.name, Data: tc.data, Policy: tc.policy, Nonce: tc.nonce,
				Options: attestation.Options{Now: tc.at}})
			if r.Kind != KindEndorsementKey || r.TEE != string(attestation.SNP) || r.OK != tc.ok || !r.Decided || r.Policy.Checked {
				t.Fatalf("kind=%s tee=%s ok=%v decided=%v policy=%+v errors=%q", r.Kind, r.TEE, r.OK, r.Decided, r.Policy, r.Errors)
			}
			switch {
			case tc.err == "" && len(r.Errors) != 0:
				t.Errorf("unexpected errors %q", r.Errors)
			case tc.err != "" && (len(r.Errors) != 1 || !strings.Contains(r.Errors[0], tc.err)):
				t.Errorf("errors %q, want one containing %q", r.Errors, tc.err)
			}
			for k, want := range tc.details {
				if r.Details[k] != want {
					t.Errorf("%s = %q, want %q", k, r.Details[k], want)
				}
			}
		})
	}
}
