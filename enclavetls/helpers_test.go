package enclavetls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// simTEE is a simulated platform and one enclave it endorsed.
type simTEE struct {
	platform    *sim.Platform
	key         *sim.EnclaveKey
	measurement string
}

func newSimTEE(t testing.TB, name string) *simTEE {
	t.Helper()
	p, key, m := simtest.Enclave(t, name, "enclavetls-test")
	return &simTEE{platform: p, key: key, measurement: m}
}

func (s *simTEE) evidence(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
	return s.key.Evidence(rd)
}

func (s *simTEE) identity(t testing.TB) *Identity {
	t.Helper()
	id, err := NewIdentity(s.evidence, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// simPolicy accepts sim evidence with one of the measurements.
func simPolicy(t testing.TB, measurements ...string) *policy.Policy {
	t.Helper()
	q := ""
	for i, m := range measurements {
		if i > 0 {
			q += ","
		}
		q += fmt.Sprintf("%q", m)
	}
	p, err := policy.Parse([]byte(`{"tees":{"sim":{"measurements":{"measurement":[` + q + `]},"allow_unknown_tcb":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// verifierFor trusts the platforms' certificates and accepts the named enclaves.
func verifierFor(t testing.TB, fresh bool, accept ...*simTEE) *Verifier {
	t.Helper()
	v := &Verifier{RequireFresh: fresh}
	var ms []string
	for _, s := range accept {
		v.Options.SimRoots = append(v.Options.SimRoots, s.platform.Certificate())
		ms = append(ms, s.measurement)
	}
	v.Policy = simPolicy(t, ms...)
	return v
}

// selfSigned makes a self-signed certificate for key with the given extra extensions.
func selfSigned(t testing.TB, key *ecdsa.PrivateKey, notBefore, notAfter time.Time, exts ...pkix.Extension) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(1),
		Subject:         pkix.Name{CommonName: "test"},
		NotBefore:       notBefore,
		NotAfter:        notAfter,
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// diceExtension builds the evidence extension for key's SPKI the way a (possibly misbehaving)
// attester would: claims, then evidence over reportData(claims).
func diceExtension(t testing.TB, tag uint64, spki []byte, others map[string][]byte,
	evidence func(rd [64]byte) []byte) pkix.Extension {
	t.Helper()
	h := sha256.Sum256(spki)
	claims, err := MarshalClaims(&Claims{HashAlgorithm: HashSHA256, PublicKeyHash: h[:], Others: others})
	if err != nil {
		t.Fatal(err)
	}
	te := TaggedEvidence{Tag: tag, ClaimsBuffer: claims}
	te.Evidence = evidence(te.ReportData())
	b, err := te.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: OIDTaggedEvidence, Value: b}
}

func spkiOf(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tagged(n uint64, content any) any { return cbor.Tag{Number: n, Content: content} }

var legacyTime = time.Date(2021, 7, 1, 0, 0, 0, 0, time.UTC)

func legacyCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata.Attestation(t), "ra-tls", name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readSample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}
