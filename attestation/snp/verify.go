package snp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/internal/validity"
)

func init() {
	attestation.RegisterVerifier(&Verifier{})
	attestation.RegisterAttester(&Attester{})
}

// Verifier verifies SNP evidence. The zero value trusts AMD's built-in roots for every product line.
type Verifier struct {
	// ProductLines, when set, restricts the built-in roots to these product lines ("Milan",
	// "Genoa", "Turin"). ARKs passed in Options.AMDRoots are trusted in addition; no other
	// TEE's anchors ever are.
	ProductLines []string
}

// TEE implements attestation.Verifier.
func (*Verifier) TEE() attestation.TEE { return attestation.SNP }

// Match implements attestation.Verifier.
func (*Verifier) Match(evidence []byte) bool { return MatchReport(evidence) }

// Verify implements attestation.Verifier: it checks the report signature with a VCEK or VLEK that
// chains to a trusted ARK, and that the certificate was issued for this chip and this TCB.
func (v *Verifier) Verify(ctx context.Context, evidence []byte, opts attestation.Options) (*attestation.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ev, err := ParseEvidence(evidence, opts.AllowTrailingData)
	if err != nil {
		return nil, err
	}
	builtin, err := builtinRoots()
	if err != nil {
		return nil, err
	}
	key := ev.Signer.SigningKey

	// Gather certificates: the verifier's collateral, the peer's, then the report's own table.
	// The verifier's own VCEK is tried first. Roots found in any of them are never trusted; only
	// the built-in pins and Options.AMDRoots are.
	var pool []*x509.Certificate
	own := map[*x509.Certificate]bool{}
	for _, blob := range opts.Collateral {
		for _, c := range parseCertBlob(blob) {
			pool = append(pool, c)
			own[c] = true
		}
	}
	for _, blob := range opts.PeerCollateral {
		pool = append(pool, parseCertBlob(blob)...)
	}
	for _, e := range ev.Certs {
		switch e.GUID {
		case guidVCEK, guidVLEK, guidASK:
			c, err := x509.ParseCertificate(e.Data)
			if err != nil {
				return nil, fmt.Errorf("SNP certificate table entry %v: %w", e.GUID, err)
			}
			pool = append(pool, c)
		}
	}
	endorsementCN := "SEV-" + key.String()
	var candidates []*x509.Certificate
	intermediates := newCertSet()
	for _, c := range pool {
		switch {
		case c.Subject.CommonName == endorsementCN && !c.IsCA:
			candidates = append(candidates, c)
		case c.IsCA:
			intermediates.AddCert(c)
		}
	}
	for _, line := range v.lines() {
		intermediates.AddCert(builtin[line].ask)
		intermediates.AddCert(builtin[line].asvk)
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("verify SNP report: no %v certificate; pass it in Options.Collateral (DER or PEM) or send an extended report", key)
	}

	var errs []error
	for _, c := range candidates {
		source := attestation.SourcePeer
		if own[c] {
			source = attestation.SourceVerifier
		}
		res, err := v.verifyWith(ev, c, candidates, source, intermediates, builtin, opts)
		if err == nil {
			return res, nil
		}
		errs = append(errs, fmt.Errorf("%v serial %v: %w", key, c.SerialNumber, err))
	}
	return nil, fmt.Errorf("verify SNP report: %w", errors.Join(errs...))
}

func (v *Verifier) lines() []string {
	if v.ProductLines == nil {
		return ProductLines
	}
	var out []string
	for _, l := range v.ProductLines {
		if slices.Contains(ProductLines, l) {
			out = append(out, l)
		}
	}
	return out
}

// verifyWith checks the report against one endorsement-key certificate.
func (v *Verifier) verifyWith(ev *Evidence, cert *x509.Certificate, candidates []*x509.Certificate, source string, intermediates *certSet,
	builtin map[string]*productRoots, opts attestation.Options) (*attestation.Result, error) {
	ek, err := v.checkEndorsementKey(cert, ev.Signer.SigningKey, intermediates, builtin, opts, source)
	if err != nil {
		return nil, err
	}
	line := ek.ProductLine
	r := ev.Report
	// The certificate names the product line; v3+ reports also carry the CPUID, which must agree.
	// The TCB fields below are read in that line's layout.
	if r.GetVersion() >= abi.ReportVersion3 {
		f, m, s := ev.CPUID()
		cpuLine, err := productLineOfCPUID(f, m)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		if cpuLine != line {
			return nil, fmt.Errorf("report CPUID is %s (family 0x%02x model 0x%02x stepping %d) but the certificate is for %s", cpuLine, f, m, s, line)
		}
	}

	// The certificate must be for this chip (VCEK) and for the TCB the report claims.
	if ev.Signer.SigningKey == abi.VcekReportSigner && !allZero(r.GetChipId()) {
		// An all-zero CHIP_ID means the host masked it (MASK_CHIP_ID): the VCEK's signature still
		// ties the report to one chip, there is just no ID to compare.
		if err := checkChipID(line, ek.HWID, r.GetChipId()); err != nil {
			return nil, err
		}
	}
	if ek.TCB != r.GetReportedTcb() {
		return nil, fmt.Errorf("certificate TCB 0x%016x is not the report's REPORTED_TCB 0x%016x (%s layout)", ek.TCB, r.GetReportedTcb(), line)
	}
	if err := tcbNotAbove(line, r.GetReportedTcb(), r.GetCurrentTcb()); err != nil {
		return nil, err
	}

	if err := verify.SnpReportSignature(ev.Raw, cert); err != nil {
		return nil, err
	}
	res, err := result(ev, ek)
	if err != nil {
		return nil, err
	}
	res.Details["crl_checked"] = strconv.FormatBool(ek.Collateral.RevocationChecked)
	res.Details["collateral_source"] = source
	res.Collateral = ek.Collateral
	// The report itself is not dated: the verdict holds as long as the endorsement key's chain
	// and CRLs do, and until a candidate key certificate not yet valid could be picked instead
	// (Verify tries them in order).
	exp := &validity.Window{Now: opts.Time(), Until: ek.ValidUntil}
	for _, c := range candidates {
		exp.Starts(c.NotBefore)
	}
	res.ValidUntil = exp.Until
	return res, nil
}

// tcbNotAbove checks that every patch level of low is at most the one in high (the firmware never
// reports a TCB above the one it runs).
func tcbNotAbove(line string, reported, current uint64) error {
	layout, err := tcbLayout(line)
	if err != nil {
		return err
	}
	for i, name := range layout {
		r, c := uint8(reported>>(8*i)), uint8(current>>(8*i))
		if name == "" {
			name = "reserved" + strconv.Itoa(i)
		}
		if r > c {
			return fmt.Errorf("REPORTED_TCB %s level %d is above CURRENT_TCB's %d", name, r, c)
		}
	}
	return nil
}

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(x byte) bool { return x != 0 }) }

func result(ev *Evidence, ek *EndorsementKey) (*attestation.Result, error) {
	r := ev.Report
	line := ek.ProductLine
	pol, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("guest policy: %w", err)
	}
	svn := uint64(r.GetGuestSvn())
	res := &attestation.Result{
		TEE:      attestation.SNP,
		Verified: true,
		Measurements: map[string]string{
			"measurement":       hex.EncodeToString(r.GetMeasurement()),
			"host_data":         hex.EncodeToString(r.GetHostData()),
			"id_key_digest":     hex.EncodeToString(r.GetIdKeyDigest()),
			"author_key_digest": hex.EncodeToString(r.GetAuthorKeyDigest()),
			"report_id":         hex.EncodeToString(r.GetReportId()),
			"report_id_ma":      hex.EncodeToString(r.GetReportIdMa()),
			"family_id":         hex.EncodeToString(r.GetFamilyId()),
			"image_id":          hex.EncodeToString(r.GetImageId()),
		},
		ReportData: bytes.Clone(r.GetReportData()),
		Debug:      pol.Debug,
		SVN:        &svn,
		Details: map[string]string{
			"product":                       ek.Product,
			"product_line":                  line,
			"signing_key":                   ev.Signer.SigningKey.String(),
			"report_version":                strconv.FormatUint(uint64(r.GetVersion()), 10),
			"vmpl":                          strconv.FormatUint(uint64(r.GetVmpl()), 10),
			"guest_svn":                     strconv.FormatUint(svn, 10),
			"policy":                        fmt.Sprintf("0x%016x", r.GetPolicy()),
			"policy_abi":                    fmt.Sprintf("%d.%d", pol.ABIMajor, pol.ABIMinor),
			"policy_smt":                    strconv.FormatBool(pol.SMT),
			"policy_migrate_ma":             strconv.FormatBool(pol.MigrateMA),
			"policy_debug":                  strconv.FormatBool(pol.Debug),
			"policy_single_socket":          strconv.FormatBool(pol.SingleSocket),
			"platform_info":                 fmt.Sprintf("0x%016x", r.GetPlatformInfo()),
			"platform_smt_enabled":          strconv.FormatBool(r.GetPlatformInfo()&1 != 0),
			"platform_tsme":                 strconv.FormatBool(r.GetPlatformInfo()&2 != 0),
			"platform_ecc_enabled":          strconv.FormatBool(r.GetPlatformInfo()&(1<<2) != 0),
			"platform_rapl_disabled":        strconv.FormatBool(r.GetPlatformInfo()&(1<<3) != 0),
			"platform_ciphertext_hiding":    strconv.FormatBool(r.GetPlatformInfo()&(1<<4) != 0),
			"platform_alias_check_complete": strconv.FormatBool(r.GetPlatformInfo()&(1<<5) != 0),
			"platform_tio_enabled":          strconv.FormatBool(r.GetPlatformInfo()&(1<<7) != 0),
			"author_key_en":                 strconv.FormatBool(ev.Signer.AuthorKeyEn),
			"chip_id":                       hex.EncodeToString(r.GetChipId()),
			"chip_id_masked":                strconv.FormatBool(allZero(r.GetChipId())),
			"firmware_current":              fmt.Sprintf("%d.%d build %d", r.GetCurrentMajor(), r.GetCurrentMinor(), r.GetCurrentBuild()),
			"firmware_committed":            fmt.Sprintf("%d.%d build %d", r.GetCommittedMajor(), r.GetCommittedMinor(), r.GetCommittedBuild()),
			"current_tcb":                   fmt.Sprintf("0x%016x", r.GetCurrentTcb()),
			"reported_tcb":                  fmt.Sprintf("0x%016x", r.GetReportedTcb()),
			"committed_tcb":                 fmt.Sprintf("0x%016x", r.GetCommittedTcb()),
			"launch_tcb":                    fmt.Sprintf("0x%016x", r.GetLaunchTcb()),
		},
	}
	if ek.CSPID != "" {
		res.Details["csp_id"] = ek.CSPID
	}
	if r.GetVersion() >= abi.ReportVersion3 {
		f, m, s := ev.CPUID()
		res.Details["cpuid_family"] = fmt.Sprintf("0x%02x", f)
		res.Details["cpuid_model"] = fmt.Sprintf("0x%02x", m)
		res.Details["cpuid_stepping"] = strconv.Itoa(int(s))
	}
	if r.GetVersion() >= abi.ReportVersion5 {
		res.Details["launch_mit_vector"] = fmt.Sprintf("0x%016x", r.GetLaunchMitVector())
		res.Details["current_mit_vector"] = fmt.Sprintf("0x%016x", r.GetCurrentMitVector())
	}
	// Patch levels by name, read in the product line's TCB_VERSION layout.
	for _, tcb := range []struct {
		name  string
		value uint64
	}{{"reported_tcb", r.GetReportedTcb()}, {"current_tcb", r.GetCurrentTcb()}} {
		parts, err := tcbParts(line, tcb.value)
		if err != nil {
			return nil, err
		}
		for name, v := range parts {
			if name == "bl" || name == "tee" || name == "snp" || name == "ucode" || name == "fmc" {
				res.Details[tcb.name+"_"+name+"_spl"] = strconv.Itoa(int(v))
			}
		}
	}
	// The workload's signer in SNP is the ID key, or the author key that endorsed it.
	switch {
	case ev.Signer.AuthorKeyEn:
		res.Signer = res.Measurements["author_key_digest"]
	case !allZero(r.GetIdKeyDigest()):
		res.Signer = res.Measurements["id_key_digest"]
	}
	return res, nil
}
