package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sync"
)

// The Intel SGX Root CA certificate (production), public CA data as published by Intel.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// IntelSGXRootCASPKISHA256 pins the root by the SHA-256 of its SubjectPublicKeyInfo. The same key
// is hard-coded in Intel's own quote verification enclave.
const IntelSGXRootCASPKISHA256 = "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e"

var intelRoot = sync.OnceValues(func() (*x509.Certificate, error) {
	block, _ := pem.Decode(intelRootPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("embedded Intel SGX Root CA: no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("embedded Intel SGX Root CA: %w", err)
	}
	if !IsIntelSGXRootCA(cert) {
		return nil, fmt.Errorf("embedded Intel SGX Root CA does not match the pinned key %s", IntelSGXRootCASPKISHA256)
	}
	return cert, nil
})

// IntelSGXRootCA returns the built-in Intel SGX Root CA certificate.
func IntelSGXRootCA() (*x509.Certificate, error) { return intelRoot() }

// IsIntelSGXRootCA reports whether cert carries the pinned Intel SGX Root CA public key.
func IsIntelSGXRootCA(cert *x509.Certificate) bool {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	want, _ := hex.DecodeString(IntelSGXRootCASPKISHA256)
	return bytes.Equal(sum[:], want)
}

// TrustAnchors returns a pool with the pinned Intel SGX Root CA and the caller's extra roots.
func TrustAnchors(extra []*x509.Certificate) (*x509.CertPool, error) {
	root, err := IntelSGXRootCA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	for _, c := range extra {
		pool.AddCert(c)
	}
	return pool, nil
}

// intermediatesPool holds candidate intermediates: every certificate except self-signed ones,
// which can only ever be trust anchors and are never taken from untrusted input.
func intermediatesPool(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			continue
		}
		pool.AddCert(c)
	}
	return pool
}
