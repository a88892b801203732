// Package dcap verifies Intel DCAP ECDSA quotes (SGX quote v3, TDX quote v4/v5) from the pieces
// the sgx and tdx packages parse: it runs the signature and certificate checks of package verify
// and, when collateral is given, the TCB decisions of package validate, in Intel's order.
//
// Sub-packages keep the concerns apart: abi parses bytes, verify checks cryptography and
// validity times to the key-pinned Intel SGX Root CA, validate decides TCB status. This package
// must never report a quote as verified unless every signature and chain checked out, and never
// report a TCB status that collateral did not decide.
package dcap

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/validate"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/verify"
	"github.com/inclavare-containers/inclavare-go/attestation/internal/validity"
)

// ErrTrailingData is wrapped when bytes follow a quote's signature data (SGX or TDX) and the
// caller did not allow them.
var ErrTrailingData = errors.New("trailing data after quote")

// TrailingDataHint names the switch that accepts non-zero bytes after a quote.
const TrailingDataHint = "accept them with Options.AllowTrailingData, shelter --allow-trailing-data"

// ZeroPadding reports whether b holds only zero bytes (true for an empty b).
func ZeroPadding(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ErrNoPCKCertificate is wrapped when a quote names its platform by PPID and no PCK certificate
// from collateral verifies it.
var ErrNoPCKCertificate = errors.New("no PCK certificate for this quote")

// ErrRevokedTCB is returned when collateral says the platform, QE or TDX module TCB is revoked.
var ErrRevokedTCB = errors.New("TCB status Revoked")

// Quote is the parsed evidence to verify.
type Quote struct {
	Header abi.Header
	// Signed is the region the attestation key signed (header and body, as the quote version defines).
	Signed    []byte
	Signature *abi.SignatureData
	// TDX is set for TDX quotes.
	TDX *validate.TDXTCB
}

// Outcome is what Verify established.
type Outcome struct {
	PCK *verify.PCK
	// TCB is nil when no collateral for this platform was given.
	TCB *validate.Decision
	// Collateral describes what was used; nil when no collateral was given.
	Collateral *attestation.CollateralInfo
	// Details are human-facing facts (FMSPC, PCK CA, collateral used, …).
	Details map[string]string
	// ValidUntil is when this outcome stops holding for the same quote and inputs (package
	// attestation/internal/validity): the earliest notAfter of the PCK chain and of the
	// collateral's signer chains, nextUpdate of the TCB info, QE identity and applied CRLs, and
	// the start of any input not yet valid.
	ValidUntil time.Time
}

// Verify checks the quote's signatures and PCK chain at opts.Time() to the pinned Intel root (plus
// opts.IntelRoots, and nothing else), then evaluates its TCB with whatever collateral in
// opts.Collateral (the verifier's own, preferred) and opts.PeerCollateral concerns it.
func Verify(ctx context.Context, q *Quote, opts attestation.Options) (*Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := opts.Time()
	if q.Signature == nil {
		return nil, errors.New("quote has no signature data")
	}
	roots, err := verify.TrustAnchors(opts.IntelRoots)
	if err != nil {
		return nil, err
	}
	anchors := anchorsKey(opts.IntelRoots)
	exp := &validity.Window{Now: now}
	var pck *verify.PCK
	pckSource := "quote"
	if ppid, ok := ppidData(q.Signature.Certification); ok {
		// The quote names the platform by an (encrypted) PPID: the PCK certificate must come
		// from collateral (Intel PCS pckcert). It is found by what the quote proves: its key
		// signed the QE report, and its PCE ID is the quote's.
		if pck, err = pckFromCollateral(q, ppid, opts, roots, anchors, now, exp); err != nil {
			return nil, err
		}
		pckSource = "collateral (certification data: " + ppid.name + ")"
	} else {
		certs, err := pckChainOf(q.Signature.Certification)
		if err != nil {
			return nil, err
		}
		if pck, err = pckChain(certs, roots, anchors, now); err != nil {
			return nil, err
		}
		if err := quoteSignatures(q.Signed, q.Signature, pck); err != nil {
			return nil, err
		}
	}
	exp.Chain(pck.Chain)
	out := &Outcome{PCK: pck, Details: pckDetails(pck, q)}
	out.Details["pck_source"] = pckSource
	if len(opts.Collateral) == 0 && len(opts.PeerCollateral) == 0 {
		out.Details["collateral"] = "none: signatures and PCK chain verified, TCB status not evaluated"
		out.ValidUntil = exp.Until
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := evaluateCollateral(out, q, opts, roots, anchors, now, exp); err != nil {
		return nil, err
	}
	out.ValidUntil = exp.Until
	return out, nil
}

// ppid is certification data that names the platform by PPID instead of carrying its PCK chain.
type ppid struct {
	name   string
	pceid  [2]byte
	pcesvn uint16
	cpusvn [16]byte
}

// ppidData decodes certification data types 1-3: a PPID (clear, or encrypted with RSA-2048 or
// RSA-3072), then CPUSVN, PCESVN and PCE ID.
func ppidData(cd abi.CertificationData) (*ppid, bool) {
	var size int
	switch cd.Type {
	case abi.CertDataPPIDCleartext:
		size = 16
	case abi.CertDataPPIDRSA2048:
		size = 256
	case abi.CertDataPPIDRSA3072:
		size = 384
	default:
		return nil, false
	}
	p := &ppid{name: []string{"", "clear-text PPID", "PPID encrypted with RSA-2048", "PPID encrypted with RSA-3072"}[cd.Type]}
	// Exactly PPID, CPUSVN (16), PCESVN (2), PCE ID (2): anything else is not this type.
	if len(cd.Data) != size+20 {
		return &ppid{name: p.name + fmt.Sprintf(" of %d bytes, want %d", len(cd.Data), size+20)}, true
	}
	rest := cd.Data[size:]
	copy(p.cpusvn[:], rest[:16])
	p.pcesvn = uint16(rest[16]) | uint16(rest[17])<<8
	copy(p.pceid[:], rest[18:20])
	return p, true
}

// pckFromCollateral finds, among the collateral's certificates (the verifier's first), a PCK
// certificate that chains to roots, has the quote's PCE ID, and whose key made the quote's
// signatures valid.
func pckFromCollateral(q *Quote, p *ppid, opts attestation.Options, roots *x509.CertPool, anchors []byte, now time.Time, exp *validity.Window) (*verify.PCK, error) {
	if strings.Contains(p.name, " bytes, want ") {
		return nil, fmt.Errorf("certification data: %s", p.name)
	}
	var certs []*x509.Certificate
	for _, files := range [][][]byte{opts.Collateral, opts.PeerCollateral} {
		c, err := parseCollateral(files)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c.Certificates...)
	}
	// The first candidate that verifies wins: one not yet valid may win later.
	exp.Certificates(certs)
	var leaves, cas []*x509.Certificate
	for _, c := range certs {
		switch c.Subject.CommonName {
		case verify.PCKCertificateCN:
			leaves = append(leaves, c)
		case verify.PCKPlatformCACN, verify.PCKProcessorCACN:
			cas = append(cas, c)
		}
	}
	if len(leaves) == 0 {
		return nil, fmt.Errorf("%w: the quote carries a %s, not its PCK certificate: pass the platform's PCK certificate and its PCK CA as collateral (Intel PCS pckcert)", ErrNoPCKCertificate, p.name)
	}
	var errs []error
	for _, leaf := range leaves {
		for _, ca := range cas {
			pck, err := pckChain([]*x509.Certificate{leaf, ca}, roots, anchors, now)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if pck.Extension.PCEID != p.pceid {
				errs = append(errs, fmt.Errorf("PCK certificate serial %X is for PCE ID %X, the quote's is %X", leaf.SerialNumber, pck.Extension.PCEID, p.pceid))
				continue
			}
			if err := quoteSignatures(q.Signed, q.Signature, pck); err != nil {
				errs = append(errs, fmt.Errorf("PCK certificate serial %X: %w", leaf.SerialNumber, err))
				continue
			}
			return pck, nil
		}
	}
	if len(cas) == 0 {
		errs = append(errs, errors.New("no PCK Platform or Processor CA certificate in collateral"))
	}
	return nil, fmt.Errorf("%w: none in collateral verifies it (%s): %w", ErrNoPCKCertificate, p.name, errors.Join(errs...))
}

func pckDetails(pck *verify.PCK, q *Quote) map[string]string {
	ext := pck.Extension
	d := map[string]string{
		"fmspc":         fmt.Sprintf("%X", ext.FMSPC),
		"pceid":         fmt.Sprintf("%X", ext.PCEID),
		"pcesvn":        strconv.Itoa(int(ext.PCESVN)),
		"cpusvn":        fmt.Sprintf("%x", ext.CPUSVN),
		"pck_ca":        pck.CA,
		"pck_serial":    fmt.Sprintf("%X", pck.Certificate.SerialNumber),
		"pck_not_after": pck.Certificate.NotAfter.UTC().Format(time.RFC3339),
		"sgx_type":      sgxTypeName(ext.SGXType),
		"qe_vendor_id":  fmt.Sprintf("%x", q.Header.QEVendorID),
		"qe_svn":        strconv.Itoa(int(q.Signature.QEReport.ISVSVN)),
		"qe_mrsigner":   fmt.Sprintf("%x", q.Signature.QEReport.MRSIGNER),
		"quote_version": strconv.Itoa(int(q.Header.Version)),
	}
	return d
}

func sgxTypeName(t int) string {
	switch t {
	case abi.SGXTypeStandard:
		return "Standard"
	case abi.SGXTypeScalable:
		return "Scalable"
	case abi.SGXTypeScalableWithIntegrity:
		return "ScalableWithIntegrity"
	}
	return strconv.Itoa(t)
}

func evaluateCollateral(out *Outcome, q *Quote, opts attestation.Options, roots *x509.CertPool, anchors []byte, now time.Time, exp *validity.Window) error {
	own, err := parseCollateral(opts.Collateral)
	if err != nil {
		return err
	}
	peer, err := parseCollateral(opts.PeerCollateral)
	if err != nil {
		return fmt.Errorf("peer's %w", err)
	}
	tcbID, qeID := abi.TCBInfoIDSGX, abi.QEIdentityIDSGX
	if q.TDX != nil {
		tcbID, qeID = abi.TCBInfoIDTDX, abi.QEIdentityIDTDX
	}
	ext := out.PCK.Extension
	tcbInfosIn := func(c *abi.Collateral) []*abi.TCBInfo {
		var out []*abi.TCBInfo
		for _, ti := range c.TCBInfos {
			if ti.ID == tcbID && ti.FMSPC == ext.FMSPC && ti.PCEID == ext.PCEID {
				out = append(out, ti)
			}
		}
		return out
	}
	qeIdentitiesIn := func(c *abi.Collateral) []*abi.QEIdentity {
		var out []*abi.QEIdentity
		for _, qi := range c.QEIdentities {
			if qi.ID == qeID {
				out = append(out, qi)
			}
		}
		return out
	}
	// The verifier's own TCB info and QE identity win: a peer picks what it sends and could pick
	// an older, more favourable TCB info. The peer's are used only where the verifier has none.
	// Certificates and CRLs are pooled: certificates only help build chains to the trusted roots,
	// and a CRL can only revoke.
	info := &attestation.CollateralInfo{CheckedAt: now}
	tcbInfos, qeIdentities := tcbInfosIn(own), qeIdentitiesIn(own)
	tcbSource, qeSource := attestation.SourceVerifier, attestation.SourceVerifier
	if len(tcbInfos) == 0 {
		tcbInfos, tcbSource = tcbInfosIn(peer), attestation.SourcePeer
	}
	if len(qeIdentities) == 0 {
		qeIdentities, qeSource = qeIdentitiesIn(peer), attestation.SourcePeer
	}
	source := tcbSource
	if tcbSource != qeSource {
		source = attestation.SourceVerifier + "+" + attestation.SourcePeer
	}
	col := &abi.Collateral{
		Certificates: append(append([]*x509.Certificate(nil), own.Certificates...), peer.Certificates...),
		CRLs:         append(append([]*x509.RevocationList(nil), own.CRLs...), peer.CRLs...),
	}
	out.Collateral = info
	// Certificates not yet valid may build other chains later; a TCB info or QE identity not
	// yet issued may become the newest valid one (and decide another status).
	exp.Certificates(col.Certificates)
	for _, qi := range qeIdentities {
		exp.Starts(qi.IssueDate)
	}
	for _, ti := range tcbInfos {
		exp.Starts(ti.IssueDate)
	}

	// QE identity first: the quoting enclave vouches for everything else in the quote.
	chains := [][]*x509.Certificate{out.PCK.Chain}
	var qi *abi.QEIdentity
	if len(qeIdentities) > 0 {
		var chain []*x509.Certificate
		qi, chain, err = newestValid(qeIdentities, func(qi *abi.QEIdentity) ([]*x509.Certificate, error) {
			return signedBy(qi.Raw, qi.Signature, qi.IssueDate, qi.NextUpdate, col.Certificates, anchors, now,
				func() ([]*x509.Certificate, error) { return verify.QEIdentity(qi, col.Certificates, roots, now) })
		}, func(qi *abi.QEIdentity) uint32 { return qi.TCBEvaluationDataNumber })
		if err != nil {
			return err
		}
		chains = append(chains, chain)
		exp.Chain(chain)
		exp.Ends(qi.NextUpdate)
	}
	var ti *abi.TCBInfo
	if len(tcbInfos) > 0 {
		var chain []*x509.Certificate
		ti, chain, err = newestValid(tcbInfos, func(ti *abi.TCBInfo) ([]*x509.Certificate, error) {
			return signedBy(ti.Raw, ti.Signature, ti.IssueDate, ti.NextUpdate, col.Certificates, anchors, now,
				func() ([]*x509.Certificate, error) { return verify.TCBInfo(ti, col.Certificates, roots, now) })
		}, func(ti *abi.TCBInfo) uint32 { return ti.TCBEvaluationDataNumber })
		if err != nil {
			return err
		}
		chains = append(chains, chain)
		exp.Chain(chain)
		exp.Ends(ti.NextUpdate)
	}

	rev, err := verify.RevocationWith(chains, col.CRLs, now, crlSignature)
	if err != nil {
		return err
	}
	info.CRLs, info.RevocationChecked = rev.Applied, rev.Complete
	for _, d := range rev.ThisUpdates {
		info.NoteIssued(d)
	}
	for _, d := range rev.NextUpdates {
		exp.Ends(d)
	}
	if len(rev.Applied) > 0 {
		out.Details["crl_checked"] = strings.Join(rev.Applied, ", ")
	} else {
		out.Details["crl_checked"] = "none"
	}
	if len(rev.Missing) > 0 {
		out.Details["crl_missing"] = strings.Join(rev.Missing, ", ")
	}

	switch {
	case ti == nil && qi == nil:
		out.Details["collateral"] = fmt.Sprintf("no %s TCB info for FMSPC %X and no %s identity: TCB status not evaluated", tcbID, ext.FMSPC, qeID)
		return nil
	// A TCB status needs both: say what is missing and what the signatures established; the
	// status stays undecided, which a policy that needs one rejects.
	case ti == nil:
		out.Details["collateral"] = fmt.Sprintf("incomplete: %s identity (issued %s) verified, but no %s TCB info for FMSPC %X: TCB status not decided",
			qeID, qi.IssueDate.UTC().Format(time.RFC3339), tcbID, ext.FMSPC)
		info.NoteIssued(qi.IssueDate)
		return nil
	case qi == nil:
		out.Details["collateral"] = fmt.Sprintf("incomplete: %s TCB info for FMSPC %X (issued %s) verified, but no %s identity: TCB status not decided",
			tcbID, ext.FMSPC, ti.IssueDate.UTC().Format(time.RFC3339), qeID)
		info.NoteIssued(ti.IssueDate)
		return nil
	}

	d, err := validate.TCB(ti, qi, validate.Platform{PCK: ext, QEReport: q.Signature.QEReport, TDX: q.TDX})
	if err != nil {
		return err
	}
	out.TCB = d
	info.Source = source
	info.NoteIssued(ti.IssueDate)
	info.NoteIssued(qi.IssueDate)
	out.Details["collateral"] = "TCB info and QE identity verified"
	out.Details["collateral_source"] = source
	out.Details["tcb_date"] = d.TCBDate.UTC().Format(time.RFC3339)
	out.Details["tcb_evaluation_data_number"] = strconv.Itoa(int(d.TCBEvaluationDataNumber))
	out.Details["platform_tcb_status"] = d.PlatformStatus
	out.Details["qe_tcb_status"] = d.QEStatus
	if d.ModuleStatus != "" {
		out.Details["tdx_module_tcb_status"] = d.ModuleStatus
	}
	return refuseRevoked(d)
}

// refuseRevoked turns a Revoked decision into an error: Intel has withdrawn its trust in that
// platform, QE or TDX module, so no policy may accept it.
func refuseRevoked(d *validate.Decision) error {
	if d.Status == validate.Revoked {
		return fmt.Errorf("%w (platform %s, QE %s, TDX module %q)", ErrRevokedTCB, d.PlatformStatus, d.QEStatus, d.ModuleStatus)
	}
	return nil
}

// newestValid verifies every candidate and returns the valid one with the highest TCB evaluation
// data number, or the errors of all of them when none verifies.
func newestValid[T any](candidates []T, check func(T) ([]*x509.Certificate, error), number func(T) uint32) (T, []*x509.Certificate, error) {
	type valid struct {
		v     T
		chain []*x509.Certificate
	}
	var ok []valid
	var errs []error
	for _, c := range candidates {
		chain, err := check(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok = append(ok, valid{c, chain})
	}
	if len(ok) == 0 {
		var zero T
		return zero, nil, errors.Join(errs...)
	}
	sort.SliceStable(ok, func(i, j int) bool { return number(ok[i].v) > number(ok[j].v) })
	return ok[0].v, ok[0].chain, nil
}
