package carrierclient

import (
	"os"
	"testing"

	"github.com/inclavare-containers/inclavare-go/shim/config"
)

func TestHoldRuneEnvironment(t *testing.T) {
	t.Setenv(EnvManifestTrust, "/inherited/trust.pem")
	os.Unsetenv(EnvManifestAllowEphemeral)
	// What the shim inherited is read once per process, at the first hold: after Setenv here.
	cfg := config.Default()
	cfg.Rune.ManifestTrust = "/etc/configured.pem"
	cfg.Signing.Ephemeral = true
	release := HoldRuneEnvironment(cfg)
	if os.Getenv(EnvManifestTrust) != "/etc/configured.pem" || os.Getenv(EnvManifestAllowEphemeral) != "true" {
		t.Fatalf("held: %s=%q %s=%q", EnvManifestTrust, os.Getenv(EnvManifestTrust), EnvManifestAllowEphemeral, os.Getenv(EnvManifestAllowEphemeral))
	}
	release()
	release() // a second call changes nothing
	if os.Getenv(EnvManifestTrust) != "/inherited/trust.pem" {
		t.Errorf("after release %s = %q, want the inherited value", EnvManifestTrust, os.Getenv(EnvManifestTrust))
	}
	if _, ok := os.LookupEnv(EnvManifestAllowEphemeral); ok {
		t.Errorf("after release %s is set", EnvManifestAllowEphemeral)
	}
	// Without configured values, rune gets what the shim inherited.
	release = HoldRuneEnvironment(config.Default())
	if os.Getenv(EnvManifestTrust) != "/inherited/trust.pem" {
		t.Errorf("unconfigured: %s = %q", EnvManifestTrust, os.Getenv(EnvManifestTrust))
	}
	release()
}
