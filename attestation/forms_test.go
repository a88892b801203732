package attestation_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	_ "github.com/inclavare-containers/inclavare-go/attestation/sgx"
	_ "github.com/inclavare-containers/inclavare-go/attestation/snp"
	_ "github.com/inclavare-containers/inclavare-go/attestation/tdx"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

func sample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

// wrap folds s into lines of 64 characters, as tools print base64 and hex.
func wrap(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	return b.String() + s + "\n"
}

func oeReportHeader(quote []byte) []byte {
	h := make([]byte, 16, 16+len(quote))
	binary.LittleEndian.PutUint32(h, 1)
	binary.LittleEndian.PutUint32(h[4:], 2)
	binary.LittleEndian.PutUint64(h[8:], uint64(len(quote)))
	return append(h, quote...)
}

func TestUnwrapForms(t *testing.T) {
	sgxQuote := sample(t, "sgx/oasis_quote_v3_pck_chain.bin")
	tdxPadded := sample(t, "tdx/oasis_quote_v4_tdx_trailing70.bin")
	snpReport := sample(t, "sev-snp/gosev_report_v2_milan.bin")
	for _, tc := range []struct {
		name  string
		in    []byte
		raw   []byte
		forms string
	}{
		{"binary SGX quote", sgxQuote, sgxQuote, "binary"},
		{"hex, folded", []byte(wrap(hex.EncodeToString(sgxQuote))), sgxQuote, "hex"},
		{"upper-case hex", []byte(strings.ToUpper(hex.EncodeToString(sgxQuote))), sgxQuote, "hex"},
		{"base64, folded", []byte(wrap(base64.StdEncoding.EncodeToString(sgxQuote))), sgxQuote, "base64"},
		{"base64url without padding", []byte(base64.RawURLEncoding.EncodeToString(tdxPadded)), tdxPadded, "base64"},
		{"PEM", pem.EncodeToMemory(&pem.Block{Type: "SGX QUOTE", Bytes: sgxQuote}), sgxQuote, "pem"},
		{"Open Enclave report header", oeReportHeader(sgxQuote), sgxQuote, "binary+oe-report-header"},
		{"Open Enclave report header in base64", []byte(base64.StdEncoding.EncodeToString(oeReportHeader(sgxQuote))), sgxQuote, "base64+oe-report-header"},
		{"SNP report in hex", []byte(hex.EncodeToString(snpReport)), snpReport, "hex"},
		// Not unwrapped: a certificate is an RA-TLS certificate, not evidence; a header whose size
		// does not match; text that decodes to something no verifier knows.
		{"PEM certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sgxQuote}), nil, ""},
		{"OE header with a wrong size", append(oeReportHeader(sgxQuote), 0), nil, ""},
		{"hex of something else", []byte(hex.EncodeToString([]byte("not evidence at all"))), nil, ""},
		{"odd hex", []byte(hex.EncodeToString(sgxQuote) + "0"), nil, ""},
		{"garbage", []byte("tees: sim"), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, forms := attestation.Unwrap(tc.in)
			if got := strings.Join(forms, "+"); got != tc.forms {
				t.Fatalf("forms %q, want %q", got, tc.forms)
			}
			want := tc.raw
			if want == nil {
				want = tc.in // unrecognised input comes back unchanged
			}
			if !bytes.Equal(raw, want) {
				t.Fatalf("unwrapped %d bytes, want %d", len(raw), len(want))
			}
		})
	}
}

// TestVerifyReportsForm: the library's Verify unwraps and names the form in the result.
func TestVerifyReportsForm(t *testing.T) {
	q := sample(t, "sgx/oasis_quote_v3_pck_chain.bin")
	at := time.Date(2022, 12, 20, 0, 50, 4, 0, time.UTC)
	res, err := attestation.Verify(context.Background(), []byte(base64.StdEncoding.EncodeToString(oeReportHeader(q))), attestation.Options{Now: at})
	if err != nil {
		t.Fatal(err)
	}
	if res.TEE != attestation.SGX || res.Details["evidence_form"] != "base64+oe-report-header" {
		t.Fatalf("tee %s, form %q", res.TEE, res.Details["evidence_form"])
	}
	if _, err := attestation.Verify(context.Background(), []byte("no evidence"), attestation.Options{Now: at}); !errors.Is(err, attestation.ErrUnknownFormat) {
		t.Fatalf("garbage: %v", err)
	}
}

// FuzzUnwrap: Unwrap never panics, and whatever form it reports yields evidence a verifier
// recognises.
func FuzzUnwrap(f *testing.F) {
	q := sample(f, "sgx/oasis_quote_v3_pck_chain.bin")
	f.Add(q)
	f.Add([]byte(hex.EncodeToString(q[:200])))
	f.Add([]byte(base64.StdEncoding.EncodeToString(oeReportHeader(q))))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "QUOTE", Bytes: q[:100]}))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, forms := attestation.Unwrap(b)
		if len(forms) == 0 {
			if !bytes.Equal(raw, b) {
				t.Fatal("unrecognised input changed")
			}
			return
		}
		if _, err := attestation.Detect(raw); err != nil {
			t.Fatalf("forms %v but no verifier recognises the result: %v", forms, err)
		}
	})
}
