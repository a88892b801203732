package shelter

import (
	"crypto/x509"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/attestation"
	dcapverify "github.com/inclavare-containers/inclavare-go/attestation/dcap/verify"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/snp"
)

// AnchorFiles are the trust-anchor files a user names on the command line, one list per TEE
// (shelter's, inclavared's and the confidential service's --sim-root, --intel-root, --amd-root).
// A certificate given for one TEE is trusted for that TEE only: the sim platform key is the node
// operator's, and nothing it signs may pass for Intel or AMD hardware.
type AnchorFiles struct {
	// Sim are sim platform certificates (rune sim-platform-cert), or the platform key file itself.
	Sim []string
	// Intel are roots for SGX/TDX (DCAP) chains besides the built-in Intel SGX Root CA.
	Intel []string
	// AMD are ARKs for SEV-SNP chains besides the built-in ones.
	AMD []string
	// Untyped is the old --roots: each certificate must say by what it is which TEE it anchors (a
	// sim platform certificate, or a built-in Intel or AMD root, which adds nothing). Anything else
	// is refused: only the user can say that a certificate is an Intel or AMD root.
	Untyped []string
}

// Apply loads the files into opts' per-TEE anchors, checking that each certificate is what an
// anchor of its TEE is. The error names the flag and the file.
func (f AnchorFiles) Apply(opts *attestation.Options) error {
	for _, p := range f.Sim {
		// A file of certificates (every one of them), or the platform key file itself.
		certs, err := attestation.LoadCertificates([]string{p})
		if err != nil {
			c, kerr := sim.LoadPlatformCertificate(p)
			if kerr != nil {
				return fmt.Errorf("--sim-root %s: neither certificates (%v) nor a platform key (%v)", p, err, kerr)
			}
			certs = []*x509.Certificate{c}
		}
		for _, c := range certs {
			if err := sim.CheckPlatformCertificate(c); err != nil {
				return fmt.Errorf("--sim-root %s: %w", p, err)
			}
		}
		opts.SimRoots = append(opts.SimRoots, certs...)
	}
	for _, typed := range []struct {
		flag  string
		paths []string
		check func(*x509.Certificate) error
		dst   *[]*x509.Certificate
	}{
		{"--intel-root", f.Intel, dcapverify.CheckIntelRoot, &opts.IntelRoots},
		{"--amd-root", f.AMD, snp.CheckAMDRoot, &opts.AMDRoots},
	} {
		for _, p := range typed.paths {
			certs, err := attestation.LoadCertificates([]string{p})
			if err != nil {
				return fmt.Errorf("%s %w", typed.flag, err)
			}
			for _, c := range certs {
				if err := typed.check(c); err != nil {
					return fmt.Errorf("%s %s: %w", typed.flag, p, err)
				}
			}
			*typed.dst = append(*typed.dst, certs...)
		}
	}
	for _, p := range f.Untyped {
		certs, err := attestation.LoadCertificates([]string{p})
		if err != nil {
			return fmt.Errorf("--roots %w", err)
		}
		for _, c := range certs {
			switch {
			case sim.CheckPlatformCertificate(c) == nil:
				opts.SimRoots = append(opts.SimRoots, c)
			case dcapverify.IsIntelSGXRootCA(c), snp.IsBuiltinARK(c):
				// Built in already.
			default:
				return fmt.Errorf("--roots %s: certificate %q is not a sim platform certificate nor a built-in Intel or AMD root; say which TEE it anchors with --sim-root, --intel-root or --amd-root", p, c.Subject.CommonName)
			}
		}
	}
	return nil
}
