// Package snptest makes synthetic AMD SEV-SNP evidence under keys the caller holds: an AMD-shaped
// product hierarchy (RSA ARK → RSA ASK or ASVK, signed with RSASSA-PSS SHA-384 as AMD's are, →
// an ECDSA P-384 VCEK or VLEK with AMD's KDS extensions; the RSA keys are 2048-bit, AMD's 4096), attestation reports with the fields
// and REPORT_DATA the caller chooses, signed by that VCEK, and CRLs issued by the ARK. Tests use it
// to show each check of attestation/snp failing on its own, and to bind SNP evidence to a key
// (an Enclave-TLS certificate's). The synthetic ARK is trusted only where a test passes it as a
// root (attestation.Options.AMDRoots), exactly as a caller adds a root; nothing here is trusted
// by default.
//
// It is for tests only and must never be linked into a binary. It does not import
// attestation/snp, so that package's own tests can use it.
package snptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
)

// ReportDataSize is the size of an SNP report's REPORT_DATA.
const ReportDataSize = 64

// signedSize is how many leading bytes of a report the signature covers (0x000–0x29F).
const signedSize = 0x2A0

// AMD's KDS certificate extensions (VCEK specification, 1.3.6.1.4.1.3704.1.*).
var (
	oidStructVer   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 1}
	oidProductName = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 2}
	oidSPLPrefix   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3}
	oidHWID        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 4}
	oidCSPID       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 5}
)

var (
	keysOnce sync.Once
	arkKey   *rsa.PrivateKey
	askKey   *rsa.PrivateKey
	keysErr  error
)

// caKeys returns the RSA keys of the synthetic ARK and ASK, generated once per test binary
// (RSA key generation is slow; every chain shares them, each with its own certificates).
func caKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		if arkKey, keysErr = rsa.GenerateKey(rand.Reader, 2048); keysErr != nil {
			return
		}
		askKey, keysErr = rsa.GenerateKey(rand.Reader, 2048)
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return arkKey, askKey
}

var amdName = pkix.Name{
	Country: []string{"US"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"},
	Organization: []string{"Advanced Micro Devices"}, OrganizationalUnit: []string{"Engineering"},
}

// Named is AMD's certificate subject with the common name cn.
func Named(cn string) pkix.Name { n := amdName; n.CommonName = cn; return n }

var serial atomic.Int64

func init() { serial.Store(100) }

// CreateCert issues tmpl (signed with RSASSA-PSS SHA-384 by signer as parent; self-signed when
// parent is nil) for pub, with the next serial number and, when tmpl has no validity, 2020 to 2040.
func CreateCert(t testing.TB, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		tmpl.NotAfter = time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	tmpl.SignatureAlgorithm = x509.SHA384WithRSAPSS
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Chain is a synthetic ARK and ASK (or ASVK) for one product line, with their keys.
type Chain struct {
	Line   string
	ARK    *x509.Certificate
	ICA    *x509.Certificate // the ASK, or the ASVK of a VLEK chain
	ARKKey *rsa.PrivateKey
	ICAKey *rsa.PrivateKey
}

// NewChain makes the synthetic ARK-<line> and SEV-<line> (SEV-VLEK-<line> when vlek) certificates.
func NewChain(t testing.TB, line string, vlek bool) *Chain {
	t.Helper()
	ark, ask := caKeys(t)
	arkCert := CreateCert(t, &x509.Certificate{
		Subject: Named("ARK-" + line), Issuer: Named("ARK-" + line),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &ark.PublicKey, ark)
	icaCN := "SEV-" + line
	if vlek {
		icaCN = "SEV-VLEK-" + line
	}
	ica := CreateCert(t, &x509.Certificate{
		Subject: Named(icaCN), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, arkCert, &ask.PublicKey, ark)
	return &Chain{Line: line, ARK: arkCert, ICA: ica, ARKKey: ark, ICAKey: ask}
}

// EKSpec describes a synthetic VCEK or VLEK.
type EKSpec struct {
	CN          string // "SEV-VCEK" by default
	ProductName string // e.g. "Milan-B1"
	HWID        []byte // the hwID extension's raw value (none when nil)
	CSPID       string
	SPL         map[int]int // leaf of 1.3.6.1.4.1.3704.1.3.<leaf> → value
	NotAfter    time.Time   // zero: 2020 to 2040
	NotBefore   time.Time   // with NotAfter; zero: 2020-01-01
}

// IssueEK issues a VCEK or VLEK under the chain's ASK/ASVK for a new ECDSA P-384 key.
func (c *Chain) IssueEK(t testing.TB, s EKSpec) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mustMarshal := func(v any, params string) []byte {
		b, err := asn1.MarshalWithParams(v, params)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	exts := []pkix.Extension{
		{Id: oidStructVer, Value: mustMarshal(1, "")},
		{Id: oidProductName, Value: mustMarshal(s.ProductName, "ia5")},
	}
	for leaf, v := range s.SPL {
		exts = append(exts, pkix.Extension{Id: append(append(asn1.ObjectIdentifier{}, oidSPLPrefix...), leaf), Value: mustMarshal(v, "")})
	}
	if s.HWID != nil {
		exts = append(exts, pkix.Extension{Id: oidHWID, Value: s.HWID})
	}
	if s.CSPID != "" {
		exts = append(exts, pkix.Extension{Id: oidCSPID, Value: mustMarshal(s.CSPID, "ia5")})
	}
	cn := s.CN
	if cn == "" {
		cn = "SEV-VCEK"
	}
	tmpl := &x509.Certificate{Subject: Named(cn), ExtraExtensions: exts}
	if !s.NotAfter.IsZero() {
		tmpl.NotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		if !s.NotBefore.IsZero() {
			tmpl.NotBefore = s.NotBefore
		}
		tmpl.NotAfter = s.NotAfter
	}
	return CreateCert(t, tmpl, c.ICA, &key.PublicKey, c.ICAKey), key
}

// ReportSpec describes a synthetic attestation report (the layout of AMD's ABI, version 2 to 5).
type ReportSpec struct {
	Version     uint32
	KeyInfo     uint32
	ChipID      []byte // CHIP_ID (64 bytes; shorter is zero-padded)
	ReportedTCB uint64
	CurrentTCB  uint64  // also the COMMITTED and LAUNCH TCB
	FMS         [3]byte // CPUID family, model, stepping, for version 3 and later
	Policy      uint64  // zero: reserved bit 16 and SMT (0x30000)
	Measurement byte    // every byte of MEASUREMENT
	ReportData  [ReportDataSize]byte
	// LaunchMit, CurrentMit fill bytes 0x1F8–0x207 (the mitigation vectors of version 5 reports,
	// reserved before).
	LaunchMit, CurrentMit uint64
}

// BuildReport lays out the report s describes and signs it with key (a VCEK's or VLEK's).
func BuildReport(t testing.TB, s ReportSpec, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	r := make([]byte, abi.ReportSize)
	binary.LittleEndian.PutUint32(r[0x00:], s.Version)
	pol := s.Policy
	if pol == 0 {
		pol = 0x30000 // reserved bit 16 + SMT
	}
	binary.LittleEndian.PutUint64(r[0x08:], pol)
	binary.LittleEndian.PutUint32(r[0x34:], 1)
	binary.LittleEndian.PutUint64(r[0x38:], s.CurrentTCB)
	binary.LittleEndian.PutUint32(r[0x48:], s.KeyInfo)
	copy(r[0x50:0x90], s.ReportData[:])
	for i := 0x90; i < 0xC0; i++ {
		r[i] = s.Measurement
	}
	binary.LittleEndian.PutUint64(r[0x180:], s.ReportedTCB)
	if s.Version >= 3 {
		copy(r[0x188:0x18B], s.FMS[:])
	}
	copy(r[0x1A0:0x1E0], s.ChipID)
	binary.LittleEndian.PutUint64(r[0x1E0:], s.CurrentTCB) // committed
	binary.LittleEndian.PutUint64(r[0x1F0:], s.CurrentTCB) // launch
	binary.LittleEndian.PutUint64(r[0x1F8:], s.LaunchMit)
	binary.LittleEndian.PutUint64(r[0x200:], s.CurrentMit)
	SignReport(t, r, key)
	return r
}

// SignReport (re)signs report r in place with key: ECDSA P-384 over SHA-384 of bytes 0x000–0x29F.
func SignReport(t testing.TB, r []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	digest := sha512.Sum384(r[:signedSize])
	rr, ss, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(rr, ss, r); err != nil {
		t.Fatal(err)
	}
}

// IssueCRL issues a CRL as issuer (signed by key with RSASSA-PSS SHA-384) revoking the given
// serials since from, valid from..until.
func IssueCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, from, until time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: from})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: from, NextUpdate: until, RevokedCertificateEntries: entries,
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
	}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
