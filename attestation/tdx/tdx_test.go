package tdx

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/validate"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

const (
	quoteC0806F    = "tdx/oasis_quote_v4_tdx_fmspc_C0806F000000.bin"
	quoteTrailing  = "tdx/oasis_quote_v4_tdx_trailing70.bin"
	quoteOutOfDate = "tdx/oasis_quote_v4_tdx_fmspc_50806F000000_outofdate.bin"
	quoteSPRE4     = "tdx/gotdx_quote_v4_spr_e4_trailing39.dat"
	quoteV5        = "tdx/gotdx_quote_v5.dat"
	tcbC0806F      = "tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json"
	qe2024         = "tdx/oasis_qeidentity_td_qe_2024-09.json"
	tcb50806F      = "tdx/gotdx_tcbinfo_tdx_v3_fmspc_50806f000000.json"
	qe2023         = "tdx/gotdx_qeidentity_td_qe_2023-06.json"
	tcb90C06F      = "tdx/gotdx_tcbinfo_tdx_v3_fmspc_90c06f000000.json"
	pckCRL         = "tdx/gotdx_pck_crl_platform_2023-06-08.der"
	rootCRL        = "roots/gotdx_intel_sgx_root_ca_crl_2023-04-03.der"
	pckCAChain     = "roots/oasis_intel_pck_platform_ca_chain.pem"
	signingChain   = "sgx/oasis_tcb_signing_chain.pem"
	sgxTCBInfo     = "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"
	sgxQEIdentity  = "sgx/oasis_qeidentity_qe_v2.json"

	mrtdC0806F = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
	mrtdV5     = "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"
)

var (
	atC0806F   = time.Date(2024, 9, 2, 7, 43, 52, 0, time.UTC)
	atTrailing = time.Date(2024, 9, 21, 12, 0, 0, 0, time.UTC)
	atOasisOOD = time.Unix(1687091776, 0) // 2023-06-18T12:36:16Z
	atGoTDX    = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)
	atV5       = time.Date(2026, 2, 3, 1, 0, 0, 0, time.UTC)
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
	zero48 := strings.Repeat("00", 48)
	emptySHA512 := sha512.Sum512(nil)
	tests := []struct {
		name       string
		quote      string
		now        time.Time
		collateral []string
		allowTrail bool

		wantTCB          string
		wantAdvisories   []string
		wantMeasurements map[string]string
		wantDetails      map[string]string
		wantReportData   []byte

		errIs       error
		errContains []string
	}{
		{name: "v4 C0806F without collateral", quote: quoteC0806F, now: atC0806F,
			wantMeasurements: map[string]string{"mrtd": mrtdC0806F, "rtmr3": zero48, "mrsignerseam": zero48},
			wantReportData:   emptySHA512[:],
			wantDetails:      map[string]string{"fmspc": "C0806F000000", "collateral": "none: signatures and PCK chain verified, TCB status not evaluated", "td_attributes": "0000001000000000", "body_type": "2", "quote_version": "4"}},
		{name: "v4 C0806F with collateral: UpToDate", quote: quoteC0806F, now: atC0806F, collateral: []string{tcbC0806F, qe2024, signingChain},
			wantTCB: "UpToDate", wantMeasurements: map[string]string{"mrtd": mrtdC0806F},
			wantDetails: map[string]string{"tcb_date": "2024-03-13T00:00:00Z", "qe_tcb_status": "UpToDate", "qe_svn": "6", "tdx_module_tcb_status": "UpToDate"}},
		// The 70 trailing bytes are zero: buffer padding from the quote generator, accepted by default.
		{name: "v4 with 70 zero bytes of padding: verifies UpToDate", quote: quoteTrailing, now: atTrailing,
			collateral: []string{tcbC0806F, qe2024, signingChain}, wantTCB: "UpToDate",
			wantDetails: map[string]string{"trailing_bytes": "70", "trailing_zero_padding": "true", "fmspc": "C0806F000000"}},
		{name: "v4 50806F without collateral", quote: quoteOutOfDate, now: atOasisOOD,
			wantDetails: map[string]string{"fmspc": "50806F000000", "pcesvn": "11", "qe_svn": "4"}},
		{name: "v4 50806F: no TCB level matches", quote: quoteOutOfDate, now: atOasisOOD, collateral: []string{tcb50806F, qe2023, signingChain},
			errIs: validate.ErrTCBNotSupported},
		{name: "SPR E4 with 39 trailing text bytes: rejected by default", quote: quoteSPRE4, now: atGoTDX, errIs: dcap.ErrTrailingData,
			errContains: []string{"39 bytes after the signature data are not zero padding", "--allow-trailing-data"}},
		{name: "SPR E4 tolerant without collateral", quote: quoteSPRE4, now: atGoTDX, allowTrail: true,
			wantDetails: map[string]string{"fmspc": "50806F000000", "trailing_bytes": "39"}},
		{name: "SPR E4 tolerant: CRLs checked, PCK not revoked", quote: quoteSPRE4, now: atGoTDX, allowTrail: true,
			collateral:  []string{pckCRL, rootCRL, pckCAChain},
			wantDetails: map[string]string{"crl_checked": "Intel SGX PCK Platform CA, Intel SGX Root CA", "pck_serial": "BBA6C175D838B8DF3900CC3411F24F512D104102"}},
		{name: "SPR E4 tolerant with full collateral: no TCB level matches", quote: quoteSPRE4, now: atGoTDX, allowTrail: true,
			collateral: []string{tcb50806F, qe2023, signingChain, pckCRL, rootCRL, pckCAChain}, errIs: validate.ErrTCBNotSupported,
			errContains: []string{"TCB level not supported"}},
		{name: "SPR E4: PCK CRL expired", quote: quoteSPRE4, now: time.Date(2023, 7, 9, 0, 0, 0, 0, time.UTC), allowTrail: true,
			collateral: []string{pckCRL, pckCAChain}, errContains: []string{"CRL of \"Intel SGX PCK Platform CA\"", "expired"}},
		{name: "v5 without collateral", quote: quoteV5, now: atV5,
			wantMeasurements: map[string]string{"mrtd": mrtdV5},
			wantDetails:      map[string]string{"fmspc": "90C06F000000", "body_type": "3", "quote_version": "5"}},
		{name: "v5 with TCB info: TCB signing certificate expired in 2025", quote: quoteV5, now: atV5,
			collateral: []string{tcb90C06F, signingChain}, errContains: []string{"TCB info (TDX, FMSPC 90C06F000000)", "expired"}},
		{name: "v4 with SGX collateral only: not evaluated", quote: quoteC0806F, now: atC0806F,
			collateral:  []string{sgxTCBInfo, sgxQEIdentity, signingChain},
			wantDetails: map[string]string{"collateral": "no TDX TCB info for FMSPC C0806F000000 and no TD_QE identity: TCB status not evaluated"}},
		{name: "v4 with TCB info from another FMSPC", quote: quoteC0806F, now: atC0806F,
			collateral:  []string{tcb50806F, signingChain},
			wantDetails: map[string]string{"collateral": "no TDX TCB info for FMSPC C0806F000000 and no TD_QE identity: TCB status not evaluated"}},
		{name: "v4 with TDX TCB info but only an SGX QE identity", quote: quoteC0806F, now: atC0806F,
			collateral:  []string{tcbC0806F, sgxQEIdentity, signingChain},
			wantDetails: map[string]string{"collateral": "incomplete: TDX TCB info for FMSPC C0806F000000 (issued 2024-09-02T07:25:12Z) verified, but no TD_QE identity: TCB status not decided"}},
		{name: "v4 TD-QE identity expired", quote: quoteC0806F, now: atC0806F.AddDate(0, 1, 0),
			collateral: []string{tcbC0806F, qe2024, signingChain}, errContains: []string{"QE identity (TD_QE)", "expired"}},
		{name: "v4 TCB info from a wrong issuer", quote: quoteC0806F, now: atC0806F,
			collateral: []string{tcbC0806F, qe2024, pckCAChain}, errContains: []string{"no Intel SGX TCB Signing certificate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := attestation.Options{Now: tc.now, Collateral: samples(t, tc.collateral...), AllowTrailingData: tc.allowTrail}
			res, err := Verifier{}.Verify(context.Background(), sample(t, tc.quote), opts)
			if tc.errIs != nil || tc.errContains != nil {
				if err == nil {
					t.Fatalf("verified, want error (TCB %q, details %v)", res.TCBStatus, res.Details)
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
			if !res.Verified || res.TEE != attestation.TDX || res.Debug {
				t.Errorf("Verified=%v TEE=%q Debug=%v", res.Verified, res.TEE, res.Debug)
			}
			if res.TCBStatus != tc.wantTCB {
				t.Errorf("TCBStatus %q, want %q", res.TCBStatus, tc.wantTCB)
			}
			if !slices.Equal(res.Advisories, tc.wantAdvisories) {
				t.Errorf("Advisories %v, want %v", res.Advisories, tc.wantAdvisories)
			}
			for _, k := range []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner", "mrownerconfig", "mrseam", "mrsignerseam"} {
				if len(res.Measurements[k]) != 96 {
					t.Errorf("measurement %s = %q", k, res.Measurements[k])
				}
			}
			if _, ok := res.Measurements["mrservicetd"]; ok != (tc.quote == quoteV5) {
				t.Errorf("mrservicetd present=%v for %s", ok, tc.quote)
			}
			for k, v := range tc.wantMeasurements {
				if res.Measurements[k] != v {
					t.Errorf("Measurements[%q] = %q, want %q", k, res.Measurements[k], v)
				}
			}
			for k, v := range tc.wantDetails {
				if res.Details[k] != v {
					t.Errorf("Details[%q] = %q, want %q", k, res.Details[k], v)
				}
			}
			if tc.wantReportData != nil && !bytes.Equal(res.ReportData, tc.wantReportData) {
				t.Errorf("ReportData %x, want %x", res.ReportData, tc.wantReportData)
			}
		})
	}
}

func TestParseQuoteFields(t *testing.T) {
	q, err := ParseQuote(sample(t, quoteC0806F), false)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(q.Report.TEETCBSVN[:3]) != "050107" || q.Report.Version15 || len(q.Signed) != abi.HeaderSize+TDReport10Size {
		t.Errorf("TEE_TCB_SVN %x, v1.5 %v, signed %d", q.Report.TEETCBSVN, q.Report.Version15, len(q.Signed))
	}
	v5, err := ParseQuote(sample(t, quoteV5), false)
	if err != nil {
		t.Fatal(err)
	}
	if v5.BodyType != BodyTypeTDReport15 || !v5.Report.Version15 || len(v5.Signed) != abi.HeaderSize+6+TDReport15Size {
		t.Errorf("v5 body type %d v1.5 %v signed %d", v5.BodyType, v5.Report.Version15, len(v5.Signed))
	}
	if hex.EncodeToString(v5.Report.TEETCBSVN[:3]) != "0b0104" || hex.EncodeToString(v5.Report.TEETCBSVN2[:3]) != "0d0104" {
		t.Errorf("v5 TEE_TCB_SVN %x TEE_TCB_SVN2 %x", v5.Report.TEETCBSVN, v5.Report.TEETCBSVN2)
	}
	trailing, err := ParseQuote(sample(t, quoteSPRE4), true)
	if err != nil || trailing.Trailing != 39 {
		t.Fatalf("SPR E4: trailing %v, %v", trailing, err)
	}
	if !bytes.HasPrefix(sample(t, quoteSPRE4), sample(t, quoteOutOfDate)) {
		t.Error("README: the SPR E4 quote is the 50806F quote plus trailing bytes")
	}
}

func TestParseQuoteRejects(t *testing.T) {
	v4 := sample(t, quoteC0806F)
	v5 := sample(t, quoteV5)
	mutate := func(b []byte, f func(b []byte)) []byte { b = bytes.Clone(b); f(b); return b }
	tests := []struct {
		name  string
		quote []byte
		want  string
	}{
		{"empty", nil, "quote header"},
		{"version 3", mutate(v4, func(b []byte) { b[0] = 3 }), "version 3"},
		{"SGX TEE type", mutate(v4, func(b []byte) { b[4] = 0 }), "TEE type 0"},
		{"attestation key type 3", mutate(v4, func(b []byte) { b[2] = 3 }), "attestation key type 3"},
		{"v4 truncated body", v4[:600], "at least"},
		{"v4 signature length beyond end", mutate(v4, func(b []byte) { b[632+2] = 0x10 }), "exceeds"},
		{"v4 wrong outer certification type", mutate(v4, func(b []byte) { b[636+128] = 5 }), "want 6"},
		{"v4 inner size mismatch", mutate(v4, func(b []byte) { b[636+128+2] ^= 0x01 }), "certification data"},
		{"v5 SGX body type", mutate(v5, func(b []byte) { b[48] = 1 }), "not a TD report"},
		{"v5 unknown body type", mutate(v5, func(b []byte) { b[48] = 9 }), "not a TD report"},
		{"v5 body size mismatch", mutate(v5, func(b []byte) { b[50] = 0x48 }), "has size"},
		{"v5 body type 2 with 1.5 size", mutate(v5, func(b []byte) { b[48] = 2 }), "has size 648, want 584"},
		{"v5 truncated descriptor", v5[:50], "body descriptor"},
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

// TestByteFlips flips sampled bytes in every region of v4 and v5 quotes and of the TDX collateral
// JSON; every flip must make verification fail.
func TestByteFlips(t *testing.T) {
	type region struct {
		name       string
		start, end int
	}
	layout := func(bodyEnd, total int) []region {
		sd := bodyEnd + 4
		qe := sd + 128 + 6 // inside certification data type 6
		return []region{
			{"header", 0, abi.HeaderSize},
			{"body", abi.HeaderSize, bodyEnd},
			{"signature data length", bodyEnd, sd},
			{"quote signature", sd, sd + 64},
			{"attestation key", sd + 64, sd + 128},
			{"certification data header", sd + 128, qe},
			{"QE report", qe, qe + 384},
			{"QE report signature", qe + 384, qe + 448},
			{"QE auth data", qe + 448, qe + 482},
			{"PCK certification data", qe + 482, total},
		}
	}
	cases := []struct {
		name       string
		quote      []byte
		opts       attestation.Options
		regions    []region
		collateral map[int]string // JSON collateral to flip: index in opts.Collateral → name
	}{
		{name: "v4", quote: sample(t, quoteC0806F),
			opts:       attestation.Options{Now: atC0806F, Collateral: samples(t, tcbC0806F, qe2024, signingChain)},
			collateral: map[int]string{0: "TCB info JSON", 1: "TD-QE identity JSON"}},
		{name: "v5", quote: sample(t, quoteV5), opts: attestation.Options{Now: atV5}},
	}
	cases[0].regions = layout(abi.HeaderSize+TDReport10Size, len(cases[0].quote))
	cases[1].regions = append([]region{{"v5 body descriptor", abi.HeaderSize, abi.HeaderSize + 6}},
		layout(abi.HeaderSize+6+TDReport15Size, len(cases[1].quote))...)
	ctx := context.Background()
	for _, c := range cases {
		if _, err := (Verifier{}).Verify(ctx, c.quote, c.opts); err != nil {
			t.Fatalf("%s: unmodified sample must verify: %v", c.name, err)
		}
		for _, r := range c.regions {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				for _, pos := range positions(r.start, r.end, 16) {
					flipped := bytes.Clone(c.quote)
					flipped[pos] ^= 0x01
					if res, err := (Verifier{}).Verify(ctx, flipped, c.opts); err == nil {
						t.Fatalf("flip at offset %d verified (TCB %q)", pos, res.TCBStatus)
					}
				}
			})
		}
		for i, name := range c.collateral {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				file := c.opts.Collateral[i]
				for _, pos := range positions(0, len(file), 40) {
					col := slices.Clone(c.opts.Collateral)
					col[i] = bytes.Clone(file)
					col[i][pos] ^= 0x01
					opts := c.opts
					opts.Collateral = col
					// A flip either breaks a signature or makes the file name another platform
					// or QE (a TCB info for another FMSPC): then the status is left undecided,
					// which no policy that needs a TCB status accepts. It never yields a status.
					if res, err := (Verifier{}).Verify(ctx, c.quote, opts); err == nil && (res.TCBStatus != "" || !strings.HasPrefix(res.Details["collateral"], "incomplete")) {
						t.Fatalf("flip at offset %d (%q) verified (TCB %q, collateral %q)", pos, file[pos], res.TCBStatus, res.Details["collateral"])
					}
				}
			})
		}
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
	for _, f := range []string{quoteC0806F, quoteV5, quoteSPRE4} {
		b := sample(t, f)
		if !(Verifier{}).Match(b) {
			t.Errorf("Match rejected %s", f)
		}
		if v, err := attestation.Detect(b); err != nil || v.TEE() != attestation.TDX {
			t.Errorf("Detect(%s): %v, %v", f, v, err)
		}
	}
	if (Verifier{}).Match(sample(t, "sgx/oasis_quote_v3_pck_chain.bin")) {
		t.Error("Match accepted an SGX quote")
	}
}

func FuzzParseQuote(f *testing.F) {
	for _, s := range []string{quoteC0806F, quoteV5, quoteSPRE4} {
		f.Add(sample(f, s))
	}
	f.Add(sample(f, quoteV5)[:700])
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuote(b, true)
		if err != nil {
			return
		}
		want := abi.HeaderSize + TDReport10Size
		if q.Header.Version == QuoteVersion5 {
			want = abi.HeaderSize + 6 + TDReport10Size
			if q.Report.Version15 {
				want = abi.HeaderSize + 6 + TDReport15Size
			}
		}
		if len(q.Signed) != want || q.Signature.QEReport == nil {
			t.Fatalf("inconsistent parse: signed %d bytes, want %d", len(q.Signed), want)
		}
		_, _ = q.Signature.Certification.PCKChain()
	})
}
