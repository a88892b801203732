package verify

import (
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// Subject common names Intel uses in the DCAP PKI.
const (
	PCKCertificateCN = "Intel SGX PCK Certificate"
	PCKPlatformCACN  = "Intel SGX PCK Platform CA"
	PCKProcessorCACN = "Intel SGX PCK Processor CA"
	TCBSigningCN     = "Intel SGX TCB Signing"
)

// PCK is a PCK certificate whose chain verified to a trust anchor.
type PCK struct {
	Certificate *x509.Certificate
	Key         *ecdsa.PublicKey
	// Chain is the verified path: PCK certificate, PCK CA, root.
	Chain     []*x509.Certificate
	Extension *abi.PCKExtension
	// CA is "platform" or "processor", after the issuing PCK CA.
	CA string
}

// PCKChain verifies a PCK certificate chain (leaf first, as carried in the quote) to roots at
// time now. Certificates in the chain are only candidate intermediates: the anchor always comes
// from roots.
func PCKChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) (*PCK, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("PCK chain: no certificate")
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != PCKCertificateCN {
		return nil, fmt.Errorf("PCK chain: leaf subject CN %q, want %q", leaf.Subject.CommonName, PCKCertificateCN)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediatesPool(certs[1:]),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("PCK chain at %s: %w", now.UTC().Format(time.RFC3339), err)
	}
	// Every certificate the quote carries must be on the path we verified: an unverifiable extra
	// (say a tampered copy of the root) means the chain is not what the platform produced.
	chain := pathCovering(chains, certs)
	if chain == nil {
		return nil, fmt.Errorf("PCK chain: the quote's %d certificates are not all on a verified path to a trust anchor", len(certs))
	}
	if len(chain) != 3 {
		return nil, fmt.Errorf("PCK chain: verified path has %d certificates, want 3 (PCK, PCK CA, root)", len(chain))
	}
	p := &PCK{Certificate: leaf, Chain: chain}
	switch chain[1].Subject.CommonName {
	case PCKPlatformCACN:
		p.CA = "platform"
	case PCKProcessorCACN:
		p.CA = "processor"
	default:
		return nil, fmt.Errorf("PCK chain: issuer CN %q is not a PCK CA", chain[1].Subject.CommonName)
	}
	if p.Key, err = certP256Key(leaf); err != nil {
		return nil, fmt.Errorf("PCK chain: %w", err)
	}
	if p.Extension, err = abi.PCKExtensionFromCertificate(leaf); err != nil {
		return nil, fmt.Errorf("PCK chain: %w", err)
	}
	return p, nil
}

func pathCovering(chains [][]*x509.Certificate, certs []*x509.Certificate) []*x509.Certificate {
	for _, chain := range chains {
		covered := true
		for _, c := range certs {
			found := false
			for _, p := range chain {
				if p.Equal(c) {
					found = true
					break
				}
			}
			if !found {
				covered = false
				break
			}
		}
		if covered {
			return chain
		}
	}
	return nil
}
