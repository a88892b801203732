package collateral

import (
	"context"
	"errors"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/snp"
)

// KDSURL is AMD's Key Distribution Service.
const KDSURL = "https://kdsintf.amd.com"

// AMD fetches, for SEV-SNP reports, the VCEK from AMD KDS (vcek/v1/<line>/<hwID>?<TCB>) and the
// product line's CRL (vcek/v1/<line>/crl). The ASK and ARK are built into the verifier. VLEKs are
// issued to cloud providers, not served by chip: a VLEK-signed report needs its VLEK as
// collateral or in its certificate table.
type AMD struct {
	// BaseURL is KDSURL or a mirror serving the same paths.
	BaseURL string
	Fetcher
}

var _ attestation.CollateralSource = (*AMD)(nil)

// Collateral implements attestation.CollateralSource for SNP reports.
func (s *AMD) Collateral(ctx context.Context, tee attestation.TEE, evidence []byte, opts attestation.Options) ([][]byte, error) {
	if tee != attestation.SNP {
		return nil, nil
	}
	reqs, err := snp.VCEKRequests(evidence)
	if errors.Is(err, snp.ErrNoVCEKRequest) {
		return nil, nil // nothing to fetch; the verifier says what is missing
	}
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(s.BaseURL, "/")
	var errs []error
	// A version 2 report does not name its line: the first line whose KDS knows the chip wins.
	for _, r := range reqs {
		vcek, err := s.fetch(ctx, r.Path(), base+r.Path(), "", nil, opts.Time())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The line's CRL (revoked ASKs/ASVKs). A service without one (404), or offline a cache
		// without one, leaves revocation unchecked, which the verdict says (crl_checked=false)
		// and require_crl policies refuse; any other failure is an error.
		crlPath := "/vcek/v1/" + r.Line + "/crl"
		crl, err := s.fetch(ctx, crlPath, base+crlPath, "", nil, opts.Time())
		if errors.Is(err, errNotFound) || s.Offline && errors.Is(err, ErrNotCached) {
			return vcek, nil
		}
		if err != nil {
			return nil, err
		}
		return append(vcek, crl...), nil
	}
	return nil, errors.Join(errs...)
}
