package shelter

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// WriteText prints r for a human.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "  %-13s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(&b, "%s\n", orDefault(r.Subject, "evidence"))
	kind := r.Kind
	if r.Format != "" {
		kind += " (" + r.Format + ")"
	}
	line("kind", "%s", kind)
	line("TEE", "%s", orDefault(r.TEE, "unknown"))
	if r.TEE == string(attestation.Sim) {
		line("note", "SIMULATED TEE: no hardware root of trust, no confidentiality")
	}
	if r.Kind == KindEndorsementKey && r.Verified {
		// A VCEK or VLEK alone: the chain and the certificate's facts are all there is.
		line("verified", "yes: the certificate chains to AMD's root of its product line")
		for _, k := range sortedKeys(r.Details) {
			line(k, "%s", r.Details[k])
		}
	} else if r.Verified {
		what := "signatures and certificate chain check out to a trusted root"
		if r.Kind == KindCertificate {
			what += "; the evidence binds the certificate's key"
			if r.Fresh {
				what += " and the nonce"
			}
		}
		line("verified", "yes: %s", what)
		tcb := orDefault(r.TCBStatus, "not decided (no collateral, or the TEE has no TCB status)")
		if len(r.Advisories) > 0 {
			tcb += " (" + strings.Join(r.Advisories, ", ") + ")"
		}
		line("TCB status", "%s", tcb)
		line("debug", "%s", yesNo(r.Debug))
		for _, k := range sortedKeys(r.Measurements) {
			line(k, "%s", r.Measurements[k])
		}
		if r.Signer != "" {
			line("signer", "%s", r.Signer)
		}
		if r.ProductID != nil {
			line("product ID", "%d", *r.ProductID)
		}
		if r.SVN != nil {
			line("SVN", "%d", *r.SVN)
		}
		line("report data", "%s", r.ReportData)
	} else {
		line("verified", "NO")
	}
	for _, e := range r.Errors {
		line("error", "%s", e)
	}
	switch {
	case !r.Policy.Checked:
		line("policy", "not checked (no policy given)")
	case r.Policy.Satisfied:
		line("policy", "satisfied")
	default:
		line("policy", "VIOLATED")
		for _, v := range r.Policy.Violations {
			line("violation", "%s: %s", v.Rule, v.Message)
		}
	}
	switch {
	case r.Kind == KindEndorsementKey && r.OK:
		line("verdict", "PASS: AMD's KDS issued this certificate; it is not evidence of any guest")
	case r.Kind == KindEndorsementKey:
		line("verdict", "FAIL")
	case r.OK:
		line("verdict", "PASS: evidence verified and the policy holds")
	case r.Verified && !r.Policy.Checked:
		line("verdict", "UNDECIDED: the evidence verified, but without a policy nothing was decided (measurements, TCB status and debug were not judged); give --policy")
	default:
		line("verdict", "FAIL")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
