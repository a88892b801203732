package snp

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
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
)

// A synthetic AMD-shaped hierarchy (own ARK → ASK → VCEK keys) lets the tests sign reports with
// chosen CHIP_ID, TCB and CPUID values, so that each check can be shown to fail on its own. The
// synthetic ARK is trusted only through Options.AMDRoots, exactly as a caller would add a root.

type testRSA struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

var (
	testKeysOnce sync.Once
	testARKKey   *rsa.PrivateKey
	testASKKey   *rsa.PrivateKey
	testKeysErr  error
)

func testCAKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	testKeysOnce.Do(func() {
		if testARKKey, testKeysErr = rsa.GenerateKey(rand.Reader, 2048); testKeysErr != nil {
			return
		}
		testASKKey, testKeysErr = rsa.GenerateKey(rand.Reader, 2048)
	})
	if testKeysErr != nil {
		t.Fatal(testKeysErr)
	}
	return testARKKey, testASKKey
}

var amdName = pkix.Name{
	Country: []string{"US"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"},
	Organization: []string{"Advanced Micro Devices"}, OrganizationalUnit: []string{"Engineering"},
}

func named(cn string) pkix.Name { n := amdName; n.CommonName = cn; return n }

var serial int64 = 100

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
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

// testChain is a synthetic ARK and ASK (or ASVK) for one product line.
type testChain struct {
	line     string
	ark, ica *x509.Certificate
	arkKey   *rsa.PrivateKey
	icaKey   *rsa.PrivateKey
}

func newTestChain(t testing.TB, line string, vlek bool) *testChain {
	arkKey, askKey := testCAKeys(t)
	ark := createCert(t, &x509.Certificate{
		Subject: named("ARK-" + line), Issuer: named("ARK-" + line),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &arkKey.PublicKey, arkKey)
	icaCN := "SEV-" + line
	if vlek {
		icaCN = "SEV-VLEK-" + line
	}
	ica := createCert(t, &x509.Certificate{
		Subject: named(icaCN), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, ark, &askKey.PublicKey, arkKey)
	return &testChain{line: line, ark: ark, ica: ica, arkKey: arkKey, icaKey: askKey}
}

// ekSpec describes a synthetic VCEK/VLEK.
type ekSpec struct {
	cn          string // "SEV-VCEK" by default
	productName string
	hwID        []byte
	cspID       string
	spl         map[int]int // leaf of 1.3.6.1.4.1.3704.1.3.<leaf> → value
	notAfter    time.Time
	notBefore   time.Time // with notAfter; zero: 2020-01-01
}

func (c *testChain) issueEK(t testing.TB, s ekSpec) (*x509.Certificate, *ecdsa.PrivateKey) {
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
		{Id: oidProductName, Value: mustMarshal(s.productName, "ia5")},
	}
	for leaf, v := range s.spl {
		exts = append(exts, pkix.Extension{Id: append(append(asn1.ObjectIdentifier{}, oidSPLPrefix...), leaf), Value: mustMarshal(v, "")})
	}
	if s.hwID != nil {
		exts = append(exts, pkix.Extension{Id: oidHWID, Value: s.hwID})
	}
	if s.cspID != "" {
		exts = append(exts, pkix.Extension{Id: oidCSPID, Value: mustMarshal(s.cspID, "ia5")})
	}
	cn := s.cn
	if cn == "" {
		cn = "SEV-VCEK"
	}
	tmpl := &x509.Certificate{Subject: named(cn), ExtraExtensions: exts}
	if !s.notAfter.IsZero() {
		tmpl.NotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		if !s.notBefore.IsZero() {
			tmpl.NotBefore = s.notBefore
		}
		tmpl.NotAfter = s.notAfter
	}
	return createCert(t, tmpl, c.ica, &key.PublicKey, c.icaKey), key
}

// reportSpec describes a synthetic report, derived from the real sample's layout.
type reportSpec struct {
	version      uint32
	keyInfo      uint32
	chipID       []byte
	reportedTCB  uint64
	currentTCB   uint64
	fms          [3]byte // family, model, stepping for v3+
	policy       uint64
	measurement  byte
	reportDataB0 byte
	// launchMit, currentMit fill bytes 0x1F8–0x207 (the mitigation vectors of version 5 reports,
	// reserved before).
	launchMit, currentMit uint64
}

func buildReport(t testing.TB, s reportSpec, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	r := make([]byte, ReportSize)
	binary.LittleEndian.PutUint32(r[0x00:], s.version)
	pol := s.policy
	if pol == 0 {
		pol = 0x30000 // reserved bit 16 + SMT
	}
	binary.LittleEndian.PutUint64(r[0x08:], pol)
	binary.LittleEndian.PutUint32(r[0x34:], 1)
	binary.LittleEndian.PutUint64(r[0x38:], s.currentTCB)
	binary.LittleEndian.PutUint32(r[0x48:], s.keyInfo)
	r[0x50] = s.reportDataB0
	for i := 0x90; i < 0xC0; i++ {
		r[i] = s.measurement
	}
	binary.LittleEndian.PutUint64(r[0x180:], s.reportedTCB)
	if s.version >= 3 {
		copy(r[0x188:0x18B], s.fms[:])
	}
	copy(r[0x1A0:0x1E0], s.chipID)
	binary.LittleEndian.PutUint64(r[0x1E0:], s.currentTCB) // committed
	binary.LittleEndian.PutUint64(r[0x1F0:], s.currentTCB) // launch
	binary.LittleEndian.PutUint64(r[0x1F8:], s.launchMit)
	binary.LittleEndian.PutUint64(r[0x200:], s.currentMit)
	signReport(t, r, key)
	return r
}

func signReport(t testing.TB, r []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	digest := sha512.Sum384(r[:SignedSize])
	rr, ss, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(rr, ss, r); err != nil {
		t.Fatal(err)
	}
}

// crl issues a CRL as issuer (signed by key) revoking the given serials, valid from..until.
func issueCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, from, until time.Time, revoked ...*big.Int) []byte {
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
