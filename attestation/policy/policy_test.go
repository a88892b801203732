package policy

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/snp"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func u64(v uint64) *uint64 { return &v }

// sgxSample is what the SGX verifier establishes for the oasis quote v3 sample with its collateral
// (values from testdata/attestation/README.md).
func sgxSample() *attestation.Result {
	return &attestation.Result{
		TEE: attestation.SGX, Verified: true, TCBStatus: "SWHardeningNeeded",
		Advisories: []string{"INTEL-SA-00615", "INTEL-SA-00657"},
		Measurements: map[string]string{
			"mrenclave": "68823bc62f409ee33a32ea270cfe45d4b19a6fb3c8570d7bc186cbe062398e8f",
			"mrsigner":  "9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a",
		},
		ReportData: make([]byte, 64), ProductID: u64(0), SVN: u64(0),
		Signer: "9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a",
	}
}

// tdxSample is the oasis TDX v4 quote's result (fmspc C0806F000000, UpToDate).
func tdxSample() *attestation.Result {
	return &attestation.Result{
		TEE: attestation.TDX, Verified: true, TCBStatus: "UpToDate",
		Measurements: map[string]string{
			"mrtd":  "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7",
			"rtmr3": strings.Repeat("0", 96),
		},
		ReportData: make([]byte, 64),
	}
}

// snpSample verifies the real SNP sample with the snp package.
func snpSample(t *testing.T) *attestation.Result {
	t.Helper()
	dir := testdata.Attestation(t)
	report, err := os.ReadFile(filepath.Join(dir, "sev-snp/gosev_report_v2_milan.bin"))
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := os.ReadFile(filepath.Join(dir, "sev-snp/gosev_vcek_milan.der"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&snp.Verifier{}).Verify(context.Background(), report, attestation.Options{
		Now: time.Date(2022, 9, 24, 1, 0, 0, 0, time.UTC), Collateral: [][]byte{vcek}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// simSample runs the sim TEE end to end for the example policy's measurement.
func simSample(t *testing.T, reportData []byte) *attestation.Result {
	t.Helper()
	p, err := sim.LoadOrCreatePlatform(filepath.Join(t.TempDir(), "platform-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := p.Endorse("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "wasm")
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	copy(rd[:], reportData)
	ev, err := key.Evidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&sim.Verifier{}).Verify(context.Background(), ev, attestation.Options{SimRoots: []*x509.Certificate{p.Certificate()}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	example, err := Load("testdata/example.json")
	if err != nil {
		t.Fatal(err)
	}
	snpRes := snpSample(t)
	with := func(r *attestation.Result, f func(*attestation.Result)) *attestation.Result { f(r); return r }
	defaultSNP := mustParse(t, `{"tees": {"snp": {"allow_any_measurement": true}}}`)
	debugSNP := mustParse(t, `{"tees": {"snp": {
		"measurements": {"measurement": ["B07AF9620F3B839B47996422DDEC6058338951D984E312115131EA82705EAF5B6BDF8A9ECE31A5A608EB0CF2E4872B01"]},
		"allow_debug": true, "allow_unknown_tcb": true, "report_data": "0102030405",
		"details": {"product_line": ["Milan"], "policy_migrate_ma": ["false"]}}}}`)
	noSim := mustParse(t, `{"tees": {"intelSgx": {"allow_any_measurement": true, "tcb_statuses": ["UpToDate", "SWHardeningNeeded"]}}}`)

	tests := []struct {
		name   string
		policy *Policy
		res    *attestation.Result
		want   []string // failed rules; nil means accepted
	}{
		{"sgx sample", example, sgxSample(), nil},
		{"sgx debug enclave", example, with(sgxSample(), func(r *attestation.Result) { r.Debug = true }), []string{"allow_debug"}},
		{"sgx unverified", example, with(sgxSample(), func(r *attestation.Result) { r.Verified = false }), []string{"verified"}},
		{"sgx out of date", example, with(sgxSample(), func(r *attestation.Result) { r.TCBStatus = "OutOfDate" }), []string{"tcb_statuses"}},
		{"sgx no collateral", example, with(sgxSample(), func(r *attestation.Result) { r.TCBStatus = "" }), []string{"allow_unknown_tcb"}},
		{"sgx other enclave, other signer, product 1", example, with(sgxSample(), func(r *attestation.Result) {
			r.Measurements["mrenclave"] = strings.Repeat("1", 64)
			r.Signer = strings.Repeat("2", 64)
			r.ProductID = u64(1)
		}), []string{"measurements.mrenclave", "product_ids", "signers"}},
		{"sgx no product id, no svn", example, with(sgxSample(), func(r *attestation.Result) { r.ProductID, r.SVN = nil, nil }),
			[]string{"min_svn", "product_ids"}},
		{"sgx upper-case hex from a tool", example, with(sgxSample(), func(r *attestation.Result) {
			r.Measurements["mrenclave"] = strings.ToUpper(r.Measurements["mrenclave"])
		}), nil},
		{"tdx sample", example, tdxSample(), nil},
		{"tdx other td", example, with(tdxSample(), func(r *attestation.Result) { r.Measurements["mrtd"] = strings.Repeat("a", 96) }),
			[]string{"measurements.mrtd"}},
		{"tdx without rtmr3", example, with(tdxSample(), func(r *attestation.Result) { delete(r.Measurements, "rtmr3") }),
			[]string{"measurements.rtmr3"}},
		{"snp sample: example forbids debug", example, snpRes, []string{"allow_debug"}},
		{"snp sample: default policy", defaultSNP, snpRes, []string{"allow_debug", "allow_unknown_tcb"}},
		{"snp sample: debug allowed", debugSNP, snpRes, nil},
		{"snp sample: wrong report data", debugSNP, with(snpSample(t), func(r *attestation.Result) { r.ReportData[0] = 9 }), []string{"report_data"}},
		{"snp sample: migration agent", debugSNP, with(snpSample(t), func(r *attestation.Result) { r.Details["policy_migrate_ma"] = "true" }),
			[]string{"details.policy_migrate_ma"}},
		{"sim listed", example, simSample(t, []byte{1, 2, 3, 4, 5}), nil},
		{"sim wrong report data", example, simSample(t, []byte{1, 2, 3, 4, 6}), []string{"report_data"}},
		{"sim not listed", noSim, simSample(t, nil), []string{"tees"}},
		{"sim unverified and not listed", noSim, with(simSample(t, nil), func(r *attestation.Result) { r.Verified = false }), []string{"tees", "verified"}},
		{"nil result", example, nil, []string{"verified"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Check(tc.res)
			var got []string
			for _, v := range Violations(err) {
				got = append(got, v.Rule)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("violations %v, want %v (error: %v)", got, tc.want, err)
			}
			if (err == nil) != (tc.want == nil) {
				t.Fatalf("error %v with violations %v", err, got)
			}
		})
	}
}

// TestCheckBuiltInCode covers policies constructed in Go rather than parsed: Check must not rely
// on Parse having run.
func TestCheckBuiltInCode(t *testing.T) {
	p := &Policy{TEEs: map[attestation.TEE]*TEEPolicy{
		attestation.TDX: {},
		attestation.SGX: {Measurements: map[string][]string{"mrenclave": {strings.ToUpper(sgxSample().Measurements["mrenclave"])}},
			TCBStatuses: []string{"SWHardeningNeeded"}, ReportData: "zz"},
	}}
	got := Violations(p.Check(tdxSample()))
	if len(got) != 1 || got[0].Rule != "allow_any_measurement" {
		t.Errorf("empty TEE rules: %v", got)
	}
	got = Violations(p.Check(sgxSample()))
	if len(got) != 1 || got[0].Rule != "report_data" {
		t.Errorf("bad report_data in code: %v", got)
	}
	p.TEEs[attestation.SGX].ReportData = ""
	if err := p.Check(sgxSample()); err != nil {
		t.Errorf("upper-case reference value: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, policy, wantErr string }{
		{"unknown top-level field", `{"tees": {"sim": {"allow_any_measurement": true}}, "extra": 1}`, "unknown field"},
		{"unknown rule", `{"tees": {"sim": {"allow_any_measurement": true, "allow_everything": true}}}`, "unknown field"},
		{"duplicate TEE", `{"tees": {"sim": {"allow_any_measurement": true}, "sim": {"allow_debug": true}}}`, `member "sim" appears twice in tees`},
		{"duplicate rule", `{"tees": {"snp": {"allow_debug": false, "allow_any_measurement": true, "allow_debug": true}}}`, "appears twice"},
		{"trailing data", `{"tees": {"sim": {"allow_any_measurement": true}}} {}`, "data after the JSON value"},
		{"unknown TEE", `{"tees": {"sgx": {"allow_any_measurement": true}}}`, `unknown TEE "sgx"`},
		{"no TEEs", `{"tees": {}}`, "at least one TEE"},
		{"null rules", `{"tees": {"sim": null}}`, "null is not allowed"},
		{"nothing pinned", `{"tees": {"tdx": {}}}`, "allow_any_measurement"},
		{"bad hex", `{"tees": {"tdx": {"measurements": {"mrtd": ["xyz"]}}}}`, "not hex"},
		{"empty value list", `{"tees": {"tdx": {"measurements": {"mrtd": []}}}}`, "no values"},
		{"long report data", `{"tees": {"sim": {"allow_any_measurement": true, "report_data": "` + strings.Repeat("00", 65) + `"}}}`, "at most 64"},
		{"empty tcb status", `{"tees": {"intelSgx": {"allow_any_measurement": true, "tcb_statuses": [""]}}}`, "allow_unknown_tcb"},
		{"wrong type", `{"tees": {"sim": {"allow_any_measurement": "yes"}}}`, "cannot unmarshal"},
		{"not JSON", `tees: sim`, "invalid character"},
		// A reviewer reads allow_debug=false; encoding/json alone would apply ALLOW_DEBUG=true.
		{"rule repeated in another case", `{"tees": {"sim": {"allow_any_measurement": true, "allow_debug": false, "ALLOW_DEBUG": true}}}`, "differ only in case"},
		{"rule in another case", `{"tees": {"sim": {"allow_any_measurement": true, "Allow_Debug": true}}}`, `unknown member "Allow_Debug"`},
		{"bad collateral age", `{"tees": {"tdx": {"allow_any_measurement": true, "max_collateral_age": "a month"}}}`, "max_collateral_age"},
		{"zero collateral age", `{"tees": {"tdx": {"allow_any_measurement": true, "max_collateral_age": "0d"}}}`, "positive duration"},
		{"CRLs for sim", `{"tees": {"sim": {"allow_any_measurement": true, "require_crl": true}}}`, "sim evidence has none"},
		{"top-level field in another case", `{"TEES": {"sim": {"allow_any_measurement": true}}}`, `unknown member "TEES"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(`{"tees": {"sim": {"allow_any_measurement": true}}}`))
	f.Add([]byte(`{"tees": {"sim": {"allow_any_measurement": true}, "sim": {}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parsed must still refuse unverified evidence.
		for _, tee := range knownTEEs {
			if p.Check(&attestation.Result{TEE: tee, Verified: false}) == nil {
				t.Fatalf("unverified %s accepted", tee)
			}
		}
	})
}
