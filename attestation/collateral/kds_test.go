package collateral

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/collateral/pcstest"
	_ "github.com/inclavare-containers/inclavare-go/attestation/snp"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// kdsPath is where AMD KDS serves vcek: built from the certificate's own KDS extensions (hwID and
// SPLs), independently of how the client reads the report.
func kdsPath(t *testing.T, line string, vcek *x509.Certificate) string {
	t.Helper()
	q := url.Values{}
	var hwID []byte
	names := map[int]string{1: "blSPL", 2: "teeSPL", 3: "snpSPL", 8: "ucodeSPL", 9: "fmcSPL"}
	for _, e := range vcek.Extensions {
		id := e.Id
		switch {
		case id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 4}):
			hwID = e.Value
			var inner []byte // Turin's hwID is DER-wrapped
			if rest, err := asn1.Unmarshal(e.Value, &inner); err == nil && len(rest) == 0 {
				hwID = inner
			}
		case len(id) == 10 && asn1.ObjectIdentifier(id[:9]).Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3}):
			var v int
			if _, err := asn1.Unmarshal(e.Value, &v); err != nil {
				t.Fatal(err)
			}
			if n, ok := names[id[9]]; ok {
				q.Set(n, fmt.Sprint(v))
			}
		}
	}
	return "/vcek/v1/" + line + "/" + hex.EncodeToString(hwID) + "?" + q.Encode()
}

func certOf(t *testing.T, rel string) *x509.Certificate {
	t.Helper()
	b := testdata.ReadAttestation(t, rel)
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKDSFetchVerify: SNP reports verified with the VCEK fetched from a stand-in for AMD KDS
// (pcstest on loopback, serving the real VCEKs of the test data at KDS's paths): a Milan v2
// report, which does not name its line (Milan is tried first, Genoa's path is never needed),
// and a Turin v5 report (8-byte hwID, fmcSPL). The stand-in has no recorded AMD CRL: a 404 leaves
// revocation unchecked (crl_checked=false), other failures are errors.
func TestKDSFetchVerify(t *testing.T) {
	for _, tc := range []struct {
		report, vcek, line string
		at                 time.Time
	}{
		{"sev-snp/gosev_report_v2_milan.bin", "sev-snp/gosev_vcek_milan.der", "Milan", time.Date(2022, 9, 24, 1, 0, 0, 0, time.UTC)},
		{"sev-snp/ms_report_v5_turin.bin", "sev-snp/ms_vcek_turin.pem", "Turin", time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.line, func(t *testing.T) {
			vcek := certOf(t, tc.vcek)
			path := kdsPath(t, tc.line, vcek)
			srv := pcstest.New(t, map[string]pcstest.Doc{path: {Body: vcek.Raw}})
			src := &AMD{BaseURL: srv.URL, Fetcher: Fetcher{Client: srv.Client(), Cache: &Cache{Dir: t.TempDir()}}}
			opts := attestation.Options{Now: tc.at, Source: src}
			res, err := attestation.Verify(context.Background(), testdata.ReadAttestation(t, tc.report), opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.TEE != attestation.SNP || res.Details["crl_checked"] != "false" || res.Collateral.Source != attestation.SourceVerifier {
				t.Fatalf("result %v %+v", res.Details, res.Collateral)
			}
			want := []string{path, "/vcek/v1/" + tc.line + "/crl"}
			if got := srv.Requests(); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("requests %v, want %v", got, want)
			}
			// Offline from the cache.
			src.Offline = true
			if _, err := attestation.Verify(context.Background(), testdata.ReadAttestation(t, tc.report), opts); err != nil {
				t.Fatalf("offline: %v", err)
			}
			// A service failure other than 404 is an error naming the URL.
			src.Offline = false
			src.Cache = nil
			srv.Set("/vcek/v1/"+tc.line+"/crl", pcstest.Doc{Body: []byte("not a CRL")})
			if _, err := attestation.Verify(context.Background(), testdata.ReadAttestation(t, tc.report), opts); err == nil || !strings.Contains(err.Error(), "/crl") {
				t.Fatalf("broken CRL: %v", err)
			}
		})
	}
}
