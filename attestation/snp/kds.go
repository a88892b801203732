package snp

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/google/go-sev-guest/abi"
)

// VCEKRequest is what AMD's Key Distribution Service needs to issue the VCEK that signs a report:
// the product line, the chip's hwID (in the length that line's VCEKs carry) and the REPORTED_TCB's
// patch levels by their KDS parameter names.
type VCEKRequest struct {
	Line string
	HWID []byte
	// Query is the KDS query string: blSPL, teeSPL, snpSPL, ucodeSPL and, for Turin, fmcSPL.
	Query string
}

// Path is the KDS path of this VCEK (below the service's base URL).
func (r VCEKRequest) Path() string {
	return fmt.Sprintf("/vcek/v1/%s/%x?%s", r.Line, r.HWID, r.Query)
}

// ErrNoVCEKRequest is returned for a report KDS cannot serve a VCEK for: signed by a VLEK (the
// cloud provider hands those out), or with a masked CHIP_ID.
var ErrNoVCEKRequest = errors.New("no VCEK can be fetched for this report")

// VCEKRequests returns the KDS requests for the VCEK of evidence: one for the product line a
// version 3+ report names in its CPUID, one per line whose CHIP_ID shape fits for older reports
// (they do not say which line they come from).
func VCEKRequests(evidence []byte) ([]VCEKRequest, error) {
	ev, err := ParseEvidence(evidence, true)
	if err != nil {
		return nil, err
	}
	if ev.Signer.SigningKey != abi.VcekReportSigner {
		return nil, fmt.Errorf("%w: it is signed by a %v", ErrNoVCEKRequest, ev.Signer.SigningKey)
	}
	chip := ev.Report.GetChipId()
	if allZero(chip) {
		return nil, fmt.Errorf("%w: its CHIP_ID is masked", ErrNoVCEKRequest)
	}
	lines := ProductLines
	if family, model, _ := ev.CPUID(); family != 0 {
		line, err := productLineOfCPUID(family, model)
		if err != nil {
			return nil, err
		}
		lines = []string{line}
	}
	var out []VCEKRequest
	for _, line := range lines {
		n := hwIDSize(line)
		if !allZero(chip[n:]) {
			continue // a CHIP_ID longer than this line's hwID is not this line's
		}
		parts, err := tcbParts(line, ev.Report.GetReportedTcb())
		if err != nil {
			return nil, err
		}
		q := url.Values{}
		for name, param := range map[string]string{"bl": "blSPL", "tee": "teeSPL", "snp": "snpSPL", "ucode": "ucodeSPL", "fmc": "fmcSPL"} {
			if v, ok := parts[name]; ok {
				q.Set(param, strconv.Itoa(int(v)))
			}
		}
		out = append(out, VCEKRequest{Line: line, HWID: chip[:n], Query: q.Encode()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: its CHIP_ID fits no product line", ErrNoVCEKRequest)
	}
	return out, nil
}
