package wasm

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/inclavare-containers/inclavare-go/enclave/wasm/codecache"
)

// CacheBuildID names what compiled code depends on: the Go toolchain and wazero's version. Entries
// of the host's code cache are kept per build, so that a new rune never loads an old one's code.
var CacheBuildID = sync.OnceValue(func() string {
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

// CachePhases are told what CacheModule is doing, for error messages and bounds (may be nil).
type CachePhases func(phase string)

// CacheModule makes sure the host code cache rooted at root holds wasmBytes compiled, and returns
// the directory of that module's entry: the one directory to mount, read-only, as the runelet's
// Config.CacheDir. A module without a verified entry is validated (an invalid one fails with
// "invalid wasm module: …") and compiled; one with an entry is not, since an entry exists only for
// bytes that this build validated. See package codecache for how entries are written and checked.
func CacheModule(ctx context.Context, root string, wasmBytes []byte, phase CachePhases) (string, error) {
	if phase == nil {
		phase = func(string) {}
	}
	r, err := codecache.Open(root)
	if err != nil {
		return "", err
	}
	defer r.Close()
	return r.Ensure(CacheBuildID(), sha256.Sum256(wasmBytes), func(dir string) error {
		phase("validate")
		if err := Validate(wasmBytes); err != nil {
			return err
		}
		phase("compile")
		return compileInto(ctx, dir, wasmBytes)
	})
}

// compileInto compiles wasmBytes, already validated, into the compilation cache at cacheDir.
func compileInto(ctx context.Context, cacheDir string, wasmBytes []byte) error {
	cache, err := newCompilationCache(cacheDir)
	if err != nil {
		return fmt.Errorf("open compilation cache %s: %w", cacheDir, err)
	}
	defer cache.Close(ctx)
	rt := newPlainRuntime(ctx, cache)
	defer rt.Close(ctx)
	// A cold entry is on create's critical path: compile the functions on every CPU the
	// process may use (prepare's bounds count its memory, whatever the workers).
	ctx = experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
	if _, err := rt.CompileModule(ctx, wasmBytes); err != nil {
		return fmt.Errorf("precompile wasm module into %s: %w", cacheDir, err)
	}
	return nil
}
