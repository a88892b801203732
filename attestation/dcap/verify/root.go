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

// TrustAnchors returns a pool with the pinned Intel SGX Root CA and the caller's extra Intel roots.
// Every extra root must pass CheckIntelRoot: DCAP chains end only at Intel roots, never at an
// anchor of another TEE (a sim platform certificate) or at an end-entity certificate.
func TrustAnchors(extra []*x509.Certificate) (*x509.CertPool, error) {
	root, err := IntelSGXRootCA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	for _, c := range extra {
		if err := CheckIntelRoot(c); err != nil {
			return nil, err
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// CheckIntelRoot reports whether cert can serve as an explicitly given Intel root: a self-signed
// CA certificate allowed to sign certificates. Go's verifier does not check that an anchor is a CA,
// so this is where a leaf (such as the sim platform certificate) is kept out.
func CheckIntelRoot(cert *x509.Certificate) error {
	name := cert.Subject.CommonName
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("Intel root %q is not a CA certificate", name)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("Intel root %q may not sign certificates (key usage)", name)
	}
	if !bytes.Equal(cert.RawSubject, cert.RawIssuer) || cert.CheckSignatureFrom(cert) != nil {
		return fmt.Errorf("Intel root %q is not self-signed", name)
	}
	return nil
}

// intermediatesPool holds candidate intermediates: every certificate except those naming
// themselves as issuer (self-signed ones), which can only ever be trust anchors and are never
// taken from untrusted input. No signature is checked here: a certificate whose subject is its
// issuer cannot be an intermediate of a path anyway.
func intermediatesPool(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) {
			continue
		}
		pool.AddCert(c)
	}
	return pool
}
