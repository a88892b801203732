// Package simtest makes sim TEEs for tests: a fresh platform key and one enclave it endorsed.
// It is for tests only and must never be used to endorse a real workload.
package simtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation/sim"
)

// Enclave creates a sim platform with a new P-256 key and has it endorse an enclave of runtime
// whose measurement is the hex SHA-256 of name, so that names stand for distinct workloads.
func Enclave(t testing.TB, name, runtime string) (platform *sim.Platform, key *sim.EnclaveKey, measurement string) {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	platform, err = sim.NewPlatform(pk)
	if err != nil {
		t.Fatal(err)
	}
	m := sha256.Sum256([]byte(name))
	measurement = hex.EncodeToString(m[:])
	if key, err = platform.Endorse(measurement, runtime); err != nil {
		t.Fatal(err)
	}
	return platform, key, measurement
}
