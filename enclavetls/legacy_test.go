package enclavetls

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
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

// TestLegacySGXRATLSCollateral: an sgx-ra-tls certificate carries the quote in .6 and its
// collateral in .7 (PCK certificate), .8 (PCK signing chain), .9 (TCB info) and .10 (TCB signing
// chain), where rats-tls puts a TDX quote in .8. A real SGX quote re-signed under a test Intel PKI
// with an encrypted PPID (so the PCK certificate can only come from .7) verifies with that
// collateral, ranked as the peer's; the verifier's own QE identity completes the TCB decision.
func TestLegacySGXRATLSCollateral(t *testing.T) {
	at := time.Date(2022, 12, 20, 0, 50, 4, 0, time.UTC)
	rootKey := newKey(t)
	pki, err := dcaptest.NewPKI(rootKey, nil, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	h := sha256.Sum256(spki)
	copy(rd[:], h[:])
	quote, err := pki.Reforge(readSample(t, "sgx/oasis_quote_v3_pck_chain.bin"), dcaptest.Options{ReportData: &rd, EncryptedPPID: true})
	if err != nil {
		t.Fatal(err)
	}
	tcbInfo, err := pki.Resign(readSample(t, "sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	qeIdentity, err := pki.Resign(readSample(t, "sgx/oasis_qeidentity_qe_v2.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(cs ...*x509.Certificate) []byte {
		var b []byte
		for _, c := range cs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return append(b, 0) // C strings, as sgx-ra-tls writes them
	}
	cert := selfSigned(t, key, at.Add(-time.Hour), at.Add(time.Hour),
		pkix.Extension{Id: OIDLegacySGXECDSAQuote, Value: quote},
		pkix.Extension{Id: OIDLegacyPCKCert, Value: pemOf(pki.LastPCK)},
		pkix.Extension{Id: OIDLegacyPCKSignChain, Value: pemOf(pki.PCKCA, pki.Root)},
		pkix.Extension{Id: OIDLegacyTCBInfo, Value: append(tcbInfo, 0)},
		pkix.Extension{Id: OIDLegacyTCBSignChain, Value: pemOf(pki.TCBSigning, pki.Root)},
	)
	opts := attestation.Options{Now: at, IntelRoots: []*x509.Certificate{pki.Root}}
	p, err := VerifyCertificate(context.Background(), cert, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Format != FormatLegacy || p.Result.TCBStatus != "" || !strings.HasPrefix(p.Result.Details["collateral"], "incomplete: SGX TCB info") {
		t.Fatalf("without a QE identity: %+v", p.Result.Details)
	}
	opts.Collateral = [][]byte{qeIdentity, pki.IssuerChainPEM()}
	p, err = VerifyCertificate(context.Background(), cert, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Result.TCBStatus != "SWHardeningNeeded" || p.Result.Collateral.Source != "verifier+peer" ||
		p.Result.Details["pck_source"] != "collateral (certification data: PPID encrypted with RSA-3072)" {
		t.Fatalf("with the verifier's QE identity: %s %+v %v", p.Result.TCBStatus, p.Result.Collateral, p.Result.Details)
	}
	// Without .7 nothing names the platform's PCK certificate.
	var without []pkix.Extension
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDLegacySGXECDSAQuote) || e.Id.Equal(OIDLegacyTCBInfo) {
			without = append(without, e)
		}
	}
	if _, err := VerifyCertificate(context.Background(), selfSigned(t, key, at.Add(-time.Hour), at.Add(time.Hour), without...), opts, nil); err == nil ||
		!strings.Contains(err.Error(), "pass the platform's PCK certificate") {
		t.Fatalf("without the PCK certificate: %v", err)
	}
}
