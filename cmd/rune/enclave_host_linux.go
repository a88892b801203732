package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	_ "github.com/inclavare-containers/inclavare-go/enclave/native" // measures builtin:native on the host
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
)

// securePath maps an in-container path to the host, resolving symlinks as if rootfs were "/".
func securePath(rootfs, p string) (string, error) {
	return securejoin.SecureJoin(rootfs, p)
}

// prepareWasm rejects an invalid module at create and compiles it into the host cache, which the
// runelet then reads (read-only) so that start does not compile again.
func prepareWasm(rootfs, module, cacheDir string) error {
	hp, err := securePath(rootfs, module)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(hp)
	if err != nil {
		return fmt.Errorf("wasm module %s: %w", module, err)
	}
	// Validating and precompiling a large module costs hundreds of milliseconds; a module whose
	// exact bytes were validated and compiled into this cache by this build is not done again.
	sum := sha256.Sum256(data)
	marker := filepath.Join(cacheDir, "prepared-"+buildID(), hex.EncodeToString(sum[:]))
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if err := wasm.Validate(data); err != nil {
		return fmt.Errorf("wasm module %s: %w", module, err)
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return fmt.Errorf("wasm cache: %w", err)
	}
	if err := wasm.Precompile(context.Background(), cacheDir, data); err != nil {
		return fmt.Errorf("precompile %s: %w", module, err)
	}
	if err := os.MkdirAll(filepath.Dir(marker), 0o700); err == nil {
		_ = os.WriteFile(marker, nil, 0o600)
	}
	return nil
}

// buildID names what a compiled-module cache depends on: the Go toolchain and wazero's version.
var buildID = sync.OnceValue(func() string {
	id := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/tetratelabs/wazero" {
				id += "-wazero" + d.Version
			}
		}
	}
	return strings.NewReplacer("/", "_", " ", "_").Replace(id)
})

// endorseSimEnclave creates the per-enclave key of a sim enclave, endorsed by this host's
// simulated platform key for measurement.
func endorseSimEnclave(measurement, runtime string) ([]byte, error) {
	platform, err := sim.LoadOrCreatePlatform(simPlatformKeyPath())
	if err != nil {
		return nil, fmt.Errorf("sim platform key: %w", err)
	}
	key, err := platform.Endorse(measurement, runtime)
	if err != nil {
		return nil, fmt.Errorf("endorse sim enclave: %w", err)
	}
	return key.MarshalBinary()
}

// simPlatformKeyPath is $RUNE_SIM_PLATFORM_KEY, or the default host path.
func simPlatformKeyPath() string {
	if p := os.Getenv("RUNE_SIM_PLATFORM_KEY"); p != "" {
		return p
	}
	return sim.DefaultPlatformKeyPath
}
