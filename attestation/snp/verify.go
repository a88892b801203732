package snp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify"

	"github.com/inclavare-containers/inclavare-go/attestation"
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
	intermediates := x509.NewCertPool()
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
		res, err := v.verifyWith(ev, c, source, intermediates, builtin, opts)
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
func (v *Verifier) verifyWith(ev *Evidence, ek *x509.Certificate, source string, intermediates *x509.CertPool,
	builtin map[string]*productRoots, opts attestation.Options) (*attestation.Result, error) {
	key := ev.Signer.SigningKey
	if ek.Version != 3 || ek.SignatureAlgorithm != x509.SHA384WithRSAPSS {
		return nil, fmt.Errorf("not a KDS certificate (version %d, %v; want 3, SHA384-RSAPSS)", ek.Version, ek.SignatureAlgorithm)
	}
	pub, ok := ek.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, errors.New("public key is not ECDSA P-384")
	}
	exts, err := parseKDSExtensions(ek)
	if err != nil {
		return nil, fmt.Errorf("certificate extensions: %w", err)
	}

	// Product line: the certificate names it; v3+ reports also carry the CPUID, which must agree.
	line := kds.ProductLineOfProductName(exts.productName)
	if line == "Unknown" {
		return nil, fmt.Errorf("unknown product name %q", exts.productName)
	}
	if fms := ev.Report.GetCpuid1EaxFms(); fms != 0 {
		if rl := kds.ProductLineFromFms(fms); rl != line {
			return nil, fmt.Errorf("report CPUID is %s (0x%08x) but the certificate is for %s", rl, fms, line)
		}
	}

	// Chain: V[CL]EK -> AS[V]K -> ARK of that product line.
	roots := x509.NewCertPool()
	if slices.Contains(v.lines(), line) {
		roots.AddCert(builtin[line].ark)
	}
	for _, r := range opts.AMDRoots {
		if err := CheckAMDRoot(r); err != nil {
			return nil, err
		}
		if r.Subject.CommonName == "ARK-"+line {
			roots.AddCert(r)
		}
	}
	chains, err := ek.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   opts.Time(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("certificate chain to ARK-%s: %w", line, err)
	}
	wantICA := "SEV-" + line
	if key == abi.VlekReportSigner {
		wantICA = "SEV-VLEK-" + line
	}
	i := slices.IndexFunc(chains, func(ch []*x509.Certificate) bool {
		return len(ch) == 3 && ch[1].Subject.CommonName == wantICA && ch[2].Subject.CommonName == "ARK-"+line
	})
	if i < 0 {
		return nil, fmt.Errorf("no chain %s -> %s -> ARK-%s", ek.Subject.CommonName, wantICA, line)
	}
	info := &attestation.CollateralInfo{Source: source, CheckedAt: opts.Time()}
	crlChecked, err := checkRevocation(chains[i], opts, info)
	if err != nil {
		return nil, err
	}

	// The certificate must be for this chip (VCEK) and for the TCB the report claims.
	r := ev.Report
	switch key {
	case abi.VcekReportSigner:
		if exts.hwID == nil || exts.cspID != "" {
			return nil, errors.New("VCEK certificate must have a hwID and no cspId")
		}
		if ev.Signer.MaskChipKey {
			if !allZero(r.GetChipId()) {
				return nil, errors.New("KEY_INFO says CHIP_ID is masked but CHIP_ID is not zero")
			}
		} else if !bytes.Equal(r.GetChipId(), exts.hwID) {
			return nil, fmt.Errorf("VCEK hwID %x is not the report's CHIP_ID %x", exts.hwID, r.GetChipId())
		}
	case abi.VlekReportSigner:
		if exts.hwID != nil || exts.cspID == "" {
			return nil, errors.New("VLEK certificate must have a cspId and no hwID")
		}
	}
	ctcb, err := certTCB(line, exts)
	if err != nil {
		return nil, err
	}
	if ctcb != r.GetReportedTcb() {
		return nil, fmt.Errorf("certificate TCB 0x%016x is not the report's REPORTED_TCB 0x%016x", ctcb, r.GetReportedTcb())
	}
	if err := tcbNotAbove(line, r.GetReportedTcb(), r.GetCurrentTcb()); err != nil {
		return nil, err
	}

	if err := verify.SnpReportSignature(ev.Raw, ek); err != nil {
		return nil, err
	}
	res, err := result(ev, line, exts)
	if err != nil {
		return nil, err
	}
	res.Details["crl_checked"] = strconv.FormatBool(crlChecked)
	res.Details["collateral_source"] = source
	// AMD revokes ASKs/ASVKs through the ARK's CRL; VCEKs are superseded by TCB updates, not revoked.
	info.RevocationChecked = crlChecked
	res.Collateral = info
	return res, nil
}

// tcbNotAbove checks that every patch level of low is at most the one in high (the firmware never
// reports a TCB above the one it runs).
func tcbNotAbove(line string, reported, current uint64) error {
	lp, err := tcbParts(line, reported)
	if err != nil {
		return err
	}
	cp, _ := tcbParts(line, current)
	for name, v := range lp {
		if v > cp[name] {
			return fmt.Errorf("REPORTED_TCB %s level %d is above CURRENT_TCB's %d", name, v, cp[name])
		}
	}
	return nil
}

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(x byte) bool { return x != 0 }) }

func result(ev *Evidence, line string, exts *kdsExtensions) (*attestation.Result, error) {
	r := ev.Report
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
			"product":              exts.productName,
			"product_line":         line,
			"signing_key":          ev.Signer.SigningKey.String(),
			"report_version":       strconv.FormatUint(uint64(r.GetVersion()), 10),
			"vmpl":                 strconv.FormatUint(uint64(r.GetVmpl()), 10),
			"guest_svn":            strconv.FormatUint(svn, 10),
			"policy":               fmt.Sprintf("0x%016x", r.GetPolicy()),
			"policy_abi":           fmt.Sprintf("%d.%d", pol.ABIMajor, pol.ABIMinor),
			"policy_smt":           strconv.FormatBool(pol.SMT),
			"policy_migrate_ma":    strconv.FormatBool(pol.MigrateMA),
			"policy_debug":         strconv.FormatBool(pol.Debug),
			"policy_single_socket": strconv.FormatBool(pol.SingleSocket),
			"platform_info":        fmt.Sprintf("0x%016x", r.GetPlatformInfo()),
			"platform_smt_enabled": strconv.FormatBool(r.GetPlatformInfo()&1 != 0),
			"platform_tsme":        strconv.FormatBool(r.GetPlatformInfo()&2 != 0),
			"author_key_en":        strconv.FormatBool(ev.Signer.AuthorKeyEn),
			"chip_id":              hex.EncodeToString(r.GetChipId()),
			"chip_id_masked":       strconv.FormatBool(ev.Signer.MaskChipKey),
			"firmware_current":     fmt.Sprintf("%d.%d build %d", r.GetCurrentMajor(), r.GetCurrentMinor(), r.GetCurrentBuild()),
			"firmware_committed":   fmt.Sprintf("%d.%d build %d", r.GetCommittedMajor(), r.GetCommittedMinor(), r.GetCommittedBuild()),
			"current_tcb":          fmt.Sprintf("0x%016x", r.GetCurrentTcb()),
			"reported_tcb":         fmt.Sprintf("0x%016x", r.GetReportedTcb()),
			"committed_tcb":        fmt.Sprintf("0x%016x", r.GetCommittedTcb()),
			"launch_tcb":           fmt.Sprintf("0x%016x", r.GetLaunchTcb()),
		},
	}
	if exts.cspID != "" {
		res.Details["csp_id"] = exts.cspID
	}
	parts, err := tcbParts(line, r.GetReportedTcb())
	if err != nil {
		return nil, err
	}
	for name, v := range parts {
		if name == "bl" || name == "tee" || name == "snp" || name == "ucode" || name == "fmc" {
			res.Details["reported_tcb_"+name+"_spl"] = strconv.Itoa(int(v))
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
