package enclavetls

import (
	"context"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Legacy sgx-ra-tls certificates from rats-tls (see the testdata README): the quote must verify
// to the Intel root and REPORTDATA[0:32] must be SHA-256 of the PKCS#1 RSAPublicKey.
func TestLegacyCertificates(t *testing.T) {
	for _, tc := range []struct {
		file, mrenclave string
	}{
		{"ratls_legacy_sgx_ecdsa_rsa_sha1.pem", "144e81488fc3d59ddbe69b03bd939a3b938d85b6a7c9897e2b09808ade956574"},
		{"ratls_legacy_sgx_ecdsa_rsa_sha256.pem", "d74f2eb87fa3c64c40d16e35a6f8d3259e3dd931a0bcce0637e33ada67df0b52"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cert := legacyCert(t, tc.file)
			p, err := VerifyCertificate(context.Background(), cert, attestation.Options{Now: legacyTime}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.Format != FormatLegacy || p.Result.TEE != attestation.SGX || p.Result.Measurements["mrenclave"] != tc.mrenclave ||
				p.Result.Signer != "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e" || p.Result.TCBStatus != "" {
				t.Fatalf("unexpected result %+v %+v", p, p.Result)
			}
			if _, err := VerifyCertificate(context.Background(), cert, attestation.Options{Now: legacyTime}, []byte("nonce")); err == nil {
				t.Fatal("a legacy certificate passed as fresh")
			}
			// The quote PCK certificate is valid from 2021-03-27: before that the chain fails.
			if _, err := VerifyCertificate(context.Background(), cert, attestation.Options{Now: time.Date(2021, 3, 1, 0, 0, 0, 0, time.UTC)}, nil); err == nil {
				t.Fatal("verified before the PCK certificate was valid")
			}
		})
	}
}

// TestLegacyKeyBinding moves a legacy certificate's quote onto another key: the binding to the
// PKCS#1 key must fail even though the quote itself is genuine.
func TestLegacyKeyBinding(t *testing.T) {
	cert := legacyCert(t, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	var quote []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDLegacySGXECDSAQuote) {
			quote = e.Value
		}
	}
	if quote == nil {
		t.Fatal("sample has no quote extension")
	}
	key := newKey(t)
	forged := selfSigned(t, key, cert.NotBefore, cert.NotAfter, pkix.Extension{Id: OIDLegacySGXECDSAQuote, Value: quote})
	_, err := VerifyCertificate(context.Background(), forged, attestation.Options{Now: legacyTime}, nil)
	if err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("want key-binding failure, got %v", err)
	}
}
