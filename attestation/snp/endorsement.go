package snp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/internal/validity"
	"github.com/inclavare-containers/inclavare-go/internal/memo"

	"github.com/google/go-sev-guest/abi"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// ErrNotEndorsementKey says that a certificate does not claim to be an AMD VCEK or VLEK (no
// SEV-VCEK/SEV-VLEK subject, no AMD KDS extension), so VerifyEndorsementKey has nothing to say
// about it: it may be an RA-TLS certificate or anything else.
var ErrNotEndorsementKey = errors.New("not an AMD VCEK or VLEK certificate")

// EndorsementKey is what VerifyEndorsementKey established about a VCEK or VLEK certificate: AMD's
// KDS issued it (the chain to a trusted ARK verified at CheckedAt) for these facts. It is not
// evidence: it says nothing about any guest.
type EndorsementKey struct {
	// Kind is "VCEK" (one chip at one TCB) or "VLEK" (a cloud provider's key at one TCB).
	Kind string
	// Product is the productName extension ("Milan-B0", "Genoa", "Turin", …); ProductLine its line.
	Product, ProductLine string
	// StructVersion is the KDS certificate structure version (Turin VCEKs have 1).
	StructVersion int
	// HWID (VCEK) is the chip's hardware ID: all 64 bytes of CHIP_ID for Milan and Genoa, the first
	// 8 for Turin. CSPID (VLEK) names the cloud provider.
	HWID  []byte
	CSPID string
	// SPL holds the security patch levels by name ("fmc", "bl", "tee", "snp", "ucode", "spl4"…).
	SPL map[string]uint8
	// TCB is the TCB_VERSION the certificate was issued for, in the product line's layout: a report
	// signed with this key must carry it as REPORTED_TCB.
	TCB uint64
	// Chain holds the subject common names from the key to the ARK.
	Chain               []string
	Serial              string
	NotBefore, NotAfter time.Time
	// Collateral says when the chain was checked and which CRLs were applied.
	Collateral *attestation.CollateralInfo
	// ValidUntil is when the same check with the same inputs stops holding: the earliest
	// notAfter of the chain's certificates and nextUpdate of the CRLs applied, or the notBefore
	// of a candidate intermediate not yet valid at CheckedAt (it could build another chain).
	ValidUntil time.Time
}

// Details renders k as flat key/value pairs (for shelter's report).
func (k *EndorsementKey) Details() map[string]string {
	d := map[string]string{
		"certificate":    k.Kind,
		"product":        k.Product,
		"product_line":   k.ProductLine,
		"struct_version": strconv.Itoa(k.StructVersion),
		"tcb":            fmt.Sprintf("0x%016x", k.TCB),
		"chain":          strings.Join(k.Chain, " -> "),
		"serial":         k.Serial,
		"not_before":     k.NotBefore.UTC().Format(time.RFC3339),
		"not_after":      k.NotAfter.UTC().Format(time.RFC3339),
		"crl_checked":    strconv.FormatBool(k.Collateral != nil && k.Collateral.RevocationChecked),
	}
	if k.Collateral != nil {
		d["checked_at"] = k.Collateral.CheckedAt.UTC().Format(time.RFC3339)
	}
	if k.HWID != nil {
		d["hw_id"] = hex.EncodeToString(k.HWID)
	}
	if k.CSPID != "" {
		d["csp_id"] = k.CSPID
	}
	for name, v := range k.SPL {
		d[name+"_spl"] = strconv.Itoa(int(v))
	}
	return d
}

// VerifyEndorsementKey checks a VCEK or VLEK certificate on its own with the built-in AMD roots
// and opts (AMDRoots, Collateral for an ASK/ASVK or a CRL, Now): see Verifier.VerifyEndorsementKey.
func VerifyEndorsementKey(cert *x509.Certificate, opts attestation.Options) (*EndorsementKey, error) {
	return (&Verifier{}).VerifyEndorsementKey(cert, opts)
}

// VerifyEndorsementKey checks a VCEK or VLEK certificate without a report: that it is a
// well-formed KDS certificate for a known product line (its hwID as long as that line's, its patch
// levels placeable in that line's TCB_VERSION) and that it chains VCEK → ASK (VLEK → ASVK) → ARK
// of that line at opts.Time(), applying any AMD CRL in opts.Collateral. A certificate that does
// not claim to be a VCEK or VLEK yields ErrNotEndorsementKey.
func (v *Verifier) VerifyEndorsementKey(cert *x509.Certificate, opts attestation.Options) (*EndorsementKey, error) {
	var key abi.ReportSigner
	switch cert.Subject.CommonName {
	case "SEV-VCEK":
		key = abi.VcekReportSigner
	case "SEV-VLEK":
		key = abi.VlekReportSigner
	default:
		if !slices.ContainsFunc(cert.Extensions, func(e pkix.Extension) bool { return hasKDSPrefix(e.Id) }) {
			return nil, ErrNotEndorsementKey
		}
		return nil, fmt.Errorf("certificate %q carries AMD KDS extensions but is neither SEV-VCEK nor SEV-VLEK", cert.Subject.CommonName)
	}
	builtin, err := builtinRoots()
	if err != nil {
		return nil, err
	}
	intermediates := newCertSet()
	for _, blob := range opts.Collateral {
		for _, c := range parseCertBlob(blob) {
			if c.IsCA {
				intermediates.AddCert(c)
			}
		}
	}
	for _, line := range v.lines() {
		intermediates.AddCert(builtin[line].ask)
		intermediates.AddCert(builtin[line].asvk)
	}
	ek, err := v.checkEndorsementKey(cert, key, intermediates, builtin, opts, attestation.SourceVerifier)
	if err != nil {
		return nil, fmt.Errorf("%v certificate: %w", key, err)
	}
	return ek, nil
}

// checkEndorsementKey checks everything about a VCEK or VLEK (key says which) that does not need
// a report: format, extensions, product line, chain and revocation.
func (v *Verifier) checkEndorsementKey(ek *x509.Certificate, key abi.ReportSigner, intermediates *certSet,
	builtin map[string]*productRoots, opts attestation.Options, source string) (*EndorsementKey, error) {
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
	line, err := productLineOfName(exts.productName)
	if err != nil {
		return nil, err
	}
	switch key {
	case abi.VcekReportSigner:
		if exts.hwID == nil || exts.cspID != "" {
			return nil, errors.New("VCEK certificate must have a hwID and no cspId")
		}
		if len(exts.hwID) != hwIDSize(line) {
			return nil, fmt.Errorf("%s VCEK hwID has %d bytes, want %d", line, len(exts.hwID), hwIDSize(line))
		}
	case abi.VlekReportSigner:
		if exts.hwID != nil || exts.cspID == "" {
			return nil, errors.New("VLEK certificate must have a cspId and no hwID")
		}
	default:
		return nil, fmt.Errorf("signing key %v has no certificate", key)
	}
	tcb, err := certTCB(line, exts)
	if err != nil {
		return nil, err
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
	chains, err := verifyChain(ek, line, roots, anchorsOf(builtin, v.lines(), line, opts.AMDRoots), intermediates, opts.Time())
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
	exp := &validity.Window{Now: opts.Time()}
	crlChecked, err := checkRevocation(chains[i], opts, info, exp)
	if err != nil {
		return nil, err
	}
	exp.Chain(chains[i])
	// An intermediate not yet valid that bears the name of one on the chain may build another
	// path from then on (the built-in ASVK of a line, say, never stands in for its ASK).
	for _, c := range intermediates.certs {
		if slices.ContainsFunc(chains[i][1:], func(u *x509.Certificate) bool { return bytes.Equal(u.RawSubject, c.RawSubject) }) {
			exp.Starts(c.NotBefore)
		}
	}
	// AMD revokes ASKs/ASVKs through the ARK's CRL; VCEKs are superseded by TCB updates, not revoked.
	info.RevocationChecked = crlChecked
	out := &EndorsementKey{
		Kind: key.String(), Product: exts.productName, ProductLine: line, StructVersion: exts.structVersion,
		HWID: exts.hwID, CSPID: exts.cspID, SPL: exts.spl, TCB: tcb,
		Serial: ek.SerialNumber.String(), NotBefore: ek.NotBefore, NotAfter: ek.NotAfter, Collateral: info,
		ValidUntil: exp.Until,
	}
	for _, c := range chains[i] {
		out.Chain = append(out.Chain, c.Subject.CommonName)
	}
	return out, nil
}

func hasKDSPrefix(id asn1.ObjectIdentifier) bool {
	return len(id) > len(oidKDS) && id[:len(oidKDS)].Equal(oidKDS)
}

// chainMemo remembers verified V[CL]EK chains (RSA-4096 signature checks, the bulk of an SNP
// verification) for their validity window, keyed by the endorsement key certificate, its product
// line and the trusted ARKs. Revocation is checked at every verification, outside the memo.
var chainMemo = memo.New[chainMemoEntry]()

type chainMemoEntry struct {
	chains [][]*x509.Certificate
	w      memo.Window
}

// anchorsOf names the ARKs trusted for line: the built-in one (when the line is trusted) and the
// caller's.
func anchorsOf(builtin map[string]*productRoots, lines []string, line string, extra []*x509.Certificate) []byte {
	var arks []*x509.Certificate
	if slices.Contains(lines, line) {
		arks = append(arks, builtin[line].ark)
	}
	return memo.CertsKey(append(arks, extra...))
}

func verifyChain(ek *x509.Certificate, line string, roots *x509.CertPool, anchors []byte, intermediates *certSet, now time.Time) ([][]*x509.Certificate, error) {
	// The candidate intermediates are part of the key: without the ASK it was verified through, a
	// chain must fail as it would cold.
	k := memo.Key([]byte("snp-chain"), []byte(line), anchors, memo.CertsKey(intermediates.certs), ek.Raw)
	if m, ok := chainMemo.Get(k); ok && m.w.Holds(now) {
		return m.chains, nil
	}
	chains, err := ek.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates.pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, err
	}
	w := memo.ChainWindow(chains[0])
	for _, c := range chains[1:] {
		cw := memo.ChainWindow(c)
		w = w.Narrow(cw.From, cw.Until)
	}
	chainMemo.Put(k, chainMemoEntry{chains: chains, w: w})
	return chains, nil
}

// certSet is a pool of candidate intermediates that also remembers its members (for memo keys).
type certSet struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

func newCertSet() *certSet { return &certSet{pool: x509.NewCertPool()} }

// AddCert adds c to the set.
func (s *certSet) AddCert(c *x509.Certificate) {
	s.pool.AddCert(c)
	s.certs = append(s.certs, c)
}
