package snp

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/internal/validity"
)

// checkRevocation applies every CRL in the collateral that the chain's ARK signed. AMD publishes
// one per product line (and key kind); it lists revoked ASKs/ASVKs, the certificates the ARK
// issues (VCEKs are superseded by TCB updates rather than revoked). It reports whether any CRL
// applied (and notes it in info). A CRL that was offered but is stale or not yet valid fails the check: the caller asked
// for revocation checking with it. Without a CRL nothing is checked (offline verification cannot
// fetch one); Result.Details["crl_checked"] says which happened.
func checkRevocation(chain []*x509.Certificate, opts attestation.Options, info *attestation.CollateralInfo, exp *validity.Window) (bool, error) {
	ica, ark := chain[len(chain)-2], chain[len(chain)-1]
	now := opts.Time()
	checked := false
	// A CRL can only revoke, so the peer's count as much as the verifier's own.
	for _, blob := range slices.Concat(opts.Collateral, opts.PeerCollateral) {
		crl := parseCRL(blob)
		if crl == nil || crl.Issuer.String() != ark.Subject.String() {
			continue
		}
		if err := crl.CheckSignatureFrom(ark); err != nil {
			return false, fmt.Errorf("CRL naming %s as issuer: %w", ark.Subject.CommonName, err)
		}
		if now.Before(crl.ThisUpdate) || (!crl.NextUpdate.IsZero() && now.After(crl.NextUpdate)) {
			return false, fmt.Errorf("%s CRL is valid %s to %s, not at %s", ark.Subject.CommonName,
				crl.ThisUpdate.UTC().Format(time.RFC3339), crl.NextUpdate.UTC().Format(time.RFC3339),
				now.UTC().Format(time.RFC3339))
		}
		for _, entry := range crl.RevokedCertificateEntries {
			if ica.SerialNumber.Cmp(entry.SerialNumber) == 0 {
				return false, fmt.Errorf("%s (serial %x) is revoked by the %s CRL since %s", ica.Subject.CommonName,
					ica.SerialNumber, ark.Subject.CommonName, entry.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
		checked = true
		info.NoteIssued(crl.ThisUpdate)
		if !crl.NextUpdate.IsZero() {
			exp.Ends(crl.NextUpdate)
		}
		if !slices.Contains(info.CRLs, ark.Subject.CommonName) {
			info.CRLs = append(info.CRLs, ark.Subject.CommonName)
		}
	}
	return checked, nil
}

func parseCRL(b []byte) *x509.RevocationList {
	if strings.HasPrefix(strings.TrimSpace(string(b[:min(len(b), 64)])), "-----BEGIN X509 CRL") {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil
		}
		b = block.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil
	}
	return crl
}
