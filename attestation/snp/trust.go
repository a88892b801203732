package snp

import (
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// ProductLines are the AMD EPYC product lines whose roots are built in.
var ProductLines = []string{"Milan", "Genoa", "Turin"}

// arkPins are SHA-256 fingerprints of the DER of AMD's root keys (ARK), one per product line.
// They are what makes the embedded PEM files trustworthy: a changed file fails the pin.
var arkPins = map[string]string{
	"Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
	"Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
	"Turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}

// amdroots holds AMD's public KDS cert_chain files: ASK (or ASVK) then ARK, for each product line.
//
//go:embed amdroots/*.pem
var amdroots embed.FS

// productRoots is one product line's built-in trust.
type productRoots struct {
	line string
	ark  *x509.Certificate
	// ask signs VCEKs, asvk signs VLEKs.
	ask, asvk *x509.Certificate
}

var builtinRoots = sync.OnceValues(loadBuiltinRoots)

func loadBuiltinRoots() (map[string]*productRoots, error) {
	out := map[string]*productRoots{}
	for _, line := range ProductLines {
		pr := &productRoots{line: line}
		for _, kind := range []string{"vcek", "vlek"} {
			name := "amdroots/" + strings.ToLower(line) + "_" + kind + ".pem"
			data, err := amdroots.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("built-in AMD roots: %w", err)
			}
			certs, err := attestation.ParsePEMCertificates(data)
			if err != nil || len(certs) != 2 {
				return nil, fmt.Errorf("built-in AMD roots %s: want ASK and ARK certificates (%v)", name, err)
			}
			ica, ark := certs[0], certs[1]
			if err := checkARK(ark, line); err != nil {
				return nil, fmt.Errorf("built-in AMD roots %s: %w", name, err)
			}
			wantCN := "SEV-" + line
			if kind == "vlek" {
				wantCN = "SEV-VLEK-" + line
			}
			if ica.Subject.CommonName != wantCN {
				return nil, fmt.Errorf("built-in AMD roots %s: intermediate is %q, want %q", name, ica.Subject.CommonName, wantCN)
			}
			if err := ica.CheckSignatureFrom(ark); err != nil {
				return nil, fmt.Errorf("built-in AMD roots %s: %s not signed by ARK: %w", name, wantCN, err)
			}
			pr.ark = ark
			if kind == "vcek" {
				pr.ask = ica
			} else {
				pr.asvk = ica
			}
		}
		out[line] = pr
	}
	return out, nil
}

// checkARK verifies that ark is AMD's root for line: pinned fingerprint, name and self-signature.
func checkARK(ark *x509.Certificate, line string) error {
	sum := sha256.Sum256(ark.Raw)
	if got, want := hex.EncodeToString(sum[:]), arkPins[line]; got != want {
		return fmt.Errorf("ARK-%s fingerprint %s does not match the pinned %s", line, got, want)
	}
	if ark.Subject.CommonName != "ARK-"+line {
		return fmt.Errorf("ARK for %s is named %q", line, ark.Subject.CommonName)
	}
	if err := ark.CheckSignatureFrom(ark); err != nil {
		return fmt.Errorf("ARK-%s self-signature: %w", line, err)
	}
	return nil
}

// IsBuiltinARK reports whether cert is one of the built-in, pinned ARKs.
func IsBuiltinARK(cert *x509.Certificate) bool {
	line, ok := strings.CutPrefix(cert.Subject.CommonName, "ARK-")
	return ok && checkARK(cert, line) == nil
}

// CheckAMDRoot reports whether cert can serve as an explicitly given AMD root: a self-signed CA
// certificate named ARK-<product line> of a known line. Go's verifier does not check that an
// anchor is a CA, so this is where a leaf or another TEE's anchor is kept out.
func CheckAMDRoot(cert *x509.Certificate) error {
	name := cert.Subject.CommonName
	line, ok := strings.CutPrefix(name, "ARK-")
	if !ok || !slices.Contains(ProductLines, line) {
		return fmt.Errorf("AMD root %q is not an ARK (want CN ARK-<%s>)", name, strings.Join(ProductLines, "|"))
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("AMD root %q is not a CA certificate", name)
	}
	if cert.CheckSignatureFrom(cert) != nil {
		return fmt.Errorf("AMD root %q is not self-signed", name)
	}
	return nil
}

// parseCertBlob reads a collateral blob as PEM (one or more certificates) or DER (one or more
// concatenated certificates). A blob that is neither yields no certificates: collateral for other
// TEEs travels in the same list.
func parseCertBlob(b []byte) []*x509.Certificate {
	if trimmed := strings.TrimSpace(string(b[:min(len(b), 64)])); strings.HasPrefix(trimmed, "-----BEGIN") {
		certs, err := attestation.ParsePEMCertificates(b)
		if err != nil {
			return nil
		}
		return certs
	}
	certs, err := x509.ParseCertificates(b)
	if err != nil {
		return nil
	}
	return certs
}
