// Package validity finds when a verification's verdict stops holding (attestation.Result's
// ValidUntil), for the verifiers that rest on dated inputs (attestation/dcap, attestation/snp):
// the earliest time at which the same evidence with the same inputs would no longer verify, or
// would verify differently. Two kinds of dates decide it:
//
//   - the end of everything the verdict used: each certificate's notAfter in the chains it was
//     checked through, each applied CRL's nextUpdate, each signed collateral's nextUpdate;
//   - the start of any input not yet valid at the verification time (a certificate's notBefore,
//     a collateral's issue date): from then on it may take part (a newer TCB info would win,
//     another certificate would be found), so the verdict may no longer be the one a
//     verification would reach.
//
// Reusing a verdict only strictly before Until is therefore never later than a fresh
// verification would change its mind. It must never move Until later than an input it was told of.
package validity

import (
	"crypto/x509"
	"time"
)

// Window is one verification's: Now is the verification time, Until the end found so far (zero:
// nothing noted yet).
type Window struct {
	Now, Until time.Time
}

// Ends notes that something the verdict used holds until t (inclusive).
func (w *Window) Ends(t time.Time) {
	if w.Until.IsZero() || t.Before(w.Until) {
		w.Until = t
	}
}

// Chain notes every certificate of a chain the verdict used.
func (w *Window) Chain(certs []*x509.Certificate) {
	for _, c := range certs {
		w.Ends(c.NotAfter)
	}
}

// Starts notes an input that becomes valid at t: it bounds the verdict when t lies after the
// verification time.
func (w *Window) Starts(t time.Time) {
	if t.After(w.Now) {
		w.Ends(t)
	}
}

// Certificates notes the start of every certificate a verification could pick from.
func (w *Window) Certificates(certs []*x509.Certificate) {
	for _, c := range certs {
		w.Starts(c.NotBefore)
	}
}
