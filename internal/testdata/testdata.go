// Package testdata locates the read-only test samples (real attestation evidence and collateral)
// that the repository carries in <module root>/testdata, for tests of any package.
//
// The samples sit in <repo>/testdata (so a clone in any folder is self-contained), or wherever
// INCLAVARE_TESTDATA points. This package only finds directories; it must never
// generate, modify or skip over sample data: when the samples are missing, tests fail loudly.
package testdata

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// EnvVar names the environment variable that overrides the search with an explicit directory
// (the one that contains attestation/).
const EnvVar = "INCLAVARE_TESTDATA"

// Dir returns the testdata directory (the one containing attestation/), or fails t.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Attestation returns the attestation sample directory, or fails t.
func Attestation(t testing.TB) string {
	t.Helper()
	return filepath.Join(Dir(t), "attestation")
}

// Find returns the testdata directory without a testing.TB, for benchmarks' helpers and tools. It
// honours EnvVar first, then walks up from the working directory to the module root (the directory
// holding go.mod) and takes its testdata/ directory.
func Find() (string, error) {
	if env := os.Getenv(EnvVar); env != "" {
		if isDir(filepath.Join(env, "attestation")) {
			return filepath.Abs(env)
		}
		return "", fmt.Errorf("%s=%q has no attestation/ directory", EnvVar, env)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locate testdata: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			candidate := filepath.Join(dir, "testdata")
			if isDir(filepath.Join(candidate, "attestation")) {
				return filepath.Abs(candidate)
			}
			return "", fmt.Errorf("locate testdata: module root %s has no testdata/attestation (set %s)", dir, EnvVar)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("locate testdata: no go.mod above %s (set %s)", wd, EnvVar)
		}
		dir = parent
	}
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// ReadAttestation returns the bytes of the attestation sample at rel (a path below attestation/,
// such as "sgx/oasis_quote_v3_pck_chain.bin"), or fails t.
func ReadAttestation(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Attestation(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
