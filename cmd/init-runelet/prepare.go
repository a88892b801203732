package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/runelet"
)

// prepareMain is `init-runelet prepare`: on the host, for rune create, a JSON PrepareRequest on stdin,
// a PrepareResponse on stdout.
func prepareMain() int {
	var req runelet.PrepareRequest
	var resp runelet.PrepareResponse
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("prepare: read request: %v", err)
	} else if err := prepare(&req, &resp); err != nil {
		resp.Error = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(&resp); err != nil {
		return 1
	}
	return 0
}

func prepare(req *runelet.PrepareRequest, resp *runelet.PrepareResponse) error {
	s := req.Settings
	p := enclave.Process{Path: req.Path, Args: req.Launch.Args, Env: req.Launch.Env, Dir: req.Launch.Cwd}
	cfg := enclave.Config{Type: s.Type, RuntimePath: s.RuntimePath, Args: s.Args, LogLevel: s.LogLevel, Rootfs: req.Rootfs}
	name, builtin := s.Builtin()
	var err error
	switch {
	case !builtin:
		resp.Measurement, err = pal.Measure(s.RuntimePath, cfg, p)
	default:
		if name == "wasm" {
			if err := prepareWasm(req.Rootfs, req.Path, req.CacheDir); err != nil {
				return err
			}
		}
		rt, berr := enclave.Builtin(name)
		if berr != nil {
			return berr
		}
		if err := rt.Init(context.Background(), cfg); err != nil {
			return err
		}
		resp.Measurement, err = rt.Measurement(p)
		rt.Destroy()
	}
	if err != nil {
		return err
	}
	if s.Type == enclave.TypeSim {
		platform, err := sim.LoadOrCreatePlatform(req.SimPlatformKey)
		if err != nil {
			return fmt.Errorf("sim platform key: %w", err)
		}
		key, err := platform.Endorse(resp.Measurement, s.RuntimePath)
		if err != nil {
			return fmt.Errorf("endorse sim enclave: %w", err)
		}
		if resp.EnclaveKey, err = key.MarshalBinary(); err != nil {
			return err
		}
	}
	return nil
}

// prepareWasm rejects an invalid module at create and compiles it into the host cache, which the
// runelet then reads (read-only) so that start does not compile again. Validating and precompiling a
// large module costs hundreds of milliseconds; a module whose exact bytes were prepared in this
// cache by this build is not done again.
func prepareWasm(rootfs, module, cacheDir string) error {
	hp, err := securejoin.SecureJoin(rootfs, module)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(hp)
	if err != nil {
		return fmt.Errorf("wasm module %s: %w", module, err)
	}
	sum := sha256.Sum256(data)
	marker := filepath.Join(cacheDir, "prepared-"+buildID(), hex.EncodeToString(sum[:]))
	if cacheDir != "" {
		if _, err := os.Stat(marker); err == nil {
			return nil
		}
	}
	if err := wasm.Validate(data); err != nil {
		return fmt.Errorf("wasm module %s: %w", module, err)
	}
	if cacheDir == "" {
		return nil
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

// simPlatformCertMain is `init-runelet sim-platform-cert [KEYFILE]`.
func simPlatformCertMain(args []string) int {
	path := ""
	if len(args) > 0 {
		path = args[0]
	}
	p, err := sim.LoadOrCreatePlatform(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim platform key:", err)
		return 1
	}
	os.Stdout.Write(p.CertificatePEM())
	return 0
}
