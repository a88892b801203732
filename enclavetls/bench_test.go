package enclavetls

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
)

// benchHandshakes runs b.N full handshakes over in-memory pipes: mk returns the two TLS ends.
func benchHandshakes(b *testing.B, mk func(sc, cc net.Conn) (server, client *tls.Conn)) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sc, cc := net.Pipe()
		s, c := mk(sc, cc)
		done := make(chan error, 1)
		go func() { done <- s.HandshakeContext(ctx) }()
		if err := c.HandshakeContext(ctx); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		sc.Close()
		cc.Close()
	}
}

// BenchmarkHandshakePlainTLS13 is the baseline: TLS 1.3, self-signed ECDSA P-256 server
// certificate, no resumption, the client skipping chain verification (as Enclave-TLS does, which
// verifies evidence instead).
func BenchmarkHandshakePlainTLS13(b *testing.B) {
	key := newKey(b)
	leaf := selfSigned(b, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true}
	ccfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	benchHandshakes(b, func(sc, cc net.Conn) (*tls.Conn, *tls.Conn) {
		return tls.Server(sc, scfg), tls.Client(cc, ccfg)
	})
}

// BenchmarkHandshakePlainTLS13Mutual is the baseline for mutual attestation: as
// BenchmarkHandshakePlainTLS13, and the client presents its own self-signed ECDSA P-256
// certificate, which the server requires (as Enclave-TLS's mutual mode does) without chain
// verification.
func BenchmarkHandshakePlainTLS13Mutual(b *testing.B) {
	skey, ckey := newKey(b), newKey(b)
	sleaf := selfSigned(b, skey, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cleaf := selfSigned(b, ckey, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	scert := tls.Certificate{Certificate: [][]byte{sleaf.Raw}, PrivateKey: skey, Leaf: sleaf}
	ccert := tls.Certificate{Certificate: [][]byte{cleaf.Raw}, PrivateKey: ckey, Leaf: cleaf}
	scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{scert}, SessionTicketsDisabled: true,
		ClientAuth: tls.RequireAnyClientCert}
	ccfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &ccert, nil }}
	benchHandshakes(b, func(sc, cc net.Conn) (*tls.Conn, *tls.Conn) {
		return tls.Server(sc, scfg), tls.Client(cc, ccfg)
	})
}

// BenchmarkHandshakeEnclaveTLS: the server presents its cached attested certificate (sim TEE), the
// client verifies the evidence, the key binding and the policy in the handshake.
func BenchmarkHandshakeEnclaveTLS(b *testing.B) {
	benchEnclave(b, false, false)
}

// BenchmarkHandshakeEnclaveTLSFresh: as above with RequireFresh, so the server makes evidence
// and a certificate for every connection.
func BenchmarkHandshakeEnclaveTLSFresh(b *testing.B) {
	benchEnclave(b, true, false)
}

// BenchmarkHandshakeEnclaveTLSMutual: both sides attested with their cached certificates (each
// side's verifier reuses its verdict on the other's).
func BenchmarkHandshakeEnclaveTLSMutual(b *testing.B) {
	benchEnclave(b, false, true)
}

// BenchmarkHandshakeEnclaveTLSMutualFresh: both sides attested and fresh.
func BenchmarkHandshakeEnclaveTLSMutualFresh(b *testing.B) {
	benchEnclave(b, true, true)
}

func benchEnclave(b *testing.B, fresh, mutual bool) {
	srvTEE, cliTEE := newSimTEE(b, "bench server"), newSimTEE(b, "bench client")
	scfg := Config{Identity: srvTEE.identity(b)}
	ccfg := Config{Verifier: verifierFor(b, fresh, srvTEE)}
	if mutual {
		scfg.Verifier = verifierFor(b, fresh, cliTEE)
		ccfg.Identity = cliTEE.identity(b)
	}
	srv, err := NewServer(scfg)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := NewClient(ccfg)
	if err != nil {
		b.Fatal(err)
	}
	benchHandshakes(b, func(sc, cc net.Conn) (*tls.Conn, *tls.Conn) {
		c, err := cl.Client(cc)
		if err != nil {
			b.Fatal(err)
		}
		return srv.Server(sc).Conn, c.Conn
	})
}

// BenchmarkECDSAP256Sign and BenchmarkECDSAP256Verify price the operations an attested handshake
// adds to a plain one (bench/attest/run.sh computes the floor from them).
func BenchmarkECDSAP256Sign(b *testing.B) {
	key := newKey(b)
	digest := sha256.Sum256([]byte("enclave-tls"))
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkECDSAP256Verify(b *testing.B) {
	key := newKey(b)
	digest := sha256.Sum256([]byte("enclave-tls"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			b.Fatal("signature does not verify")
		}
	}
}

// BenchmarkVerifySGXCertificateCached, …Fresh and …Cold price what a Verifier does with a
// peer's certificate that carries hardware evidence: the recorded rats-tls certificate (a real
// SGX quote bound to its key) with Intel's recorded TCB info, QE identity and TCB signing chain,
// at a time inside their validity. Cached: the verdict is remembered (the policy runs each time);
// Fresh: no verdict cache, the verification memo warm (a long-lived verifier: only the quote's
// own signature and the certificate's self-signature are new); Cold: no verdict cache, no memo.
func BenchmarkVerifySGXCertificateCached(b *testing.B) { benchVerifySGX(b, 0, true) }

func BenchmarkVerifySGXCertificateFresh(b *testing.B) { benchVerifySGX(b, -1, true) }

func BenchmarkVerifySGXCertificateCold(b *testing.B) { benchVerifySGX(b, -1, false) }

func benchVerifySGX(b *testing.B, cacheSize int, memo bool) {
	cert := legacyCert(b, "ratls_legacy_sgx_ecdsa_rsa_sha256.pem")
	v := sgxVerifier(b)
	v.CacheSize = cacheSize
	v.Options.Now = sgxAt
	if !memo {
		dcap.CacheVerifications(false)
		defer dcap.CacheVerifications(true)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyCertificate(ctx, cert, nil); err != nil {
			b.Fatal(err)
		}
	}
}
