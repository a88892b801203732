package dcap

import (
	"crypto/x509"
	"time"
)

// expiry finds when a verification's verdict stops holding (attestation.Result.ValidUntil): the
// earliest time at which the same evidence with the same inputs would no longer verify, or would
// verify differently. Two kinds of dates decide it:
//
//   - the end of everything the verdict used: each certificate's notAfter in the chains it was
//     checked through (PCK chain, TCB Signing chain), each applied CRL's nextUpdate, the TCB
//     info's and QE identity's nextUpdate;
//   - the start of any input not yet valid at the verification time (a certificate's notBefore,
//     a TCB info's or QE identity's issueDate): from then on it may take part (a newer TCB info
//     would win, another PCK certificate would be found), so the verdict may no longer be the
//     one a verification would reach.
//
// Reusing a verdict only strictly before the result is therefore never later than a fresh
// verification would change its mind.
type expiry struct {
	now, until time.Time
}

// ends notes that something the verdict used holds until t (inclusive).
func (e *expiry) ends(t time.Time) {
	if e.until.IsZero() || t.Before(e.until) {
		e.until = t
	}
}

// chain notes every certificate of a chain the verdict used.
func (e *expiry) chain(certs []*x509.Certificate) {
	for _, c := range certs {
		e.ends(c.NotAfter)
	}
}

// starts notes an input that becomes valid at t: it bounds the verdict when t lies after the
// verification time.
func (e *expiry) starts(t time.Time) {
	if t.After(e.now) {
		e.ends(t)
	}
}

// certificates notes the start of every certificate a verification could pick from.
func (e *expiry) certificates(certs []*x509.Certificate) {
	for _, c := range certs {
		e.starts(c.NotBefore)
	}
}
