package shelter

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/snp"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
)

// Kinds of input Verify recognises.
const (
	KindEvidence    = "evidence"
	KindCertificate = "ra-tls-certificate"
	// KindEndorsementKey is an AMD VCEK or VLEK certificate given alone: its verdict is its chain
	// to AMD's root (attestation/snp.VerifyEndorsementKey); it is not evidence of any guest.
	KindEndorsementKey = "endorsement-key-certificate"
)

// Report is the verdict on one piece of evidence, for humans (WriteText) and scripts (JSON).
type Report struct {
	Subject string `json:"subject,omitempty"` // file name or peer ("inclavared", "container")
	Kind    string `json:"kind"`
	// Format is the RA-TLS certificate format, for certificates.
	Format string `json:"format,omitempty"`

	TEE          string            `json:"tee"`
	Verified     bool              `json:"verified"`
	TCBStatus    string            `json:"tcb_status"`
	Advisories   []string          `json:"advisories,omitempty"`
	Measurements map[string]string `json:"measurements"`
	ReportData   string            `json:"report_data"`
	Debug        bool              `json:"debug"`
	ProductID    *uint64           `json:"product_id,omitempty"`
	SVN          *uint64           `json:"svn,omitempty"`
	Signer       string            `json:"signer,omitempty"`
	Details      map[string]string `json:"details,omitempty"`
	// KeyBound (certificates) is true when the evidence binds the certificate's public key; Fresh
	// when it also binds the verifier's nonce.
	KeyBound bool `json:"key_bound,omitempty"`
	Fresh    bool `json:"fresh,omitempty"`

	// Simulated is true for sim evidence: no hardware, no confidentiality.
	Simulated bool `json:"simulated"`

	Policy PolicyVerdict `json:"policy"`
	Errors []string      `json:"errors"`
	// Decided is false when no policy was given: the facts above were established, but nothing
	// judged whether they are acceptable.
	Decided bool `json:"decided"`
	// OK is the verdict: verified and a policy held. Without a policy it is always false, except
	// for an endorsement-key certificate, where it is the chain verdict (no policy applies).
	OK bool `json:"ok"`

	result *attestation.Result
}

// PolicyVerdict says whether a policy was checked and what failed.
type PolicyVerdict struct {
	Checked    bool        `json:"checked"`
	Satisfied  bool        `json:"satisfied"`
	Violations []Violation `json:"violations"`
}

// Violation is one failed policy rule.
type Violation struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// VerifyInput is one verification job.
type VerifyInput struct {
	Subject string
	Data    []byte
	Options attestation.Options
	// Policy, when set, is checked; nil means "report what verified, check no policy".
	Policy *policy.Policy
	// Nonce, for certificates, is what the evidence must bind (nil: none).
	Nonce []byte
}

// Verify recognises in.Data (a quote, an SNP report, sim evidence, or an RA-TLS certificate in PEM
// or DER), verifies it and checks the policy. It never fails: problems are in Report.Errors, and
// Report.OK is false.
func Verify(ctx context.Context, in VerifyInput) *Report {
	r := &Report{Subject: in.Subject, Kind: KindEvidence, Measurements: map[string]string{}, Errors: []string{}}
	// Evidence formats start with fixed headers, so they are recognised first: a quote can hold PEM
	// certificates (its PCK chain) and must not be taken for a certificate file.
	// Text forms (PEM, hex, base64) and the Open Enclave header are unwrapped first.
	raw, forms := attestation.Unwrap(in.Data)
	if v, err := attestation.Detect(raw); err == nil {
		r.TEE = string(v.TEE())
		switch res, err := attestation.VerifyWith(ctx, v, raw, in.Options); {
		case in.Nonce != nil:
			r.fail(errors.New("a nonce can only be checked in an RA-TLS certificate's claims; check raw evidence's report data with a policy"))
		case err != nil:
			r.fail(err)
		default:
			attestation.NoteForms(res, forms)
			r.setResult(res)
		}
		r.checkPolicy(in.Policy)
		return r
	}
	cert, err := certificateIn(in.Data)
	if cert != nil {
		if ek, err := snp.VerifyEndorsementKey(cert, in.Options); !errors.Is(err, snp.ErrNotEndorsementKey) {
			return endorsementKeyReport(in, ek, err)
		}
	}
	switch {
	case err != nil:
		r.Kind = KindCertificate
		r.fail(err)
	case cert == nil:
		r.fail(errors.New("not evidence of a known format (SGX/TDX quote, SNP report, sim evidence) nor an RA-TLS, VCEK or VLEK certificate"))
	default:
		r.Kind = KindCertificate
		p, err := enclavetls.VerifyCertificate(ctx, cert, in.Options, in.Nonce)
		if err != nil {
			r.TEE = teeOfCertificate(cert)
			r.fail(err)
			break
		}
		r.Format = string(p.Format)
		r.KeyBound, r.Fresh = true, p.Fresh
		r.setResult(p.Result)
	}
	r.checkPolicy(in.Policy)
	return r
}

// endorsementKeyReport reports an AMD VCEK or VLEK given alone. Its chain is the whole verdict: it
// says nothing about a guest, so a policy or nonce cannot be checked against it.
func endorsementKeyReport(in VerifyInput, ek *snp.EndorsementKey, err error) *Report {
	r := &Report{Subject: in.Subject, Kind: KindEndorsementKey, TEE: string(attestation.SNP), Measurements: map[string]string{},
		Errors: []string{}, Policy: PolicyVerdict{Violations: []Violation{}}, Decided: true}
	if err != nil {
		r.fail(err)
		return r
	}
	r.Verified, r.Details = true, ek.Details()
	if in.Policy != nil || in.Nonce != nil {
		r.fail(errors.New("a VCEK or VLEK certificate is not evidence: no policy or nonce can be checked against it"))
		return r
	}
	r.OK = true
	return r
}

// FromPeer reports a peer that an Enclave-TLS handshake verified.
func FromPeer(subject string, p *enclavetls.Peer, pol *policy.Policy) *Report {
	r := &Report{Subject: subject, Kind: KindCertificate, Format: string(p.Format), Measurements: map[string]string{},
		Errors: []string{}, KeyBound: true, Fresh: p.Fresh}
	r.setResult(p.Result)
	r.checkPolicy(pol)
	return r
}

// Failed reports a subject that could not be verified at all (a failed handshake).
func Failed(subject string, err error) *Report {
	r := &Report{Subject: subject, Kind: KindCertificate, Measurements: map[string]string{}, Errors: []string{}}
	r.fail(err)
	r.Simulated = r.TEE == string(attestation.Sim)
	// A handshake that failed on policy carries the violations in its error.
	if vs := violationsIn(err); len(vs) > 0 {
		r.Policy.Checked = true
		r.Policy.Violations = vs
	}
	return r
}

func (r *Report) fail(err error) {
	r.Errors = append(r.Errors, err.Error())
	r.OK = false
	r.Decided = true
}

func (r *Report) setResult(res *attestation.Result) {
	r.TEE = string(res.TEE)
	r.Verified = res.Verified
	r.TCBStatus = res.TCBStatus
	r.Advisories = res.Advisories
	if res.Measurements != nil {
		r.Measurements = res.Measurements
	}
	r.ReportData = hex.EncodeToString(res.ReportData)
	r.Debug = res.Debug
	r.ProductID, r.SVN = res.ProductID, res.SVN
	r.Signer = res.Signer
	r.Details = res.Details
	r.OK = res.Verified
	r.result = res
}

func (r *Report) checkPolicy(pol *policy.Policy) {
	// Evidence that claims to be sim is flagged even when it failed: a reader must never take it
	// for hardware.
	r.Simulated = r.TEE == string(attestation.Sim)
	r.Policy.Violations = []Violation{}
	if pol == nil {
		// Verified evidence of a debug enclave, a simulated TEE or an unknown workload is not
		// acceptable by itself: without reference values there is no verdict to give.
		r.Decided = !r.OK // a failure is decided; a success is not
		r.OK = false
		return
	}
	r.Decided = true
	r.Policy.Checked = true
	if r.result == nil || !r.result.Verified {
		r.Policy.Violations = append(r.Policy.Violations, Violation{Rule: "verified", Message: "evidence was not verified"})
		r.OK = false
		return
	}
	if err := pol.Check(r.result); err != nil {
		r.Policy.Violations = violationsIn(err)
		if len(r.Policy.Violations) == 0 {
			r.Policy.Violations = []Violation{{Rule: "policy", Message: err.Error()}}
		}
		r.OK = false
		return
	}
	r.Policy.Satisfied = true
}

// violationsIn collects policy violations anywhere in err's tree (wrapped or joined).
func violationsIn(err error) []Violation {
	var out []Violation
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case nil:
		case *policy.Violation:
			out = append(out, Violation{Rule: x.Rule, Message: x.Message})
		case interface{ Unwrap() []error }:
			for _, y := range x.Unwrap() {
				walk(y)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// certificateIn returns the certificate data holds (one PEM CERTIFICATE block, or DER), nil when
// data is not a certificate, or an error for a malformed PEM certificate file.
func certificateIn(data []byte) (*x509.Certificate, error) {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		certs, err := attestation.ParsePEMCertificates(data)
		if err != nil {
			return nil, err
		}
		if len(certs) != 1 {
			return nil, fmt.Errorf("%d certificates in the file: give the RA-TLS certificate alone", len(certs))
		}
		return certs[0], nil
	}
	if c, err := x509.ParseCertificate(data); err == nil {
		return c, nil
	}
	return nil, nil
}

// teeOfCertificate guesses, for reporting only, which TEE a certificate that failed to verify
// claims to come from.
func teeOfCertificate(cert *x509.Certificate) string {
	for _, e := range cert.Extensions {
		switch {
		case e.Id.Equal(enclavetls.OIDLegacySGXECDSAQuote):
			return string(attestation.SGX)
		case e.Id.Equal(enclavetls.OIDLegacyTDXQuote):
			return string(attestation.TDX)
		case e.Id.Equal(enclavetls.OIDLegacySNPReport):
			return string(attestation.SNP)
		case e.Id.Equal(enclavetls.OIDTaggedEvidence):
			if te, err := enclavetls.ParseTaggedEvidence(e.Value); err == nil {
				if v, err := attestation.Detect(te.Evidence); err == nil {
					return string(v.TEE())
				}
			}
		}
	}
	return ""
}

// maxFileSize bounds a certificate or collateral file: real ones are a few KiB, and a device or
// an endless file must not stall the verifier.
const maxFileSize = 16 << 20

func readBounded(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, maxFileSize)
	}
	return b, nil
}

// LoadCollateral reads collateral files and checks that each is something a verifier recognises:
// a file no verifier takes is an error, never silently ignored (a user who passed a CRL that is
// not read would believe revocation was checked).
func LoadCollateral(paths []string) ([][]byte, error) {
	files, err := LoadFiles(paths)
	if err != nil {
		return nil, err
	}
	for i, f := range files {
		if _, err := abi.ParseCollateral([][]byte{f}); err != nil {
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
	}
	return files, nil
}

// LoadFiles reads files whole (collateral is passed raw: verifiers recognise it by content).
func LoadFiles(paths []string) ([][]byte, error) {
	var out [][]byte
	for _, p := range paths {
		b, err := readBounded(p)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
