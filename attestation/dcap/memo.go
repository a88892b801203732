package dcap

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/verify"
)

// A long-lived verifier sees the same platforms' PCK chains and the same TCB infos, QE
// identities and CRLs again and again; only each quote's own signatures are new. The memo keeps
// the results of those pure checks, keyed by the SHA-256 of every input that decides them (the
// bytes checked, the candidate certificates, the trust anchors) and valid only inside the time
// window in which the check holds (the intersection of the certificates' validity and, for
// collateral, [issueDate, nextUpdate]). Revocation is decided at every verification with the
// CRLs given (only a CRL's signature check is remembered), so a revoked certificate is never
// served from the memo, and neither is anything outside its window.

// maxMemo bounds each table; a full table is emptied (the next verifications refill it).
const maxMemo = 4096

var memoOn atomic.Bool

func init() { memoOn.Store(true) }

// CacheVerifications turns the memo on or off (it is on by default); off, every verification
// does every check (for cold benchmarks, and for callers who want no state kept).
func CacheVerifications(on bool) {
	memoOn.Store(on)
	if !on {
		pemChains.reset()
		files.reset()
		pckChains.reset()
		signers.reset()
		crlSigs.reset()
		qeSigs.reset()
	}
}

type memoTable[V any] struct {
	mu sync.Mutex
	m  map[[32]byte]V
}

func (t *memoTable[V]) get(k [32]byte) (V, bool) {
	if !memoOn.Load() {
		var zero V
		return zero, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[k]
	return v, ok
}

func (t *memoTable[V]) put(k [32]byte, v V) {
	if !memoOn.Load() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxMemo {
		t.m = map[[32]byte]V{}
	}
	t.m[k] = v
}

func (t *memoTable[V]) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m = nil
}

// window is when a remembered check holds.
type window struct{ from, until time.Time }

func (w window) holds(now time.Time) bool { return !now.Before(w.from) && !now.After(w.until) }

func chainWindow(chain []*x509.Certificate) window {
	var w window
	for i, c := range chain {
		if i == 0 || c.NotBefore.After(w.from) {
			w.from = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(w.until) {
			w.until = c.NotAfter
		}
	}
	return w
}

type pckMemo struct {
	pck *verify.PCK
	w   window
}

type signerMemo struct {
	chain []*x509.Certificate
	w     window
}

var (
	pemChains memoTable[[]*x509.Certificate]
	files     memoTable[*abi.Collateral]
	pckChains memoTable[pckMemo]
	signers   memoTable[signerMemo]
	crlSigs   memoTable[bool]
	qeSigs    memoTable[bool]
)

// key hashes its parts, each prefixed by its length so that no two inputs collide by framing.
func key(parts ...[]byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		l := uint64(len(p))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// anchorsKey names the trust anchors beyond the built-in root: results are kept per anchor set.
func anchorsKey(extra []*x509.Certificate) []byte {
	parts := make([][]byte, 0, len(extra))
	for _, c := range extra {
		parts = append(parts, c.Raw)
	}
	k := key(parts...)
	return k[:]
}

// pckChainOf parses a type-5 certification data's PEM chain, remembered by its bytes.
func pckChainOf(cd abi.CertificationData) ([]*x509.Certificate, error) {
	k := key([]byte("pem"), []byte{byte(cd.Type)}, cd.Data)
	if certs, ok := pemChains.get(k); ok {
		return certs, nil
	}
	certs, err := cd.PCKChain()
	if err != nil {
		return nil, err
	}
	pemChains.put(k, certs)
	return certs, nil
}

// parseCollateral is abi.ParseCollateral with each file's parse remembered by its bytes.
func parseCollateral(raw [][]byte) (*abi.Collateral, error) {
	out := &abi.Collateral{}
	for i, f := range raw {
		k := key([]byte("file"), f)
		c, ok := files.get(k)
		if !ok {
			var err error
			if c, err = abi.ParseCollateral([][]byte{f}); err != nil {
				return nil, fmtFileError(i, err)
			}
			files.put(k, c)
		}
		out.TCBInfos = append(out.TCBInfos, c.TCBInfos...)
		out.QEIdentities = append(out.QEIdentities, c.QEIdentities...)
		out.Certificates = append(out.Certificates, c.Certificates...)
		out.CRLs = append(out.CRLs, c.CRLs...)
	}
	return out, nil
}

// fmtFileError names file i in a one-file parse's error (which calls every file number 0).
func fmtFileError(i int, err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		err = inner
	}
	return fmt.Errorf("collateral file %d: %w", i, err)
}

// pckChain is verify.PCKChain, remembered for the chain's validity window.
func pckChain(certs []*x509.Certificate, roots *x509.CertPool, anchors []byte, now time.Time) (*verify.PCK, error) {
	parts := [][]byte{[]byte("pck"), anchors}
	for _, c := range certs {
		parts = append(parts, c.Raw)
	}
	k := key(parts...)
	if m, ok := pckChains.get(k); ok && m.w.holds(now) {
		return m.pck, nil
	}
	pck, err := verify.PCKChain(certs, roots, now)
	if err != nil {
		return nil, err
	}
	pckChains.put(k, pckMemo{pck: pck, w: chainWindow(pck.Chain)})
	return pck, nil
}

// signedBy memoises a TCB info or QE identity signature check (check), for the signer chain's
// validity and the document's [issued, next].
func signedBy(raw, sig []byte, issued, next time.Time, certs []*x509.Certificate, anchors []byte, now time.Time,
	check func() ([]*x509.Certificate, error)) ([]*x509.Certificate, error) {
	parts := [][]byte{[]byte("signed"), anchors, raw, sig}
	for _, c := range certs {
		parts = append(parts, c.Raw)
	}
	k := key(parts...)
	if m, ok := signers.get(k); ok && m.w.holds(now) {
		return m.chain, nil
	}
	chain, err := check()
	if err != nil {
		return nil, err
	}
	w := chainWindow(chain)
	if issued.After(w.from) {
		w.from = issued
	}
	if next.Before(w.until) {
		w.until = next
	}
	signers.put(k, signerMemo{chain: chain, w: w})
	return chain, nil
}

// crlSignature is crl.CheckSignatureFrom(issuer), remembered when it holds.
func crlSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	k := key([]byte("crl"), crl.Raw, issuer.Raw)
	if _, ok := crlSigs.get(k); ok {
		return nil
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return err
	}
	crlSigs.put(k, true)
	return nil
}

// quoteSignatures is verify.QuoteSignatures with the QE report's signature by this PCK key
// remembered: a platform's QE report repeats in every quote while its attestation key lives, so
// a known platform's quote costs one signature check, its own.
func quoteSignatures(signed []byte, sd *abi.SignatureData, pck *verify.PCK) error {
	if sd == nil || sd.QEReport == nil {
		return errors.New("quote has no QE report")
	}
	k := key([]byte("qe"), pck.Certificate.Raw, sd.QEReportRaw, sd.QEReportSignature[:])
	if _, ok := qeSigs.get(k); !ok {
		if err := verify.QEReportSignature(sd, pck.Key); err != nil {
			return err
		}
		qeSigs.put(k, true)
	}
	return verify.AttestationKeySignature(signed, sd)
}
