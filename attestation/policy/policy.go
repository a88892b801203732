// Package policy decides whether verified evidence is acceptable: it compares an
// attestation.Result against reference values from a JSON policy file (used by shelter and
// inclavared).
//
// A policy never makes unverified evidence acceptable: Check rejects every Result whose Verified
// is false, and everything a policy does not allow is rejected (fail closed). It does not parse or
// verify evidence itself; the TEE packages do.
//
// # Format
//
// A policy is one JSON object, decoded strictly by internal/strictjson (unknown fields, duplicate
// keys, keys that differ only in case, field names in another case than written here, null and
// trailing data are errors): a policy has exactly one reading. See testdata/example.json.
//
//	{
//	  "tees": {                     // the allowed TEEs; a TEE not listed here is rejected.
//	    "<tee>": { ... }            // "intelSgx", "tdx", "snp" or "sim"; "sim" is never implied.
//	  }
//	}
//
// Rules for one TEE (all optional except as noted):
//
//	"measurements": {"<name>": ["<hex>", ...]}
//	    Each named measurement (as the TEE package names it: "mrenclave", "mrsigner", "mrtd",
//	    "rtmr0".."rtmr3", "measurement", "host_data", …) must be present and equal one of the
//	    listed values (hex, any case).
//	"signers": ["<hex>", ...]
//	    Result.Signer (MRSIGNER for SGX; ID or author key digest for SNP) must be one of these.
//	"allow_any_measurement": true
//	    Required when neither "measurements" nor "signers" is given, so that accepting any
//	    workload is always a written decision.
//	"product_ids": [<n>, ...]     Result.ProductID must be present and one of these.
//	"min_svn": <n>                Result.SVN must be present and at least n.
//	"tcb_statuses": ["UpToDate", ...]
//	    Accepted platform TCB statuses; default ["UpToDate"].
//	"allow_unknown_tcb": true
//	    Accept an empty TCB status (nothing decided it: no collateral, or a TEE such as SNP or sim
//	    that has no TCB-status service). Default false.
//	"allow_debug": true           Accept debug-capable workloads. Default false.
//	"report_data": "<hex>"
//	    Expected report data, zero-padded to 64 bytes and compared exactly.
//	"details": {"<key>": ["<value>", ...]}
//	    Each named Result.Details entry must be present and equal one of the values
//	    (e.g. SNP "vmpl": ["0"], "policy_migrate_ma": ["false"]).
//	"require_crl": true
//	    Every certificate authority of the verified chains must have had its revocation list
//	    applied (Result.Collateral.RevocationChecked). An attested peer chooses the collateral it
//	    sends and can leave CRLs out; this makes that fail. Not for "sim" (no chains).
//	"max_collateral_age": "<duration>"
//	    The oldest signed collateral used (TCB info, QE identity, CRLs) must have been issued at
//	    most this long before the verification time: Go duration syntax, or whole days as "30d".
//	    A peer could otherwise pick an old TCB info that predates a downgrade. Not for "sim".
package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// maxPolicySize bounds a policy file; real ones are a few KiB.
const maxPolicySize = 1 << 20

// Policy holds reference values per allowed TEE.
type Policy struct {
	TEEs map[attestation.TEE]*TEEPolicy `json:"tees"`
}

// TEEPolicy holds the rules for one TEE. See the package documentation for their meaning.
type TEEPolicy struct {
	Measurements        map[string][]string `json:"measurements,omitempty"`
	Signers             []string            `json:"signers,omitempty"`
	AllowAnyMeasurement bool                `json:"allow_any_measurement,omitempty"`
	ProductIDs          []uint64            `json:"product_ids,omitempty"`
	MinSVN              *uint64             `json:"min_svn,omitempty"`
	TCBStatuses         []string            `json:"tcb_statuses,omitempty"`
	AllowUnknownTCB     bool                `json:"allow_unknown_tcb,omitempty"`
	AllowDebug          bool                `json:"allow_debug,omitempty"`
	ReportData          string              `json:"report_data,omitempty"`
	Details             map[string][]string `json:"details,omitempty"`
	RequireCRL          bool                `json:"require_crl,omitempty"`
	MaxCollateralAge    string              `json:"max_collateral_age,omitempty"`
}

// DefaultTCBStatuses are accepted when a TEE policy names none.
var DefaultTCBStatuses = []string{"UpToDate"}

var knownTEEs = []attestation.TEE{attestation.SGX, attestation.TDX, attestation.SNP, attestation.Sim}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes and validates a policy.
func Parse(data []byte) (*Policy, error) {
	if len(data) > maxPolicySize {
		return nil, fmt.Errorf("parse policy: larger than %d bytes", maxPolicySize)
	}
	var p Policy
	if err := strictjson.Decode(data, &p); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	return &p, nil
}

func (p *Policy) validate() error {
	if len(p.TEEs) == 0 {
		return errors.New(`"tees" must allow at least one TEE`)
	}
	var errs []error
	for _, tee := range sortedTEEs(p.TEEs) {
		tp := p.TEEs[tee]
		if !slices.Contains(knownTEEs, tee) {
			errs = append(errs, fmt.Errorf("unknown TEE %q (known: %v)", tee, knownTEEs))
			continue
		}
		if tp == nil {
			errs = append(errs, fmt.Errorf("%s: rules must be an object", tee))
			continue
		}
		if err := tp.normalise(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tee, err))
		}
		if tee == attestation.Sim && (tp.RequireCRL || tp.MaxCollateralAge != "") {
			errs = append(errs, errors.New(`sim: "require_crl" and "max_collateral_age" concern hardware collateral; sim evidence has none`))
		}
	}
	return errors.Join(errs...)
}

// normalise checks a TEE policy's values and lower-cases hex so comparisons are exact.
func (tp *TEEPolicy) normalise() error {
	var errs []error
	if len(tp.Measurements) == 0 && len(tp.Signers) == 0 && !tp.AllowAnyMeasurement {
		errs = append(errs, errors.New(`give "measurements" or "signers", or set "allow_any_measurement": true`))
	}
	for name, vals := range tp.Measurements {
		if len(vals) == 0 {
			errs = append(errs, fmt.Errorf("measurement %q lists no values", name))
		}
		for i, v := range vals {
			if _, err := hex.DecodeString(v); err != nil || v == "" {
				errs = append(errs, fmt.Errorf("measurement %q value %q is not hex", name, v))
			}
			vals[i] = strings.ToLower(v)
		}
	}
	for i, s := range tp.Signers {
		if _, err := hex.DecodeString(s); err != nil || s == "" {
			errs = append(errs, fmt.Errorf("signer %q is not hex", s))
		}
		tp.Signers[i] = strings.ToLower(s)
	}
	for _, s := range tp.TCBStatuses {
		if s == "" {
			errs = append(errs, errors.New(`an empty TCB status is allowed with "allow_unknown_tcb", not in "tcb_statuses"`))
		}
	}
	if tp.ReportData != "" {
		if _, err := tp.expectedReportData(); err != nil {
			errs = append(errs, err)
		}
	}
	for k, vals := range tp.Details {
		if len(vals) == 0 {
			errs = append(errs, fmt.Errorf("detail %q lists no values", k))
		}
	}
	if tp.MaxCollateralAge != "" {
		if _, err := tp.maxCollateralAge(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maxCollateralAge parses MaxCollateralAge: a Go duration or whole days ("30d"), above zero.
func (tp *TEEPolicy) maxCollateralAge() (time.Duration, error) {
	s := tp.MaxCollateralAge
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("max_collateral_age %q: want a positive duration such as \"720h\" or \"30d\"", s)
	}
	return d, nil
}

// expectedReportData decodes ReportData, zero-padded to 64 bytes.
func (tp *TEEPolicy) expectedReportData() ([]byte, error) {
	rd, err := hex.DecodeString(tp.ReportData)
	if err != nil {
		return nil, fmt.Errorf("report_data is not hex: %w", err)
	}
	if len(rd) > attestation.ReportDataSize {
		return nil, fmt.Errorf("report_data is %d bytes, at most %d", len(rd), attestation.ReportDataSize)
	}
	out := make([]byte, attestation.ReportDataSize)
	copy(out, rd)
	return out, nil
}

// Violation is one failed rule.
type Violation struct {
	Rule    string // the policy field, e.g. "measurements.mrenclave", "allow_debug"
	Message string
}

func (v *Violation) Error() string { return v.Rule + ": " + v.Message }

// Violations returns the rules that err (from Check) reports as failed.
func Violations(err error) []*Violation {
	var out []*Violation
	var walk func(error)
	walk = func(e error) {
		if v, ok := e.(*Violation); ok {
			out = append(out, v)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

// Check returns nil if res satisfies the policy, and otherwise an error joining one *Violation per
// failed rule (errors.Join).
func (p *Policy) Check(res *attestation.Result) error {
	if res == nil {
		return &Violation{Rule: "verified", Message: "no verification result"}
	}
	var errs []error
	fail := func(rule, format string, args ...any) {
		errs = append(errs, &Violation{Rule: rule, Message: fmt.Sprintf(format, args...)})
	}
	if !res.Verified {
		fail("verified", "evidence was not verified")
	}
	tp, ok := p.TEEs[res.TEE]
	if !ok || tp == nil {
		fail("tees", "TEE %q is not allowed (allowed: %v)", res.TEE, sortedTEEs(p.TEEs))
		return errors.Join(errs...)
	}
	// Check re-validates what Parse checked, so that a Policy built in code fails closed too.
	if len(tp.Measurements) == 0 && len(tp.Signers) == 0 && !tp.AllowAnyMeasurement {
		fail("allow_any_measurement", "the policy pins no measurement or signer and does not allow any")
	}
	for _, name := range sortedKeys(tp.Measurements) {
		got, ok := res.Measurements[name]
		switch {
		case !ok:
			fail("measurements."+name, "evidence has no %s", name)
		case got == "" || !containsFold(tp.Measurements[name], got):
			fail("measurements."+name, "%s %s is not an allowed value", name, got)
		}
	}
	if len(tp.Signers) > 0 && (res.Signer == "" || !containsFold(tp.Signers, res.Signer)) {
		fail("signers", "signer %q is not an allowed signer", res.Signer)
	}
	if len(tp.ProductIDs) > 0 {
		switch {
		case res.ProductID == nil:
			fail("product_ids", "evidence has no product ID")
		case !slices.Contains(tp.ProductIDs, *res.ProductID):
			fail("product_ids", "product ID %d is not allowed", *res.ProductID)
		}
	}
	if tp.MinSVN != nil {
		switch {
		case res.SVN == nil:
			fail("min_svn", "evidence has no SVN")
		case *res.SVN < *tp.MinSVN:
			fail("min_svn", "SVN %d is below the minimum %d", *res.SVN, *tp.MinSVN)
		}
	}
	statuses := tp.TCBStatuses
	if len(statuses) == 0 {
		statuses = DefaultTCBStatuses
	}
	switch {
	case res.TCBStatus == "":
		if !tp.AllowUnknownTCB {
			fail("allow_unknown_tcb", "TCB status is unknown (no collateral decided it)")
		}
	case !slices.Contains(statuses, res.TCBStatus):
		fail("tcb_statuses", "TCB status %q is not one of %v", res.TCBStatus, statuses)
	}
	if res.Debug && !tp.AllowDebug {
		fail("allow_debug", "the workload is debuggable (its memory is not secret)")
	}
	if tp.ReportData != "" {
		want, err := tp.expectedReportData()
		switch {
		case err != nil:
			fail("report_data", "%v", err)
		case !bytes.Equal(want, res.ReportData):
			fail("report_data", "report data %x is not the expected %x", res.ReportData, want)
		}
	}
	for _, k := range sortedKeys(tp.Details) {
		got, ok := res.Details[k]
		switch {
		case !ok:
			fail("details."+k, "evidence has no %s", k)
		case !slices.Contains(tp.Details[k], got):
			fail("details."+k, "%s %q is not one of %v", k, got, tp.Details[k])
		}
	}
	col := res.Collateral
	if tp.RequireCRL {
		switch {
		case col == nil:
			fail("require_crl", "no collateral was given, so no revocation list was applied")
		case !col.RevocationChecked:
			fail("require_crl", "revocation lists were not applied for every issuing authority (applied: %v)", col.CRLs)
		}
	}
	if tp.MaxCollateralAge != "" {
		max, err := tp.maxCollateralAge()
		switch {
		case err != nil:
			fail("max_collateral_age", "%v", err)
		case col == nil || col.Oldest.IsZero() || col.CheckedAt.IsZero():
			fail("max_collateral_age", "no dated collateral was used")
		case col.CheckedAt.Sub(col.Oldest) > max:
			fail("max_collateral_age", "collateral issued %s is %s old at %s, more than %s", col.Oldest.UTC().Format(time.RFC3339),
				col.CheckedAt.Sub(col.Oldest).Round(time.Second), col.CheckedAt.UTC().Format(time.RFC3339), max)
		}
	}
	return errors.Join(errs...)
}

func containsFold(list []string, v string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, v) })
}

// Allows reports whether the policy lists tee at all.
func (p *Policy) Allows(tee attestation.TEE) bool { return p.TEEs[tee] != nil }

func sortedTEEs(m map[attestation.TEE]*TEEPolicy) []attestation.TEE {
	out := make([]attestation.TEE, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
