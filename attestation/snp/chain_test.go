package snp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/snp/snptest"
)

// A synthetic AMD-shaped hierarchy (own ARK → ASK → VCEK keys, made by snptest) lets the tests
// sign reports with chosen CHIP_ID, TCB and CPUID values, so that each check can be shown to fail
// on its own. The synthetic ARK is trusted only through Options.AMDRoots, exactly as a caller
// would add a root. The helpers below only adapt snptest to the names these tests use.

func named(cn string) pkix.Name { return snptest.Named(cn) }

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	return snptest.CreateCert(t, tmpl, parent, pub, signer)
}

// testChain is a synthetic ARK and ASK (or ASVK) for one product line.
type testChain struct {
	chain    *snptest.Chain
	ark, ica *x509.Certificate
	arkKey   *rsa.PrivateKey
	icaKey   *rsa.PrivateKey
}

func newTestChain(t testing.TB, line string, vlek bool) *testChain {
	t.Helper()
	c := snptest.NewChain(t, line, vlek)
	return &testChain{chain: c, ark: c.ARK, ica: c.ICA, arkKey: c.ARKKey, icaKey: c.ICAKey}
}

// ekSpec describes a synthetic VCEK/VLEK (snptest.EKSpec).
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
	return c.chain.IssueEK(t, snptest.EKSpec{CN: s.cn, ProductName: s.productName, HWID: s.hwID, CSPID: s.cspID,
		SPL: s.spl, NotAfter: s.notAfter, NotBefore: s.notBefore})
}

// reportSpec describes a synthetic report (snptest.ReportSpec).
type reportSpec struct {
	version     uint32
	keyInfo     uint32
	chipID      []byte
	reportedTCB uint64
	currentTCB  uint64
	fms         [3]byte // family, model, stepping for v3+
	policy      uint64
	measurement byte
	// launchMit, currentMit fill bytes 0x1F8–0x207 (the mitigation vectors of version 5 reports,
	// reserved before).
	launchMit, currentMit uint64
}

func buildReport(t testing.TB, s reportSpec, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	return snptest.BuildReport(t, snptest.ReportSpec{Version: s.version, KeyInfo: s.keyInfo, ChipID: s.chipID,
		ReportedTCB: s.reportedTCB, CurrentTCB: s.currentTCB, FMS: s.fms, Policy: s.policy, Measurement: s.measurement,
		LaunchMit: s.launchMit, CurrentMit: s.currentMit}, key)
}

func signReport(t testing.TB, r []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	snptest.SignReport(t, r, key)
}

// issueCRL issues a CRL as issuer (signed by key) revoking the given serials, valid from..until.
func issueCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, from, until time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	return snptest.IssueCRL(t, issuer, key, from, until, revoked...)
}
