package dcap

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/memo"

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

// CacheVerifications turns the memo on or off (it is on by default); off, every verification
// does every check (for cold benchmarks, and for callers who want no state kept). It covers every
// verifier's memo (internal/memo).
func CacheVerifications(on bool) { memo.SetEnabled(on) }

type pckMemo struct {
	pck *verify.PCK
	w   memo.Window
}

type signerMemo struct {
	chain []*x509.Certificate
	w     memo.Window
}

var (
	pemChains = memo.New[[]*x509.Certificate]()
	files     = memo.New[*abi.Collateral]()
	pckChains = memo.New[pckMemo]()
	signers   = memo.New[signerMemo]()
	crlSigs   = memo.New[bool]()
	qeSigs    = memo.New[bool]()
)

// anchorsKey names the trust anchors beyond the built-in root: results are kept per anchor set.
func anchorsKey(extra []*x509.Certificate) []byte { return memo.CertsKey(extra) }

// pckChainOf parses a type-5 certification data's PEM chain, remembered by its bytes.
func pckChainOf(cd abi.CertificationData) ([]*x509.Certificate, error) {
	k := memo.Key([]byte("pem"), []byte{byte(cd.Type)}, cd.Data)
	if certs, ok := pemChains.Get(k); ok {
		return certs, nil
	}
	certs, err := cd.PCKChain()
	if err != nil {
		return nil, err
	}
	pemChains.Put(k, certs)
	return certs, nil
}

// parseCollateral is abi.ParseCollateral with each file's parse remembered by its bytes.
func parseCollateral(raw [][]byte) (*abi.Collateral, error) {
	out := &abi.Collateral{}
	for i, f := range raw {
		k := memo.Key([]byte("file"), f)
		c, ok := files.Get(k)
		if !ok {
			var err error
			if c, err = abi.ParseCollateral([][]byte{f}); err != nil {
				return nil, fmtFileError(i, err)
			}
			files.Put(k, c)
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
	k := memo.Key(parts...)
	if m, ok := pckChains.Get(k); ok && m.w.Holds(now) {
		return m.pck, nil
	}
	pck, err := verify.PCKChain(certs, roots, now)
	if err != nil {
		return nil, err
	}
	pckChains.Put(k, pckMemo{pck: pck, w: memo.ChainWindow(pck.Chain)})
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
	k := memo.Key(parts...)
	if m, ok := signers.Get(k); ok && m.w.Holds(now) {
		return m.chain, nil
	}
	chain, err := check()
	if err != nil {
		return nil, err
	}
	signers.Put(k, signerMemo{chain: chain, w: memo.ChainWindow(chain).Narrow(issued, next)})
	return chain, nil
}

// crlSignature is crl.CheckSignatureFrom(issuer), remembered when it holds.
func crlSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	k := memo.Key([]byte("crl"), crl.Raw, issuer.Raw)
	if _, ok := crlSigs.Get(k); ok {
		return nil
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return err
	}
	crlSigs.Put(k, true)
	return nil
}

// quoteSignatures is verify.QuoteSignatures with the QE report's signature by this PCK key
// remembered: a platform's QE report repeats in every quote while its attestation key lives, so
// a known platform's quote costs one signature check, its own.
func quoteSignatures(signed []byte, sd *abi.SignatureData, pck *verify.PCK) error {
	if sd == nil || sd.QEReport == nil {
		return errors.New("quote has no QE report")
	}
	k := memo.Key([]byte("qe"), pck.Certificate.Raw, sd.QEReportRaw, sd.QEReportSignature[:])
	if _, ok := qeSigs.Get(k); !ok {
		if err := verify.QEReportSignature(sd, pck.Key); err != nil {
			return err
		}
		qeSigs.Put(k, true)
	}
	return verify.AttestationKeySignature(signed, sd)
}
