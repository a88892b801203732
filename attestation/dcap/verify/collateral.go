package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// ErrNoTCBSigningCertificate is returned when collateral carries no Intel SGX TCB Signing
// certificate to check a TCB info or QE identity signature with.
var ErrNoTCBSigningCertificate = errors.New("no " + TCBSigningCN + " certificate in collateral")

// TCBInfo verifies a TCB info's signature with an Intel SGX TCB Signing certificate from certs
// whose chain verifies to roots at now, and that now lies in [issueDate, nextUpdate]. It returns
// the signer's verified chain (for revocation checks).
func TCBInfo(ti *abi.TCBInfo, certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	what := fmt.Sprintf("TCB info (%s, FMSPC %X)", ti.ID, ti.FMSPC)
	return signedCollateral(what, ti.Raw, ti.Signature, ti.IssueDate, ti.NextUpdate, certs, roots, now)
}

// QEIdentity verifies a QE identity like TCBInfo does.
func QEIdentity(qi *abi.QEIdentity, certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	what := fmt.Sprintf("QE identity (%s)", qi.ID)
	return signedCollateral(what, qi.Raw, qi.Signature, qi.IssueDate, qi.NextUpdate, certs, roots, now)
}

func signedCollateral(what string, raw, sig []byte, issued, next time.Time, certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	chain, err := tcbSigner(raw, sig, certs, roots, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if now.Before(issued) {
		return nil, fmt.Errorf("%s: issued in the future: issueDate %s is after %s", what, issued.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(next) {
		return nil, fmt.Errorf("%s: expired: nextUpdate %s is before %s", what, next.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return chain, nil
}

// tcbSigner finds the TCB Signing certificate that verifies to roots and whose key made sig.
func tcbSigner(raw, sig []byte, certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	var errs []error
	intermediates := intermediatesPool(certs)
	for _, c := range certs {
		if c.Subject.CommonName != TCBSigningCN || c.IsCA {
			continue
		}
		key, err := certP256Key(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ECDSAP256(key, raw, sig); err != nil {
			errs = append(errs, fmt.Errorf("with %s serial %X: %w", TCBSigningCN, c.SerialNumber, err))
			continue
		}
		chains, err := c.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: intermediates,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s serial %X chain at %s: %w", TCBSigningCN, c.SerialNumber, now.UTC().Format(time.RFC3339), err))
			continue
		}
		return chains[0], nil
	}
	if len(errs) == 0 {
		return nil, ErrNoTCBSigningCertificate
	}
	return nil, errors.Join(errs...)
}
