package snp

import (
	"crypto/x509"
	"time"
)

// expiry finds when a verification's verdict stops holding (attestation.Result.ValidUntil): the
// earliest time at which the same evidence with the same inputs would no longer verify, or would
// verify differently: the end of everything the verdict used (each certificate's notAfter in the
// V[CL]EK -> AS[V]K -> ARK chain, each applied CRL's nextUpdate), and the start of any candidate
// certificate not yet valid at the verification time (from then on it may be picked instead).
// It mirrors attestation/dcap's.
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
