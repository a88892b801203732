// Package kbs measures verdictd on loopback: attestations with a resource release per second (the
// whole KBS handshake of a fresh client: TLS 1.3, auth, sim evidence bound to the nonce and an
// ephemeral P-256 key, verification, policy, EAR token, JWE release and decryption) and releases
// per second on an attested session. Client and broker share the process and its CPUs. run.sh
// runs it; README.md has the figures.
package kbs

import (
	"context"
	"fmt"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/kbs"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

func setup(b *testing.B) (*verdictdtest.Broker, kbs.ClientConfig) {
	platform, key, m := simtest.Enclave(b, "bench", "native")
	o := verdictdtest.Options{
		Policies:    fmt.Sprintf(`{"default": {"tees": {"sim": {"measurements": {"measurement": [%q]}, "allow_unknown_tcb": true}}}}`, m),
		Resources:   map[string]string{"repo/key/db": "a 32-byte secret for the bench.."},
		MaxSessions: 1 << 20,
	}
	o.Verify.SimRoots = append(o.Verify.SimRoots, platform.Certificate())
	br := verdictdtest.Start(b, o)
	return br, kbs.ClientConfig{URL: br.URL, TEE: attestation.Sim, Pin: br.Pin,
		Evidence: func(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) { return key.Evidence(rd) }}
}

// BenchmarkAttestRelease: one fresh client per operation (new TLS connection, new TEE key, full
// handshake, one resource).
func BenchmarkAttestRelease(b *testing.B) {
	_, cfg := setup(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := kbs.NewClient(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Resource(context.Background(), "repo/key/db"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attest+release/s")
}

// BenchmarkRelease: resources on one attested session (kept-alive connection).
func BenchmarkRelease(b *testing.B) {
	_, cfg := setup(b)
	c, err := kbs.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Attest(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Resource(context.Background(), "repo/key/db"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "release/s")
}
