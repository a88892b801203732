package kbs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Evidence shapes inside "primary_evidence" (a JSON object):
//
//	{"evidence": "<base64>"}                    this repository's evidence bytes, any TEE: a sim
//	                                            evidence blob, an SGX or TDX quote, an SNP report
//	                                            with its certificate table (as rune attest writes it)
//	{"quote": "<base64>", "cc_eventlog": …}     trustee's TDX and SGX shape (guest-components'
//	                                            attesters); the event log is not evaluated
//
// Refused, with the reason: trustee's SNP shape (the report as a parsed object, not its signed
// bytes) and trustee's sample evidence (unsigned). Base64 is the standard alphabet with padding,
// as trustee's attesters write it.

// WrapEvidence puts evidence of tee into the shape a client sends: trustee's {"quote"} for SGX and
// TDX (so that trustee can verify it too), {"evidence"} otherwise.
func WrapEvidence(tee attestation.TEE, evidence []byte) (json.RawMessage, error) {
	if len(evidence) == 0 {
		return nil, errors.New("no evidence")
	}
	b64 := base64.StdEncoding.EncodeToString(evidence)
	if tee == attestation.SGX || tee == attestation.TDX {
		return json.Marshal(map[string]string{"quote": b64})
	}
	return json.Marshal(map[string]string{"evidence": b64})
}

// UnwrapEvidence returns the evidence bytes of primary evidence sent for tee.
func UnwrapEvidence(tee attestation.TEE, primary json.RawMessage) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(primary, &m); err != nil || m == nil {
		return nil, errors.New(`primary evidence must be a JSON object ({"evidence": base64} or {"quote": base64})`)
	}
	str := func(k string) ([]byte, error) {
		var s string
		if err := json.Unmarshal(m[k], &s); err != nil {
			return nil, fmt.Errorf("primary evidence %q is not a string", k)
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("primary evidence %q is not standard base64 of the evidence bytes", k)
		}
		return b, nil
	}
	_, hasEv := m["evidence"]
	_, hasQuote := m["quote"]
	_, hasLog := m["cc_eventlog"]
	switch {
	case hasEv && len(m) == 1:
		return str("evidence")
	case hasQuote && len(m) == 1+b2i(hasLog):
		if tee != attestation.TDX && tee != attestation.SGX {
			return nil, fmt.Errorf(`a {"quote"} evidence object is for tdx and sgx, not %s`, tee)
		}
		if hasLog {
			var s *string
			if err := json.Unmarshal(m["cc_eventlog"], &s); err != nil {
				return nil, errors.New(`primary evidence "cc_eventlog" must be a string or null`)
			}
		}
		return str("quote")
	case m["attestation_report"] != nil:
		return nil, errors.New(`trustee's SNP evidence (the report as a parsed object) is not accepted: send the signed report bytes with their certificate table as {"evidence": base64}`)
	case m["svn"] != nil && m["report_data"] != nil:
		return nil, errors.New(`trustee's sample evidence is unsigned and never accepted; "sample" means the sim TEE here: send sim evidence as {"evidence": base64}`)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return nil, fmt.Errorf(`primary evidence members %q are not a known shape ({"evidence"} or {"quote", "cc_eventlog"})`, keys)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
