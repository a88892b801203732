package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/memo"
)

const measurement = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func testPlatform(t testing.TB) *Platform {
	t.Helper()
	p, err := LoadOrCreatePlatform(filepath.Join(t.TempDir(), "sim", "platform-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reportData(s string) (rd [attestation.ReportDataSize]byte) {
	copy(rd[:], s)
	return rd
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sim")
	path := filepath.Join(dir, "platform-key.pem")
	p, err := LoadOrCreatePlatform(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, st.Mode().Perm(), want)
		}
	}
	again, err := LoadOrCreatePlatform(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.KeyID() != p.KeyID() {
		t.Fatal("reloading the platform key gave another key")
	}
	if cn := p.Certificate().Subject.CommonName; !strings.Contains(cn, "SIMULATED, NOT A TEE") {
		t.Errorf("certificate name %q does not say it is simulated", cn)
	}

	// Host side endorses; only the marshalled enclave key crosses to the enclave side.
	key, err := p.Endorse(strings.ToUpper(measurement), "wasm")
	if err != nil {
		t.Fatal(err)
	}
	file, err := key.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	enclaveSide, err := UnmarshalEnclaveKey(file)
	if err != nil {
		t.Fatal(err)
	}
	if enclaveSide.key.PublicKey.Equal(&p.key.PublicKey) {
		t.Fatal("the enclave side received the platform key")
	}
	if e := enclaveSide.Endorsement(); e.Measurement != measurement || e.Runtime != "wasm" || e.Created.IsZero() {
		t.Errorf("endorsement %+v", e)
	}
	att := NewAttester(enclaveSide)
	if att.TEE() != attestation.Sim || att.Available() != nil {
		t.Fatal("attester not usable")
	}
	rd := reportData("nonce-and-key-hash")
	ev, err := att.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	// The trust anchor as a verifier on another machine would receive it: PEM text.
	anchor, err := x509.ParseCertificate(mustPEM(t, again.CertificatePEM()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := attestation.Verify(context.Background(), ev, attestation.Options{SimRoots: []*x509.Certificate{anchor}})
	if err != nil {
		t.Fatal(err)
	}
	if res.TEE != attestation.Sim || !res.Verified || res.TCBStatus != "" || res.Debug ||
		res.Measurements["measurement"] != measurement || !bytes.Equal(res.ReportData, rd[:]) ||
		res.Details["simulated"] != "true" || res.Details["runtime"] != "wasm" {
		t.Errorf("result %+v", res)
	}
	// An explicitly loaded local anchor (the key file itself) works as well.
	local, err := LoadPlatformCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Verifier{Anchors: []*x509.Certificate{local}}).Verify(context.Background(), ev, attestation.Options{}); err != nil {
		t.Errorf("verify with loaded anchor: %v", err)
	}
}

func mustPEM(t testing.TB, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM")
	}
	return blk.Bytes
}

func TestPlatformKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	good := testPlatform(t)
	der256, _ := x509.MarshalPKCS8PrivateKey(good.key)
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"world readable", write("open.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der256}), 0o644), "mode 0644"},
		{"P-384", write("p384.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der384}), 0o600), "P-256"},
		{"garbage", write("garbage.pem", []byte("not a key"), 0o600), "no PEM PRIVATE KEY"},
		{"directory", dir, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadOrCreatePlatform(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", "platform-key.pem")
	ids := make([][32]byte, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := LoadOrCreatePlatform(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = p.KeyID()
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatal("concurrent creators ended with different platform keys")
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestEndorseRejects(t *testing.T) {
	p := testPlatform(t)
	for _, tc := range []struct{ m, rt string }{
		{"abc", "wasm"}, {strings.Repeat("g", 64), "wasm"}, {measurement, ""}, {measurement, "bad\nname"},
	} {
		if _, err := p.Endorse(tc.m, tc.rt); err == nil {
			t.Errorf("Endorse(%q, %q) accepted", tc.m, tc.rt)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	p := testPlatform(t)
	other := testPlatform(t)
	keyA, _ := p.Endorse(measurement, "wasm")
	keyB, _ := p.Endorse(strings.Repeat("ab", 32), "native")
	evA, _ := keyA.Evidence(reportData("a"))
	evB, _ := keyB.Evidence(reportData("b"))
	trusted := []*x509.Certificate{p.Certificate()}

	swap := func(endorsementFrom, reportFrom []byte) []byte {
		a, err := parseEvidence(endorsementFrom, false)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseEvidence(reportFrom, false)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := encMode.Marshal(wireEvidence{Endorsement: a.Endorsement, EndorsementSig: a.EndorsementSig, Report: b.Report, ReportSig: b.ReportSig})
		return append([]byte(Magic), body...)
	}
	// A platform impostor: right name, own key, claiming p's key ID cannot be built, so it signs
	// with its own key and names it; it is simply not trusted.
	impostorKey, _ := other.Endorse(measurement, "wasm")
	evImpostor, _ := impostorKey.Evidence(reportData("a"))
	// A certificate with the sim name and p's key but not self-signed (signed by another key).
	notSelfSigned := crossSigned(t, p, other)
	// An endorsement created in the future.
	future := endorseAt(t, p, time.Now().Add(time.Hour))
	evFuture, _ := future.Evidence(reportData("f"))

	tests := []struct {
		name     string
		evidence []byte
		opts     attestation.Options
		wantErr  string
	}{
		{"no anchors", evA, attestation.Options{}, "no trusted sim platform certificate"},
		// Another TEE's root given as a sim root is refused outright, never skipped.
		{"another TEE's root as a sim root", evA, attestation.Options{SimRoots: []*x509.Certificate{rsaRoot(t)}}, "not a sim platform certificate"},
		// Older rune versions made the platform certificate a CA; such an anchor could end other chains.
		{"sim platform certificate that is a CA", evA, attestation.Options{SimRoots: []*x509.Certificate{platformCert(t, p, p, true)}}, "is a CA certificate"},
		{"another TEE's roots only in IntelRoots and AMDRoots", evA, attestation.Options{IntelRoots: trusted, AMDRoots: trusted}, "no trusted sim platform certificate"},
		{"untrusted platform", evA, attestation.Options{SimRoots: []*x509.Certificate{other.Certificate()}}, "not among"},
		{"impostor platform", evImpostor, attestation.Options{SimRoots: trusted}, "not among"},
		{"anchor not self-signed", evA, attestation.Options{SimRoots: []*x509.Certificate{notSelfSigned}}, "self-signed"},
		{"endorsement A, report B", swap(evA, evB), attestation.Options{SimRoots: trusted}, "report signature"},
		{"endorsement B, report A", swap(evB, evA), attestation.Options{SimRoots: trusted}, "report signature"},
		{"trailing byte", append(bytes.Clone(evA), 0), attestation.Options{SimRoots: trusted}, "extraneous"},
		{"no magic", evA[1:], attestation.Options{SimRoots: trusted}, "magic"},
		{"created in the future", evFuture, attestation.Options{SimRoots: trusted}, "after the verification time"},
		{"created after pinned time", evA, attestation.Options{SimRoots: trusted, Now: time.Now().Add(-time.Hour)}, "after the verification time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := (&Verifier{}).Verify(context.Background(), tc.evidence, tc.opts)
			if err == nil {
				t.Fatalf("verified: %+v", res)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
	// Trailing data is accepted only when asked for, and then verifies.
	if _, err := (&Verifier{}).Verify(context.Background(), append(bytes.Clone(evA), 0), attestation.Options{SimRoots: trusted, AllowTrailingData: true}); err != nil {
		t.Errorf("AllowTrailingData: %v", err)
	}
}

// TestVerifyRemembersOnlyPureChecks: with the platform certificate check and the endorsement
// signature remembered (internal/memo) from a verification that passed, what else decides a
// verdict is still decided every time: which anchors are trusted, their validity at the
// verification time, and a forged endorsement signature (another memo key) is checked and fails.
// It also checks Result.ValidUntil, which callers that reuse a verdict rely on.
func TestVerifyRemembersOnlyPureChecks(t *testing.T) {
	p, other := testPlatform(t), testPlatform(t)
	key, _ := p.Endorse(measurement, "wasm")
	ev, _ := key.Evidence(reportData("memo"))
	trusted := []*x509.Certificate{p.Certificate()}
	res, err := (&Verifier{}).Verify(context.Background(), ev, attestation.Options{SimRoots: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ValidUntil.Equal(p.Certificate().NotAfter) {
		t.Errorf("ValidUntil %s, want the platform certificate's notAfter %s", res.ValidUntil, p.Certificate().NotAfter)
	}
	w, err := parseEvidence(ev, false)
	if err != nil {
		t.Fatal(err)
	}
	w.EndorsementSig = bytes.Clone(w.EndorsementSig)
	w.EndorsementSig[len(w.EndorsementSig)-1] ^= 1
	body, _ := encMode.Marshal(w)
	forged := append([]byte(Magic), body...)
	for _, tc := range []struct {
		name     string
		evidence []byte
		opts     attestation.Options
		wantErr  string
	}{
		{"another platform trusted", ev, attestation.Options{SimRoots: []*x509.Certificate{other.Certificate()}}, "not among"},
		{"the platform's key in a CA certificate", ev, attestation.Options{SimRoots: []*x509.Certificate{platformCert(t, p, p, true)}}, "is a CA certificate"},
		{"platform certificate expired", ev, attestation.Options{SimRoots: trusted, Now: p.Certificate().NotAfter.Add(time.Second)}, "not valid at"},
		{"forged endorsement signature", forged, attestation.Options{SimRoots: trusted}, "endorsement signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := (&Verifier{}).Verify(context.Background(), tc.evidence, tc.opts)
			if err == nil {
				t.Fatalf("verified: %+v", res)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestByteFlips flips every byte of the evidence (magic, envelope, endorsement, signatures, report).
func TestByteFlips(t *testing.T) {
	p := testPlatform(t)
	key, _ := p.Endorse(measurement, "wasm")
	ev, err := key.Evidence(reportData("flip"))
	if err != nil {
		t.Fatal(err)
	}
	opts := attestation.Options{SimRoots: []*x509.Certificate{p.Certificate()}}
	v := &Verifier{}
	if _, err := v.Verify(context.Background(), ev, opts); err != nil {
		t.Fatal(err)
	}
	for i := range ev {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(ev)
			b[i] ^= mask
			if res, err := v.Verify(context.Background(), b, opts); err == nil {
				t.Errorf("byte %d ^ 0x%02x verified: %+v", i, mask, res)
			}
		}
	}
}

func TestUnmarshalEnclaveKeyRejects(t *testing.T) {
	p := testPlatform(t)
	a, _ := p.Endorse(measurement, "wasm")
	b, _ := p.Endorse(measurement, "wasm")
	fa, _ := a.MarshalBinary()
	fb, _ := b.MarshalBinary()
	blocks := func(f []byte) (key, end []byte) {
		k, rest := pem.Decode(f)
		e, _ := pem.Decode(rest)
		return pem.EncodeToMemory(k), pem.EncodeToMemory(e)
	}
	ka, ea := blocks(fa)
	_, eb := blocks(fb)
	for name, in := range map[string][]byte{
		"key A, endorsement B": append(bytes.Clone(ka), eb...),
		"key only":             ka,
		"endorsement only":     ea,
		"two endorsements":     append(append(bytes.Clone(ka), ea...), ea...),
		"trailing text":        append(bytes.Clone(fa), "junk"...),
		"empty":                nil,
	} {
		if _, err := UnmarshalEnclaveKey(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := UnmarshalEnclaveKey(append(bytes.Clone(ea), ka...)); err != nil {
		t.Errorf("block order should not matter: %v", err)
	}
}

func TestMatch(t *testing.T) {
	p := testPlatform(t)
	key, _ := p.Endorse(measurement, "wasm")
	ev, _ := key.Evidence(reportData("m"))
	v := &Verifier{}
	if !v.Match(ev) || v.Match(ev[1:]) || v.Match(nil) || v.Match([]byte(Magic[:4])) {
		t.Error("Match is not exactly 'starts with Magic'")
	}
}

// crossSigned makes a certificate with the sim name and subject's key, signed by signer.
func crossSigned(t testing.TB, subject, signer *Platform) *x509.Certificate {
	t.Helper()
	return platformCert(t, subject, signer, false)
}

// platformCert is a certificate named as a sim platform's for subject's key, signed by signer,
// a CA or not.
func platformCert(t testing.TB, subject, signer *Platform, ca bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: PlatformCommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true}
	parent := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: PlatformCommonName}}
	if subject == signer {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &subject.key.PublicKey, signer.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rsaRoot(t testing.TB) *x509.Certificate {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Some Root CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// endorseAt is Endorse with a chosen creation time.
func endorseAt(t testing.TB, p *Platform, at time.Time) *EnclaveKey {
	t.Helper()
	k, err := p.Endorse(measurement, "wasm")
	if err != nil {
		t.Fatal(err)
	}
	k.info.Created = at.Unix()
	if k.endorsement, err = encMode.Marshal(k.info); err != nil {
		t.Fatal(err)
	}
	if k.endorsementSig, err = sign(p.key, endorsementLabel, k.endorsement); err != nil {
		t.Fatal(err)
	}
	return k
}

func FuzzVerify(f *testing.F) {
	p, err := NewPlatform(mustKey(f))
	if err != nil {
		f.Fatal(err)
	}
	key, _ := p.Endorse(measurement, "wasm")
	ev, _ := key.Evidence(reportData("fuzz"))
	f.Add(ev)
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), 0xa0))
	opts := attestation.Options{SimRoots: []*x509.Certificate{p.Certificate()}}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := (&Verifier{}).Verify(context.Background(), b, opts)
		if err == nil && (!res.Verified || res.Details["simulated"] != "true") {
			t.Fatalf("odd result %+v", res)
		}
	})
}

func FuzzUnmarshalEnclaveKey(f *testing.F) {
	p, err := NewPlatform(mustKey(f))
	if err != nil {
		f.Fatal(err)
	}
	key, _ := p.Endorse(measurement, "wasm")
	file, _ := key.MarshalBinary()
	f.Add(file)
	f.Add([]byte("-----BEGIN INCLAVARE SIM ENDORSEMENT-----\n-----END INCLAVARE SIM ENDORSEMENT-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := UnmarshalEnclaveKey(b)
		if err != nil {
			return
		}
		if _, err := k.Evidence(reportData("x")); err != nil {
			t.Fatal(err)
		}
	})
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// BenchmarkVerifySim verifies with nothing remembered: platform certificate, endorsement and
// report signatures (three ECDSA P-256 verifications).
func BenchmarkVerifySim(b *testing.B) { benchVerify(b, false) }

// BenchmarkVerifySimWarmCache verifies evidence of a known enclave: only the report signature is
// new (the platform certificate and the endorsement are remembered, internal/memo).
func BenchmarkVerifySimWarmCache(b *testing.B) { benchVerify(b, true) }

func benchVerify(b *testing.B, warm bool) {
	memo.SetEnabled(warm)
	defer memo.SetEnabled(true)
	p, err := NewPlatform(mustKey(b))
	if err != nil {
		b.Fatal(err)
	}
	key, _ := p.Endorse(measurement, "wasm")
	ev, _ := key.Evidence(reportData("bench"))
	opts := attestation.Options{SimRoots: []*x509.Certificate{p.Certificate()}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (&Verifier{}).Verify(context.Background(), ev, opts); err != nil {
			b.Fatal(err)
		}
	}
}
