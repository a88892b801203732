package shelter

import (
	"context"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// TestLegacyRATLSSamples: the two rats-tls certificates of the testdata verify at a pinned time,
// key binding included (REPORTDATA[0:32] = SHA-256 of the PKCS#1 RSAPublicKey), and fail before
// their quote's PCK certificate was valid.
func TestLegacyRATLSSamples(t *testing.T) {
	for _, tc := range []struct {
		file, at, mrenclave string
		ok                  bool
	}{
		{"ra-tls/ratls_legacy_sgx_ecdsa_rsa_sha1.pem", "2021-07-01T00:00:00Z", "144e81488fc3d59ddbe69b03bd939a3b938d85b6a7c9897e2b09808ade956574", true},
		{"ra-tls/ratls_legacy_sgx_ecdsa_rsa_sha256.pem", "2021-07-01T00:00:00Z", "d74f2eb87fa3c64c40d16e35a6f8d3259e3dd931a0bcce0637e33ada67df0b52", true},
		{"ra-tls/ratls_legacy_sgx_ecdsa_rsa_sha1.pem", "2021-03-01T00:00:00Z", "", false},
	} {
		r := Verify(context.Background(), VerifyInput{Data: readSample(t, tc.file), Options: attestation.Options{Now: mustTime(tc.at)}})
		// No policy: a certificate that verifies is reported, but nothing is decided (ok stays false).
		if r.Verified != tc.ok || r.OK || r.Decided == tc.ok || r.Kind != KindCertificate || r.TEE != string(attestation.SGX) {
			t.Fatalf("%s at %s: verified=%v ok=%v decided=%v kind=%s tee=%s errors=%q", tc.file, tc.at, r.Verified, r.OK, r.Decided, r.Kind, r.TEE, r.Errors)
		}
		if tc.ok && (!r.KeyBound || r.Format != "legacy-sgx-ra-tls" || r.Measurements["mrenclave"] != tc.mrenclave || r.TCBStatus != "") {
			t.Fatalf("%s: %+v", tc.file, r)
		}
	}
}
