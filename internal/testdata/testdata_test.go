package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindsAttestationSamples(t *testing.T) {
	dir := Attestation(t)
	for _, name := range []string{"README.md", "roots/intel_sgx_root_ca.pem"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("expected %s in %s: %v", name, dir, err)
		}
	}
}

func TestEnvOverride(t *testing.T) {
	real := Dir(t)
	t.Setenv(EnvVar, real)
	got, err := Find()
	if err != nil || got != real {
		t.Fatalf("Find with %s=%s: got %q, %v", EnvVar, real, got, err)
	}
	t.Setenv(EnvVar, t.TempDir())
	if _, err := Find(); err == nil {
		t.Fatal("Find accepted a directory without attestation/")
	}
}
