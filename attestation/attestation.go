// Package attestation is the one model of TEE evidence that Enclave-TLS, inclavared and shelter use.
//
// Each TEE lives in its own sub-package that parses its bytes, verifies signatures and certificate chains
// to a pinned root, and registers a Verifier (and, where it can produce evidence, an Attester) here.
// This package never touches a TEE's bytes itself; it must never report Verified for evidence that a
// TEE package did not check all the way to a root of trust.
package attestation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
)

// TEE names a kind of trusted execution environment, spelled as in ENCLAVE_TYPE. It is package
// tee's type, which the runtime side names without linking this package.
type TEE = tee.TEE

// The TEEs (package tee's).
const (
	SGX = tee.SGX
	TDX = tee.TDX
	SNP = tee.SNP
	// Sim is the software TEE: evidence signed by a simulated platform key. It proves nothing about
	// confidentiality and is accepted only where a policy allows it.
	Sim = tee.Sim
)

// ReportDataSize is the size of the caller-chosen data every TEE binds into its evidence.
const ReportDataSize = 64

// Options are what a verification depends on besides the evidence itself.
//
// Trust anchors are kept per TEE: a certificate trusted for one TEE is never trusted for another.
// The node operator holds the sim platform key, so a sim anchor must never be able to vouch for a
// PCK chain, a TCB info or an AMD chain; and a root passed for one vendor never widens another's.
type Options struct {
	// Now is the time at which certificates and collateral must be valid; zero means time.Now().
	Now time.Time
	// SimRoots are the sim platform certificates (rune sim-platform-cert) whose endorsements sim
	// evidence may carry. Nothing is built in: without one, sim evidence never verifies.
	SimRoots []*x509.Certificate
	// IntelRoots are roots for DCAP (SGX, TDX) certificate chains in addition to the built-in
	// Intel SGX Root CA (pinned by its public key), passed explicitly as Intel roots (for example
	// Intel's pre-production PKI). Each must be a self-signed CA certificate.
	IntelRoots []*x509.Certificate
	// AMDRoots are ARK certificates for SEV-SNP chains in addition to the built-in, pinned ARKs
	// of every product line. Each must be a self-signed CA named ARK-<product line>.
	AMDRoots []*x509.Certificate
	// Collateral holds raw files the verifier itself holds (TCB info, QE identity, CRLs,
	// certificate chains, VCEK …); each TEE verifier picks what it recognises by content.
	Collateral [][]byte
	// PeerCollateral holds collateral the attested peer sent (RA-TLS endorsements). The peer
	// chooses it, so Collateral wins: a TCB info or QE identity from the peer is used only when
	// the verifier holds none for that platform, and what the peer sends can only add
	// certificates to build chains to the trusted roots and CRLs to revoke with.
	PeerCollateral [][]byte
	// AllowTrailingData accepts bytes after the end of the evidence structure. Off by default:
	// strict parsing is the safe choice.
	AllowTrailingData bool
	// Source, when set, fetches collateral for the evidence (Intel PCS or a PCCS, AMD KDS,
	// through a cache) before it is verified; what it returns counts as the verifier's own.
	Source CollateralSource
}

// CollateralSource finds collateral for one piece of evidence of a known TEE. It fetches only
// public, signed data: nothing it returns is trusted until a verifier checked it to its TEE's
// anchors.
type CollateralSource interface {
	Collateral(ctx context.Context, tee TEE, evidence []byte, opts Options) ([][]byte, error)
}

// Time returns the verification time.
func (o Options) Time() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// Result is what a verifier established. A TEE package fills Measurements with lower-case hex values
// under its own names (for example "mrenclave", "mrsigner", "mrtd", "rtmr0", "measurement").
type Result struct {
	TEE TEE `json:"tee"`
	// Verified is true only when every signature and chain up to a trusted root checked out.
	Verified bool `json:"verified"`
	// TCBStatus is the platform TCB status from collateral ("UpToDate", "SWHardeningNeeded", …), or
	// "" when no collateral decided it.
	TCBStatus    string            `json:"tcb_status"`
	Advisories   []string          `json:"advisories,omitempty"`
	Measurements map[string]string `json:"measurements"`
	ReportData   []byte            `json:"report_data"`
	// Debug reports whether the TEE allows debugging of the workload (its memory is then not secret).
	Debug bool `json:"debug"`
	// ProductID and SVN are the signer-assigned product and security version, where the TEE has them.
	ProductID *uint64 `json:"product_id,omitempty"`
	SVN       *uint64 `json:"svn,omitempty"`
	// Signer is the hex identity of who signed the workload (MRSIGNER for SGX), where the TEE has one.
	Signer string `json:"signer,omitempty"`
	// Details holds TEE-specific facts worth showing to a human (FMSPC, firmware versions, …).
	Details map[string]string `json:"details,omitempty"`
	// Collateral says what the verdict's collateral was, for policies that demand revocation
	// checks or fresh collateral; nil when no collateral was used.
	Collateral *CollateralInfo `json:"collateral,omitempty"`
	// ValidUntil is when the first certificate or collateral the verdict rests on expires, after
	// which the same evidence would no longer verify, or, if earlier, when an input not yet valid
	// starts (it could change the verdict). Zero when the verifier does not say: a caller that
	// reuses a verdict (enclavetls's verdict cache) must then not reuse it.
	ValidUntil time.Time `json:"valid_until,omitzero"`
}

// Collateral sources.
const (
	// SourceVerifier is collateral the verifier holds itself (Options.Collateral).
	SourceVerifier = "verifier"
	// SourcePeer is collateral the attested peer sent (Options.PeerCollateral).
	SourcePeer = "peer"
)

// CollateralInfo describes the collateral a verdict rests on.
type CollateralInfo struct {
	// Source is where the signed collateral that decided the TCB status (TCB info and QE
	// identity; SNP: the VCEK) came from: SourceVerifier, SourcePeer, or "verifier+peer" when
	// the verifier held one of the two and the peer sent the other ("" when none decided it).
	Source string `json:"source,omitempty"`
	// Oldest is the issue date of the oldest signed collateral used (TCB info and QE identity
	// issueDate, CRL thisUpdate); zero when none was dated.
	Oldest time.Time `json:"oldest,omitzero"`
	// CRLs names the certificate authorities whose revocation lists were applied.
	CRLs []string `json:"crls,omitempty"`
	// RevocationChecked is true when every authority that issued a certificate of the verified
	// chains had its CRL applied.
	RevocationChecked bool `json:"revocation_checked"`
	// CheckedAt is the verification time the collateral was judged at (Options.Time()).
	CheckedAt time.Time `json:"checked_at"`
}

// NoteIssued records issued as a collateral date, keeping the oldest.
func (c *CollateralInfo) NoteIssued(issued time.Time) {
	if issued.IsZero() {
		return
	}
	if c.Oldest.IsZero() || issued.Before(c.Oldest) {
		c.Oldest = issued
	}
}

// Verifier checks one TEE's evidence.
type Verifier interface {
	TEE() TEE
	// Match reports whether evidence looks like this TEE's format. It must be cheap and must not
	// imply anything about validity.
	Match(evidence []byte) bool
	// Verify parses and verifies evidence. It returns an error unless the evidence verified.
	Verify(ctx context.Context, evidence []byte, opts Options) (*Result, error)
}

// Attester produces evidence binding reportData on this machine.
type Attester interface {
	TEE() TEE
	// Available reports whether the TEE is usable here, and if not why (for example the missing device).
	Available() error
	Evidence(ctx context.Context, reportData [ReportDataSize]byte) ([]byte, error)
}

// ErrUnknownFormat is returned when no registered verifier recognises the evidence.
var ErrUnknownFormat = errors.New("evidence format not recognised")

var (
	mu        sync.RWMutex
	verifiers = map[TEE]Verifier{}
	attesters = map[TEE]Attester{}
)

// RegisterVerifier makes v available to Verify and VerifierFor. TEE packages call it from init.
func RegisterVerifier(v Verifier) {
	mu.Lock()
	defer mu.Unlock()
	verifiers[v.TEE()] = v
}

// RegisterAttester makes a available to AttesterFor.
func RegisterAttester(a Attester) {
	mu.Lock()
	defer mu.Unlock()
	attesters[a.TEE()] = a
}

// VerifierFor returns the verifier registered for tee.
func VerifierFor(tee TEE) (Verifier, error) {
	mu.RLock()
	defer mu.RUnlock()
	v, ok := verifiers[tee]
	if !ok {
		return nil, fmt.Errorf("no verifier for TEE %q (known: %v)", tee, knownLocked(verifiers))
	}
	return v, nil
}

// AttesterFor returns the attester registered for tee.
func AttesterFor(tee TEE) (Attester, error) {
	mu.RLock()
	defer mu.RUnlock()
	a, ok := attesters[tee]
	if !ok {
		return nil, fmt.Errorf("no attester for TEE %q (known: %v)", tee, knownLocked(attesters))
	}
	return a, nil
}

// Detect returns the verifier whose format matches evidence.
func Detect(evidence []byte) (Verifier, error) {
	mu.RLock()
	defer mu.RUnlock()
	for _, tee := range knownLocked(verifiers) {
		if v := verifiers[tee]; v.Match(evidence) {
			return v, nil
		}
	}
	return nil, ErrUnknownFormat
}

// Verify unwraps evidence from the forms tools emit it in (Unwrap), detects its format and
// verifies it. A form other than the bare binary is named in Result.Details["evidence_form"].
func Verify(ctx context.Context, evidence []byte, opts Options) (*Result, error) {
	raw, forms := Unwrap(evidence)
	v, err := Detect(raw)
	if err != nil {
		return nil, err
	}
	res, err := VerifyWith(ctx, v, raw, opts)
	if err != nil {
		return nil, err
	}
	NoteForms(res, forms)
	return res, nil
}

// VerifyWith verifies raw evidence with v, after adding what opts.Source finds for it to the
// verifier's collateral.
func VerifyWith(ctx context.Context, v Verifier, raw []byte, opts Options) (*Result, error) {
	if opts.Source != nil {
		files, err := opts.Source.Collateral(ctx, v.TEE(), raw, opts)
		if err != nil {
			return nil, fmt.Errorf("fetch collateral: %w", err)
		}
		opts.Collateral = append(opts.Collateral[:len(opts.Collateral):len(opts.Collateral)], files...)
	}
	return v.Verify(ctx, raw, opts)
}

// NoteForms records in res.Details the forms (from Unwrap) the evidence came in, unless it was
// the bare binary.
func NoteForms(res *Result, forms []string) {
	if len(forms) == 0 || (len(forms) == 1 && forms[0] == FormBinary) {
		return
	}
	if res.Details == nil {
		res.Details = map[string]string{}
	}
	res.Details["evidence_form"] = strings.Join(forms, "+")
}

func knownLocked[T any](m map[TEE]T) []TEE {
	out := make([]TEE, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
