package carrier

import (
	"os"
	"sync"

	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// What rune reads from its environment for its manifest flags (cmd/rune: --manifest-trust,
// --manifest-allow-ephemeral). The shim runs rune through go-runc, which passes rune the
// shim's own environment and no per-command arguments of ours, so this is the way to tell it.
const (
	EnvManifestTrust          = "RUNE_MANIFEST_TRUST"
	EnvManifestAllowEphemeral = "RUNE_MANIFEST_ALLOW_EPHEMERAL"
)

var (
	// runeEnvMu is held from a conversion until its `rune create` returned, so that two
	// containers of one shim (a pod) created under different configurations never see each
	// other's values.
	runeEnvMu sync.Mutex
	// runeEnvInherited is what the shim inherited from containerd (an administrator may set
	// the variables there); it is restored after every create.
	runeEnvInherited = onceInherited()
)

func onceInherited() func() map[string]*string {
	return sync.OnceValue(func() map[string]*string {
		m := map[string]*string{}
		for _, k := range []string{EnvManifestTrust, EnvManifestAllowEphemeral} {
			if v, ok := os.LookupEnv(k); ok {
				m[k] = &v
			} else {
				m[k] = nil
			}
		}
		return m
	})
}

// holdRuneEnvironment sets the variables rune reads to what cfg asks for — rune.manifest_trust
// as the trust file; signing.ephemeral as the allowance for ephemeral keys — and returns the
// function that restores them and lets the next conversion in.
func holdRuneEnvironment(cfg *config.Config) func() {
	inherited := runeEnvInherited()
	runeEnvMu.Lock()
	restore := func(k string) {
		if v := inherited[k]; v != nil {
			os.Setenv(k, *v)
		} else {
			os.Unsetenv(k)
		}
	}
	if cfg.Rune.ManifestTrust != "" {
		os.Setenv(EnvManifestTrust, cfg.Rune.ManifestTrust)
	} else {
		restore(EnvManifestTrust)
	}
	if cfg.Signing.Ephemeral {
		os.Setenv(EnvManifestAllowEphemeral, "true")
	} else {
		restore(EnvManifestAllowEphemeral)
	}
	return sync.OnceFunc(func() {
		restore(EnvManifestTrust)
		restore(EnvManifestAllowEphemeral)
		runeEnvMu.Unlock()
	})
}
