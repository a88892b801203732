package sgx

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/verify"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// Pinned times from the samples' README.
var (
	pinned           = time.Unix(1671497404, 0) // 2022-12-20T00:50:04Z
	pckExpired       = time.Unix(1891163522, 0) // 2029-12-05T11:12:02Z
	pckNotYetValid   = time.Unix(1670238720, 0) // 2022-12-05T11:12:00Z
	qeIdentityFuture = time.Unix(1671194735, 0) // 2022-12-16T12:45:35Z
	qeIdentityExpiry = time.Unix(1673786737, 0) // 2023-01-15T12:45:37Z
)

const (
	quoteFile     = "sgx/oasis_quote_v3_pck_chain.bin"
	eppidFile     = "sgx/oasis_quote_v3_encrypted_ppid.bin"
	tcbInfoFile   = "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"
	qeIDFile      = "sgx/oasis_qeidentity_qe_v2.json"
	signingChain  = "sgx/oasis_tcb_signing_chain.pem"
	pckCAChain    = "roots/oasis_intel_pck_platform_ca_chain.pem"
	rootCRLFile   = "roots/gotdx_intel_sgx_root_ca_crl_2023-04-03.der"
	snpVCEKFile   = "sev-snp/gosev_vcek_milan.der"
	amdChainFile  = "roots/amd_ask_ark_milan.pem"
	tdQEIdentity  = "tdx/oasis_qeidentity_td_qe_2024-09.json"
	tdxTCBInfo    = "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json"
	wantMREnclave = "68823bc62f409ee33a32ea270cfe45d4b19a6fb3c8570d7bc186cbe062398e8f"
	wantMRSigner  = "9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a"
)

func sample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

func samples(t testing.TB, rels ...string) [][]byte {
	var out [][]byte
	for _, r := range rels {
		out = append(out, sample(t, r))
	}
	return out
}

func TestVerifySamples(t *testing.T) {
	full := []string{tcbInfoFile, qeIDFile, signingChain}
	tests := []struct {
		name       string
		quote      []byte
		now        time.Time
		collateral []string
		allowTrail bool
		// On success:
		wantTCB        string
		wantAdvisories []string
		wantDetails    map[string]string
		// On failure: errIs and/or every errContains substring.
		errIs       error
		errContains []string
	}{
		{name: "no collateral: signatures and chain only", quote: sample(t, quoteFile), now: pinned,
			wantDetails: map[string]string{"collateral": "none: signatures and PCK chain verified, TCB status not evaluated", "fmspc": "00606A000000", "pceid": "0000", "pck_ca": "platform", "qe_svn": "9", "pcesvn": "13"}},
		{name: "full collateral: SWHardeningNeeded", quote: sample(t, quoteFile), now: pinned, collateral: full,
			wantTCB: "SWHardeningNeeded", wantAdvisories: []string{"INTEL-SA-00615", "INTEL-SA-00657"},
			wantDetails: map[string]string{"qe_tcb_status": "UpToDate", "platform_tcb_status": "SWHardeningNeeded", "tcb_date": "2022-08-10T00:00:00Z", "tcb_evaluation_data_number": "13", "crl_checked": "none"}},
		{name: "collateral for other TEEs only is not a TCB decision", quote: sample(t, quoteFile), now: pinned,
			collateral:  []string{snpVCEKFile, amdChainFile, tdQEIdentity, tdxTCBInfo, signingChain},
			wantDetails: map[string]string{"collateral": "no SGX TCB info for FMSPC 00606A000000 and no QE identity: TCB status not evaluated"}},
		// Its PCK certificate is not public: without it the QE report signature cannot be checked.
		{name: "encrypted PPID certification data, no PCK certificate", quote: sample(t, eppidFile), now: pinned, collateral: full,
			errIs: dcap.ErrNoPCKCertificate, errContains: []string{"PPID encrypted with RSA-3072", "pass the platform's PCK certificate"}},
		{name: "PCK certificate expired", quote: sample(t, quoteFile), now: pckExpired, collateral: full,
			errContains: []string{"PCK chain", "expired"}},
		{name: "PCK certificate not yet valid", quote: sample(t, quoteFile), now: pckNotYetValid,
			errContains: []string{"PCK chain", "not yet valid"}},
		{name: "QE identity issued in the future", quote: sample(t, quoteFile), now: qeIdentityFuture, collateral: full,
			errContains: []string{"QE identity (QE)", "issued in the future"}},
		{name: "QE identity expired", quote: sample(t, quoteFile), now: qeIdentityExpiry, collateral: full,
			errContains: []string{"QE identity (QE)", "expired"}},
		{name: "TCB info signed by the wrong issuer chain", quote: sample(t, quoteFile), now: pinned,
			collateral: []string{tcbInfoFile, qeIDFile, pckCAChain}, errIs: verify.ErrNoTCBSigningCertificate},
		{name: "TCB info without QE identity", quote: sample(t, quoteFile), now: pinned,
			collateral:  []string{tcbInfoFile, signingChain},
			wantDetails: map[string]string{"collateral": "incomplete: SGX TCB info for FMSPC 00606A000000 (issued 2022-12-19T09:40:10Z) verified, but no QE identity: TCB status not decided"}},
		{name: "QE identity without TCB info", quote: sample(t, quoteFile), now: pinned,
			collateral:  []string{qeIDFile, signingChain},
			wantDetails: map[string]string{"collateral": "incomplete: QE identity (issued 2022-12-16T12:45:36Z) verified, but no SGX TCB info for FMSPC 00606A000000: TCB status not decided"}},
		{name: "root CRL not yet valid at the pinned time", quote: sample(t, quoteFile), now: pinned,
			collateral: []string{tcbInfoFile, qeIDFile, signingChain, rootCRLFile}, errContains: []string{"CRL of \"Intel SGX Root CA\"", "not yet valid"}},
		// Quote tools write into fixed-size buffers: zero padding is accepted and reported.
		{name: "zero padding accepted by default", quote: append(sample(t, quoteFile), 0, 0, 0), now: pinned, collateral: full,
			wantTCB: "SWHardeningNeeded", wantAdvisories: []string{"INTEL-SA-00615", "INTEL-SA-00657"},
			wantDetails: map[string]string{"trailing_bytes": "3", "trailing_zero_padding": "true"}},
		{name: "non-zero trailing bytes rejected by default, naming the switch", quote: append(sample(t, quoteFile), 0, 1, 0), now: pinned,
			errIs: dcap.ErrTrailingData, errContains: []string{"not zero padding", "--allow-trailing-data"}},
		{name: "non-zero trailing bytes tolerated when allowed", quote: append(sample(t, quoteFile), 0, 1, 0), now: pinned, collateral: full, allowTrail: true,
			wantTCB: "SWHardeningNeeded", wantAdvisories: []string{"INTEL-SA-00615", "INTEL-SA-00657"},
			wantDetails: map[string]string{"trailing_bytes": "3", "trailing_zero_padding": "false"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := attestation.Options{Now: tc.now, Collateral: samples(t, tc.collateral...), AllowTrailingData: tc.allowTrail}
			res, err := Verifier{}.Verify(context.Background(), tc.quote, opts)
			if tc.errIs != nil || tc.errContains != nil {
				if err == nil {
					t.Fatalf("verified, want error (result %+v)", res)
				}
				if tc.errIs != nil && !errors.Is(err, tc.errIs) {
					t.Errorf("error %q is not %v", err, tc.errIs)
				}
				for _, s := range tc.errContains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkSGXSample(t, res)
			if res.TCBStatus != tc.wantTCB {
				t.Errorf("TCBStatus %q, want %q", res.TCBStatus, tc.wantTCB)
			}
			if !slices.Equal(res.Advisories, tc.wantAdvisories) {
				t.Errorf("Advisories %v, want %v", res.Advisories, tc.wantAdvisories)
			}
			for k, v := range tc.wantDetails {
				if res.Details[k] != v {
					t.Errorf("Details[%q] = %q, want %q", k, res.Details[k], v)
				}
			}
		})
	}
}

// checkSGXSample checks what the README states about the SGX sample's enclave.
func checkSGXSample(t *testing.T, res *attestation.Result) {
	t.Helper()
	if !res.Verified || res.TEE != attestation.SGX {
		t.Errorf("Verified=%v TEE=%q", res.Verified, res.TEE)
	}
	if res.Measurements["mrenclave"] != wantMREnclave || res.Measurements["mrsigner"] != wantMRSigner || res.Signer != wantMRSigner {
		t.Errorf("measurements %v signer %s", res.Measurements, res.Signer)
	}
	if res.ProductID == nil || *res.ProductID != 0 || res.SVN == nil || *res.SVN != 0 {
		t.Errorf("ProductID %v SVN %v, want 0 and 0", res.ProductID, res.SVN)
	}
	if res.Debug {
		t.Error("Debug = true, the sample's ATTRIBUTES flags are 05 (INIT|MODE64BIT)")
	}
	if len(res.ReportData) != attestation.ReportDataSize {
		t.Errorf("ReportData is %d bytes", len(res.ReportData))
	}
	if !strings.HasPrefix(res.Details["attributes"], "05") {
		t.Errorf("attributes %s", res.Details["attributes"])
	}
}

func TestParseQuoteFields(t *testing.T) {
	q, err := ParseQuote(sample(t, quoteFile), false)
	if err != nil {
		t.Fatal(err)
	}
	if q.Header.QESVN != 9 || q.Header.PCESVN != 13 || q.Header.QEVendorID != abi.IntelQEVendorID {
		t.Errorf("header %+v", q.Header)
	}
	if len(q.Signature.QEAuthData) != 32 || q.Signature.Certification.Type != abi.CertDataPCKCertChain || len(q.Signature.Certification.Data) != 3678 {
		t.Errorf("auth data %d bytes, certification type %d size %d", len(q.Signature.QEAuthData), q.Signature.Certification.Type, len(q.Signature.Certification.Data))
	}
	if q.Report.XFRM() != 3 || q.Report.Flags() != 5 {
		t.Errorf("flags %#x xfrm %#x", q.Report.Flags(), q.Report.XFRM())
	}
	e, err := ParseQuote(sample(t, eppidFile), false)
	if err != nil {
		t.Fatal(err)
	}
	if e.Signature.Certification.Type != abi.CertDataPPIDRSA3072 || len(e.Signature.Certification.Data) != 404 {
		t.Errorf("encrypted PPID certification data type %d size %d", e.Signature.Certification.Type, len(e.Signature.Certification.Data))
	}
}

func TestParseQuoteRejects(t *testing.T) {
	good := sample(t, quoteFile)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		quote []byte
		want  string
	}{
		{"empty", nil, "quote header"},
		{"truncated header", good[:40], "quote header"},
		{"version 4", mutate(func(b []byte) []byte { b[0] = 4; return b }), "version 4"},
		{"RSA attestation key", mutate(func(b []byte) []byte { b[2] = 1; return b }), "attestation key type 1"},
		{"TDX TEE type", mutate(func(b []byte) []byte { b[4] = 0x81; return b }), "TEE type 0x81"},
		{"truncated body", good[:400], "at least"},
		{"signature length too large", mutate(func(b []byte) []byte { b[432+3] = 0xff; return b }), "exceeds"},
		{"truncated signature data", good[:len(good)-10], "exceeds"},
		{"QE auth data size beyond end", mutate(func(b []byte) []byte { b[436+576] = 0xff; b[436+577] = 0xff; return b }), "QE auth data"},
		{"certification data size beyond end", mutate(func(b []byte) []byte { b[436+610+2+3] = 0x7f; return b }), "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseQuote(tc.quote, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestByteFlips flips bytes across every region the signatures cover and checks each flip makes
// verification fail. Positions are sampled with a stride (first and last byte of each region
// always) to keep the test quick.
func TestByteFlips(t *testing.T) {
	quote := sample(t, quoteFile)
	col := samples(t, tcbInfoFile, qeIDFile, signingChain)
	opts := attestation.Options{Now: pinned, Collateral: col}
	if _, err := (Verifier{}).Verify(context.Background(), quote, opts); err != nil {
		t.Fatalf("unmodified sample must verify: %v", err)
	}
	const sd = signedSize + 4 // signature data start
	regions := []struct {
		name       string
		start, end int
	}{
		{"quote header", 0, abi.HeaderSize},
		{"ISV enclave report body", abi.HeaderSize, signedSize},
		{"signature data length", signedSize, sd},
		{"quote signature", sd, sd + 64},
		{"attestation key", sd + 64, sd + 128},
		{"QE report", sd + 128, sd + 512},
		{"QE report signature", sd + 512, sd + 576},
		{"QE auth data", sd + 576, sd + 610},
		{"PCK certification data", sd + 610, len(quote)},
	}
	for _, r := range regions {
		t.Run("quote/"+r.name, func(t *testing.T) {
			for _, pos := range positions(r.start, r.end, 24) {
				flipped := bytes.Clone(quote)
				flipped[pos] ^= 0x01
				if res, err := (Verifier{}).Verify(context.Background(), flipped, opts); err == nil {
					t.Fatalf("flip at offset %d verified: %+v", pos, res)
				}
			}
		})
	}
	for i, name := range []string{"TCB info JSON", "QE identity JSON"} {
		t.Run("collateral/"+name, func(t *testing.T) {
			file := col[i]
			for _, pos := range positions(0, len(file), 48) {
				if file[pos] == ' ' || file[pos] == '\n' || file[pos] == '\r' {
					continue // whitespace outside the signed value is not signed
				}
				flippedCol := slices.Clone(col)
				flippedCol[i] = bytes.Clone(file)
				flippedCol[i][pos] ^= 0x01
				if res, err := (Verifier{}).Verify(context.Background(), quote, attestation.Options{Now: pinned, Collateral: flippedCol}); err == nil {
					t.Fatalf("flip at offset %d (%q) verified: %s %v", pos, file[pos], res.TCBStatus, res.Details)
				}
			}
		})
	}
}

func positions(start, end, n int) []int {
	if end-start <= n {
		var all []int
		for i := start; i < end; i++ {
			all = append(all, i)
		}
		return all
	}
	out := []int{start, end - 1}
	step := (end - start) / n
	for i := start + step; i < end-1; i += step {
		out = append(out, i)
	}
	return out
}

func TestMatchAndRegistry(t *testing.T) {
	quote := sample(t, quoteFile)
	if !(Verifier{}).Match(quote) {
		t.Fatal("Match rejected the SGX v3 sample")
	}
	tdxQuote := sample(t, "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin")
	for name, b := range map[string][]byte{"TDX v4 quote": tdxQuote, "short": quote[:10], "SNP report": sample(t, "sev-snp/gosev_report_v2_milan.bin")} {
		if (Verifier{}).Match(b) {
			t.Errorf("Match accepted %s", name)
		}
	}
	v, err := attestation.Detect(quote)
	if err != nil || v.TEE() != attestation.SGX {
		t.Fatalf("Detect: %v, %v", v, err)
	}
	res, err := attestation.Verify(context.Background(), quote, attestation.Options{Now: pinned})
	if err != nil || !res.Verified {
		t.Fatalf("attestation.Verify: %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Verifier{}).Verify(ctx, sample(t, quoteFile), attestation.Options{Now: pinned}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func FuzzParseQuote(f *testing.F) {
	f.Add(sample(f, quoteFile))
	f.Add(sample(f, eppidFile))
	f.Add(sample(f, quoteFile)[:600])
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuote(b, true)
		if err != nil {
			return
		}
		// A parsed quote's pieces must be consistent with its bytes.
		if len(q.Signed) != signedSize || q.Signature.QEReport == nil || len(q.Signature.QEReportRaw) != abi.EnclaveReportSize {
			t.Fatalf("inconsistent parse: signed %d bytes", len(q.Signed))
		}
		_, _ = q.Signature.Certification.PCKChain()
	})
}

// BenchmarkVerifySGXv3 does every check every time (the verification memo off): a verifier that
// sees this platform for the first time.
func BenchmarkVerifySGXv3(b *testing.B) {
	benchmarkVerify(b, false)
}

func BenchmarkVerifySGXv3NoCollateral(b *testing.B) {
	dcap.CacheVerifications(false)
	defer dcap.CacheVerifications(true)
	quote := sample(b, quoteFile)
	opts := attestation.Options{Now: pinned}
	ctx := context.Background()
	for b.Loop() {
		if _, err := (Verifier{}).Verify(ctx, quote, opts); err != nil {
			b.Fatal(err)
		}
	}
}
