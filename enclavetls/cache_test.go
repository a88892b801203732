package enclavetls

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
)

// The verdict cache's attack tests. The attacker is whoever presents a certificate to a Verifier:
// a network attacker (or a peer enclave) in a handshake, or whoever hands shelter a certificate.
// Each test first has the verifier accept and remember a genuine certificate, then shows that
// what the attack relies on is verified again and refused. Time is the verifier's own
// (Options.Now), moved by the test: no sleeps.

// leafOf returns id's cached certificate, parsed.
func leafOf(t *testing.T, id *Identity) *x509.Certificate {
	t.Helper()
	c, err := id.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// verifyAt verifies cert with v at the verification time now.
func verifyAt(v *Verifier, now time.Time, cert *x509.Certificate, nonce []byte) (*Peer, error) {
	v.Options.Now = now
	return v.VerifyCertificate(context.Background(), cert, nonce)
}

// mustReuse verifies cert at now and requires the verdict of verifiedAt (a reused one).
func mustReuse(t *testing.T, v *Verifier, now time.Time, cert *x509.Certificate, verifiedAt time.Time) *Peer {
	t.Helper()
	p, err := verifyAt(v, now, cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.VerifiedAt.Equal(verifiedAt) || !p.PolicyChecked {
		t.Fatalf("VerifiedAt %s, PolicyChecked %v: want the verdict of %s, policy checked", p.VerifiedAt, p.PolicyChecked, verifiedAt)
	}
	return p
}

func wantRefused(t *testing.T, p *Peer, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted: %+v", p)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

// rebuild encodes a certificate with id's shape, the given validity and evidence extension
// value, and the signature sig (nil: a valid one by id's key).
func rebuild(t *testing.T, id *Identity, notAfter time.Time, evidence, sig []byte) *x509.Certificate {
	t.Helper()
	notBefore := time.Now().Add(-time.Hour)
	var der []byte
	var err error
	if sig == nil {
		der, err = id.shape.certificate(id.key, big.NewInt(42), notBefore, notAfter, evidence)
	} else {
		var tbs []byte
		tbs, err = id.shape.tbs(big.NewInt(42), notBefore, notAfter, evidence)
		der = appendTLV(nil, 0x30, tbs, id.shape.sigAlg, appendTLV(nil, 0x03, []byte{0}, sig))
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func evidenceExtension(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDTaggedEvidence) {
			return e.Value
		}
	}
	t.Fatal("no evidence extension")
	return nil
}

func TestVerdictCacheReuse(t *testing.T) {
	srv := newSimTEE(t, "server")
	v := verifierFor(t, false, srv)
	cert := leafOf(t, srv.identity(t))
	t0 := time.Now()
	first, err := verifyAt(v, t0, cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first.VerifiedAt.Equal(t0) {
		t.Fatalf("VerifiedAt %s, want %s", first.VerifiedAt, t0)
	}
	// A caller that changes its Peer changes nothing the next connection sees.
	first.Result.Measurements["measurement"] = "tampered"
	first.Result.Details["simulated"] = "false"
	second := mustReuse(t, v, t0.Add(time.Minute), cert, t0)
	if second == first || second.Result.Measurements["measurement"] != srv.measurement || second.Result.Details["simulated"] != "true" {
		t.Fatalf("reused verdict shares or carries a caller's changes: %+v", second.Result)
	}
	if second.Certificate != cert {
		t.Error("a reused verdict does not carry the certificate it was asked about")
	}

	// The cache is bounded (least recently used out) and can be turned off.
	small := verifierFor(t, false, srv)
	small.CacheSize = 2
	ids := []*x509.Certificate{leafOf(t, srv.identity(t)), leafOf(t, srv.identity(t)), leafOf(t, srv.identity(t))}
	for _, c := range ids {
		if _, err := verifyAt(small, t0, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(small.verdicts().entries); n != 2 {
		t.Fatalf("%d entries, bound 2", n)
	}
	mustReuse(t, small, t0.Add(time.Second), ids[2], t0)
	if p, err := verifyAt(small, t0.Add(2*time.Second), ids[0], nil); err != nil || !p.VerifiedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("the least recently used entry was not the one evicted: %v, %+v", err, p)
	}
	off := verifierFor(t, false, srv)
	off.CacheSize = -1
	for i := range 2 {
		at := t0.Add(time.Duration(i) * time.Second)
		if p, err := verifyAt(off, at, cert, nil); err != nil || !p.VerifiedAt.Equal(at) || off.verdicts() != nil {
			t.Fatalf("CacheSize -1: %v, %+v", err, p)
		}
	}
}

// TestVerdictCacheOtherCertificate: the cache is keyed by the whole certificate. A certificate
// that shares the remembered one's public key or its evidence is verified in full, and refused
// for what is wrong with it. A cache keyed by key or by evidence would have accepted each.
func TestVerdictCacheOtherCertificate(t *testing.T) {
	srv, other := newSimTEE(t, "server"), newSimTEE(t, "other enclave")
	id := srv.identity(t)
	cert := leafOf(t, id)
	v := verifierFor(t, false, srv)
	// The verifier trusts both platforms (evidence of either verifies) but accepts only the
	// server's measurement.
	v.Options.SimRoots = append(v.Options.SimRoots, other.platform.Certificate())
	t0 := time.Now()
	if _, err := verifyAt(v, t0, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, t0, cert, t0)
	ev := evidenceExtension(t, cert)

	// Network attacker without the key: the genuine certificate with its validity extended by a
	// year, its signature left as it was.
	extended := rebuild(t, id, cert.NotAfter.AddDate(1, 0, 0), ev, cert.Signature)
	p, err := verifyAt(v, t0, extended, nil)
	wantRefused(t, p, err, "not validly self-signed")

	// The same evidence in a certificate for the attacker's own key, validly self-signed.
	attackerKey := newKey(t)
	moved := selfSigned(t, attackerKey, t0.Add(-time.Hour), t0.Add(time.Hour), pkix.Extension{Id: OIDTaggedEvidence, Value: ev})
	p, err = verifyAt(v, t0, moved, nil)
	wantRefused(t, p, err, "pubkey-hash claim does not match")

	// The holder of the server's key (a peer that leaked it, or another enclave given it)
	// issues a certificate for the same key whose genuine evidence is another enclave's.
	otherEvidence := diceExtension(t, TagSim, id.spki, nil, func(rd [64]byte) []byte {
		b, err := other.key.Evidence(rd)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
	sameKey := rebuild(t, id, cert.NotAfter, otherEvidence.Value, nil)
	if !sameKey.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Fatal("test certificate does not share the key")
	}
	p, err = verifyAt(v, t0, sameKey, nil)
	wantRefused(t, p, err, "policy: measurements.measurement")

	// The genuine certificate is still remembered, and nothing else was.
	mustReuse(t, v, t0, cert, t0)
	if n := len(v.verdicts().entries); n != 1 {
		t.Fatalf("%d remembered verdicts, want only the genuine certificate's", n)
	}
}

// TestVerdictCacheRefusedNotRemembered: a certificate that was refused, for its evidence, its
// policy or the caller's Check, is verified in full the next time (a refusal is never turned
// into an acceptance, and an acceptance is only remembered once everything accepted it).
func TestVerdictCacheRefusedNotRemembered(t *testing.T) {
	srv := newSimTEE(t, "server")
	t0 := time.Now()

	// Peer enclave whose evidence does not verify (a flipped report-signature bit).
	bad, err := NewIdentity(srv.corrupted, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	badCert := leafOf(t, bad)
	v := verifierFor(t, false, srv)
	for i := range 2 {
		p, err := verifyAt(v, t0.Add(time.Duration(i)*time.Second), badCert, nil)
		wantRefused(t, p, err, "report signature does not verify")
	}

	// Refused by the caller's Check, then accepted once Check allows it: the acceptance is a new
	// verification, not a verdict remembered from the refused attempt.
	cert := leafOf(t, srv.identity(t))
	refuse := true
	v.Check = func(*Peer) error {
		if refuse {
			return errors.New("check: not today")
		}
		return nil
	}
	p, err := verifyAt(v, t0, cert, nil)
	wantRefused(t, p, err, "not today")
	p, err = verifyAt(v, t0.Add(time.Second), cert, nil)
	wantRefused(t, p, err, "not today")
	refuse = false
	p, err = verifyAt(v, t0.Add(2*time.Second), cert, nil)
	if err != nil || !p.VerifiedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after Check allowed it: %v, %+v", err, p)
	}
	// And Check runs on a reused verdict too.
	refuse = true
	p, err = verifyAt(v, t0.Add(3*time.Second), cert, nil)
	wantRefused(t, p, err, "not today")
	if n := len(v.verdicts().entries); n != 1 {
		t.Fatalf("%d remembered verdicts, want 1 (the accepted certificate)", n)
	}
}

// TestVerdictCacheVerifierConfig: a verdict is reused only by the verifier that reached it, with
// the same trust anchors, collateral and strictness; the policy decides again every time.
func TestVerdictCacheVerifierConfig(t *testing.T) {
	srv, stranger := newSimTEE(t, "server"), newSimTEE(t, "stranger")
	cert := leafOf(t, srv.identity(t))
	v := verifierFor(t, false, srv)
	t0 := time.Now()
	if _, err := verifyAt(v, t0, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, t0.Add(time.Second), cert, t0)

	// The operator of the verifier narrows its policy: the remembered peer is refused at once.
	accepting := v.Policy
	v.Policy = simPolicy(t, stranger.measurement)
	p, err := verifyAt(v, t0.Add(2*time.Second), cert, nil)
	wantRefused(t, p, err, "policy: measurements.measurement")
	v.Policy = accepting

	// The server's platform is no longer trusted: verified again, and refused.
	roots := v.Options.SimRoots
	v.Options.SimRoots = []*x509.Certificate{stranger.platform.Certificate()}
	p, err = verifyAt(v, t0.Add(3*time.Second), cert, nil)
	wantRefused(t, p, err, "not among")

	// Any other option the TEE verifiers see: verified again (accepted, at the new time).
	for i, change := range []func(o *attestation.Options){
		func(o *attestation.Options) {
			o.SimRoots = append(roots[:len(roots):len(roots)], stranger.platform.Certificate())
		},
		func(o *attestation.Options) { o.AllowTrailingData = true },
		func(o *attestation.Options) { o.Collateral = [][]byte{[]byte("some collateral")} },
		func(o *attestation.Options) { o.PeerCollateral = [][]byte{[]byte("peer collateral")} },
	} {
		v.Options = attestation.Options{SimRoots: roots}
		change(&v.Options)
		at := t0.Add(time.Duration(10+i) * time.Second)
		if p, err := verifyAt(v, at, cert, nil); err != nil || !p.VerifiedAt.Equal(at) {
			t.Fatalf("option change %d: %v, %+v: want a new verification", i, err, p)
		}
	}

	// Another tenant's verifier, trusting another platform, never sees the first one's verdicts.
	other := verifierFor(t, false, stranger)
	other.Policy = accepting
	p, err = verifyAt(other, t0, cert, nil)
	wantRefused(t, p, err, "not among")
}

// shortPlatform is a sim TEE whose platform certificate expires at notAfter.
func shortPlatform(t *testing.T, name string, notAfter time.Time) (*simTEE, *x509.Certificate) {
	t.Helper()
	pk := newKey(t)
	p, err := sim.NewPlatform(pk)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: sim.PlatformCommonName},
		NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &pk.PublicKey, pk)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(name))
	m := hex.EncodeToString(h[:])
	key, err := p.Endorse(m, "enclavetls-test")
	if err != nil {
		t.Fatal(err)
	}
	return &simTEE{platform: p, key: key, measurement: m}, root
}

// TestVerdictCacheExpiry: a verdict is not reused past the certificate's notAfter, past the
// expiry of what the evidence rests on (the sim platform certificate: Result.ValidUntil), past
// MaxVerdictAge, or at a time before it was reached.
func TestVerdictCacheExpiry(t *testing.T) {
	t0 := time.Now()
	tee, root := shortPlatform(t, "short-lived platform", t0.Add(2*time.Minute))
	v := verifierFor(t, false, tee)
	v.Options.SimRoots = []*x509.Certificate{root}
	cert := leafOf(t, tee.identity(t))
	if _, err := verifyAt(v, t0, cert, nil); err != nil {
		t.Fatal(err)
	}
	mustReuse(t, v, t0.Add(time.Minute), cert, t0)
	// Operator of a platform whose certificate has expired: refused, not remembered.
	p, err := verifyAt(v, t0.Add(3*time.Minute), cert, nil)
	wantRefused(t, p, err, "platform certificate not valid")

	srv := newSimTEE(t, "server")
	v = verifierFor(t, false, srv)
	cert = leafOf(t, srv.identity(t))
	if _, err := verifyAt(v, t0, cert, nil); err != nil {
		t.Fatal(err)
	}
	// Before the verdict was reached (a clock set back): verified again.
	back := t0.Add(-time.Minute)
	if p, err := verifyAt(v, back, cert, nil); err != nil || !p.VerifiedAt.Equal(back) {
		t.Fatalf("clock set back: %v, %+v", err, p)
	}
	mustReuse(t, v, back.Add(MaxVerdictAge-time.Second), cert, back)
	// Past MaxVerdictAge: verified again, and the new verdict is reused from then on.
	late := back.Add(MaxVerdictAge + time.Second)
	if p, err := verifyAt(v, late, cert, nil); err != nil || !p.VerifiedAt.Equal(late) {
		t.Fatalf("after MaxVerdictAge: %v, %+v", err, p)
	}
	mustReuse(t, v, late.Add(time.Minute), cert, late)
	// Past the certificate's own notAfter: refused (a replayed old certificate).
	p, err = verifyAt(v, cert.NotAfter.Add(time.Second), cert, nil)
	wantRefused(t, p, err, "certificate valid")
}

// TestVerdictCacheNonce: a verification that must bind a nonce never uses a remembered verdict.
// Network attacker holding a leaked server key replays a certificate the verifier accepted
// earlier (for a connection without a nonce) to a client that demands a fresh one.
func TestVerdictCacheNonce(t *testing.T) {
	srv := newSimTEE(t, "server")
	id := srv.identity(t)
	v := verifierFor(t, false, srv)
	t0 := time.Now()
	old := mustFresh(t, id, []byte("nonce one")).Leaf
	cached := leafOf(t, id)
	for _, c := range []*x509.Certificate{old, cached} {
		if _, err := verifyAt(v, t0, c, nil); err != nil {
			t.Fatal(err)
		}
		mustReuse(t, v, t0, c, t0)
	}
	p, err := verifyAt(v, t0, old, []byte("nonce two"))
	wantRefused(t, p, err, "binds another nonce")
	p, err = verifyAt(v, t0, cached, []byte("nonce two"))
	wantRefused(t, p, err, "binds no nonce")
	// The right nonce is accepted, by a new verification.
	at := t0.Add(time.Second)
	if p, err := verifyAt(v, at, old, []byte("nonce one")); err != nil || !p.Fresh || !p.VerifiedAt.Equal(at) {
		t.Fatalf("right nonce: %v, %+v", err, p)
	}

	// In a handshake: the client's verifier has remembered the server's cached certificate from
	// an earlier connection; with a nonce of its own, a server replaying that certificate fails.
	cl, err := NewClient(Config{Verifier: verifierFor(t, false, srv)})
	if err != nil {
		t.Fatal(err)
	}
	withNonce := func(nonce []byte) endpoint {
		return func(t *testing.T, c net.Conn) (*tls.Conn, func() *Peer) {
			conn, err := cl.ClientWithNonce(c, nonce)
			if err != nil {
				t.Fatal(err)
			}
			return conn.Conn, conn.Peer
		}
	}
	if o := handshake(t, enclaveServer(Config{Identity: id}), withNonce(nil)); o.clientErr != nil || o.serverErr != nil {
		t.Fatalf("first connection: server %v, client %v", o.serverErr, o.clientErr)
	}
	cachedTLS, err := id.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o := handshake(t, plainServer(cachedTLS), withNonce([]byte("a nonce of this connection")))
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "binds no nonce") {
		t.Fatalf("replayed certificate with a nonce demanded: client error %v", o.clientErr)
	}
}

// TestVerdictCacheConcurrent runs verifications of accepted and refused certificates from many
// goroutines on one small cache (evicting all the time); run with -race.
func TestVerdictCacheConcurrent(t *testing.T) {
	srv, stranger := newSimTEE(t, "server"), newSimTEE(t, "stranger")
	v := verifierFor(t, false, srv)
	v.CacheSize = 2
	good := []*x509.Certificate{leafOf(t, srv.identity(t)), leafOf(t, srv.identity(t)), leafOf(t, srv.identity(t))}
	bad := leafOf(t, stranger.identity(t))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				c := good[(g+i)%len(good)]
				if p, err := v.VerifyCertificate(context.Background(), c, nil); err != nil || p.Result.Measurements["measurement"] != srv.measurement {
					errs <- fmt.Errorf("good certificate: %v", err)
					return
				}
				if _, err := v.VerifyCertificate(context.Background(), bad, nil); err == nil {
					errs <- errors.New("stranger accepted")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
