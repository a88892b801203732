package carrierclient

import (
	"os"
	"strings"
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

// TestSealWithoutCarrier: RUNE_CARRIER_SEAL without RUNE_CARRIER asks for a seal that nothing
// would do (no conversion runs): the container would start with its entrypoint in the clear and
// the request in its environment, silently. Refused instead, naming what is missing.
func TestSealWithoutCarrier(t *testing.T) {
	_, ok, err := RequestedIn([]string{"PATH=/bin", EnvCarrierSeal + "=tenant/kek/app"})
	if err == nil || ok || !strings.Contains(err.Error(), EnvCarrier+" is not set") {
		t.Fatalf("RUNE_CARRIER_SEAL alone: requested %v, %v", ok, err)
	}
	if name, ok, err := RequestedIn([]string{EnvCarrier + "=wasm", EnvCarrierSeal + "=tenant/kek/app"}); err != nil || !ok || name != "wasm" {
		t.Fatalf("with RUNE_CARRIER: %q %v %v", name, ok, err)
	}
	if _, ok, err := RequestedIn([]string{EnvCarrierSeal + "="}); err == nil || ok {
		t.Fatalf("an empty RUNE_CARRIER_SEAL alone: %v %v", ok, err)
	}
	if _, ok, err := RequestedIn([]string{"PATH=/bin"}); err != nil || ok {
		t.Fatalf("neither: %v %v", ok, err)
	}
}
