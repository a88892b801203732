package verify

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrRevoked is wrapped when a certificate in a verified chain is on its issuer's CRL.
var ErrRevoked = errors.New("certificate revoked")

// RevocationResult is what Revocation established.
type RevocationResult struct {
	// Applied names the CAs whose CRL was applied.
	Applied []string
	// Missing names the CAs of the chains that issued a certificate but had no CRL given.
	Missing []string
	// Complete is true when no issuing CA is missing a CRL.
	Complete bool
	// ThisUpdates are the thisUpdate times of the CRLs applied.
	ThisUpdates []time.Time
	// NextUpdates are the nextUpdate times of the CRLs applied: after the earliest of them the
	// same check fails (the CRL is stale).
	NextUpdates []time.Time
}

// Revocation checks certificates of verified chains against the CRLs whose issuer is a CA of one
// of those chains. Such a CRL must be signed by that CA and current at now; CRLs from other
// issuers do not concern these chains and are skipped.
func Revocation(chains [][]*x509.Certificate, crls []*x509.RevocationList, now time.Time) (*RevocationResult, error) {
	return RevocationWith(chains, crls, now, func(crl *x509.RevocationList, issuer *x509.Certificate) error {
		return crl.CheckSignatureFrom(issuer)
	})
}

// RevocationWith is Revocation with the CRL signature check supplied (a caller may remember its
// results).
func RevocationWith(chains [][]*x509.Certificate, crls []*x509.RevocationList, now time.Time,
	checkSignature func(*x509.RevocationList, *x509.Certificate) error) (*RevocationResult, error) {
	res := &RevocationResult{}
	for _, crl := range crls {
		issuer := findIssuer(chains, crl)
		if issuer == nil {
			continue
		}
		name := issuer.Subject.CommonName
		if err := checkSignature(crl, issuer); err != nil {
			return nil, fmt.Errorf("CRL of %q: signature: %w", name, err)
		}
		if now.Before(crl.ThisUpdate) {
			return nil, fmt.Errorf("CRL of %q: not yet valid: thisUpdate %s is after %s", name, crl.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		if crl.NextUpdate.IsZero() || now.After(crl.NextUpdate) {
			return nil, fmt.Errorf("CRL of %q: expired: nextUpdate %s is before %s", name, crl.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		for _, chain := range chains {
			for i := 0; i+1 < len(chain); i++ {
				if chain[i+1] != issuer && !chain[i+1].Equal(issuer) {
					continue
				}
				for _, entry := range crl.RevokedCertificateEntries {
					if entry.SerialNumber != nil && entry.SerialNumber.Cmp(chain[i].SerialNumber) == 0 {
						return nil, fmt.Errorf("%w: %q serial %X is on the CRL of %q (revoked %s)", ErrRevoked,
							chain[i].Subject.CommonName, chain[i].SerialNumber, name, entry.RevocationTime.UTC().Format(time.RFC3339))
					}
				}
			}
		}
		res.Applied = appendUnique(res.Applied, name)
		res.ThisUpdates = append(res.ThisUpdates, crl.ThisUpdate)
		res.NextUpdates = append(res.NextUpdates, crl.NextUpdate)
	}
	for _, chain := range chains {
		for i := 1; i < len(chain); i++ {
			if name := chain[i].Subject.CommonName; !contains(res.Applied, name) {
				res.Missing = appendUnique(res.Missing, name)
			}
		}
	}
	res.Complete = len(res.Missing) == 0
	return res, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func findIssuer(chains [][]*x509.Certificate, crl *x509.RevocationList) *x509.Certificate {
	for _, chain := range chains {
		for _, c := range chain {
			if c.IsCA && bytes.Equal(c.RawSubject, crl.RawIssuer) {
				return c
			}
		}
	}
	return nil
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}
