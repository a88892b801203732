// Package wasm is the built-in WebAssembly enclave runtime ("builtin:wasm"): it runs WASI
// preview 1 command modules from the container's rootfs on wazero, inside the init-runelet, the
// role WAMR plays in Inclavare Containers. Each Spawn is a fresh module instance; a signal cancels
// it; the measurement (docs/measurement.md) is the SHA-256 of the module and its launch
// configuration; the inclavare.get_evidence import (docs/wasm-abi.md) lets a workload ask for
// attestation evidence.
//
// It must never let a guest reach a file outside the rootfs (every path is resolved by the kernel
// with openat2 RESOLVE_IN_ROOT) or rune's files inside it (/dev/.rune, the runelet's /proc
// entries), nor load compiled code from a cache the guest could write or whose files do not match
// the digests rune recorded (package codecache).
package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm/codecache"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

func init() {
	enclave.RegisterBuiltin("wasm", func() enclave.Runtime { return New() })
}

// Runtime is the builtin:wasm enclave runtime. Make one with New (or enclave.Builtin("wasm")).
type Runtime struct {
	// compileMu serializes compiling (which can take seconds) and guards the engines; mu guards
	// the rest and is never held while compiling, so processes exit and get signalled meanwhile.
	// Lock order: compileMu before mu.
	compileMu   sync.Mutex
	mu          sync.Mutex
	initialized bool
	destroyed   bool
	cfg         enclave.Config
	args        runtimeArgs
	rootfs      *rootFS

	cache         wazero.CompilationCache
	cacheReadOnly bool
	// cacheEntry is the cache directory when it is an entry of rune's code cache: code loaded
	// from it counts only once the entry's files are seen to match its manifest after the load.
	// cacheDistrusted is set when they did not: the cache is not used again.
	cacheEntry      string
	cacheDistrusted bool
	// primary uses the compilation cache when there is one. fallback (no cache) is made only when
	// a read-only cache lacks a module (wazero fails a compile whose result it cannot store) or is
	// distrusted.
	primary, fallback *engine

	evidenceMu sync.RWMutex
	evidence   EvidenceFunc
	resource   ResourceFunc

	procs map[*process]struct{}
	// measured holds, per module path, the code Measurement measured (guarded by mu): Spawn
	// runs a sealed module only if its code digest is still that one, and a module measured
	// sealed only if it is still sealed, so that a file replaced after the measurement was
	// attested never runs under the attested identity.
	measured map[string]measuredCode
}

// engine is one wazero runtime with the host modules and the modules compiled in it.
type engine struct {
	rt      wazero.Runtime
	modules map[[sha256.Size]byte]wazero.CompiledModule
}

// New returns an uninitialized builtin:wasm runtime.
func New() *Runtime {
	return &Runtime{procs: map[*process]struct{}{}}
}

// SetEvidenceFunc sets the hook behind inclavare.get_evidence; nil makes the import return
// ENOSYS. It may be called at any time, also while workloads run.
func (r *Runtime) SetEvidenceFunc(f EvidenceFunc) {
	r.evidenceMu.Lock()
	defer r.evidenceMu.Unlock()
	r.evidence = f
}

func (r *Runtime) evidenceFunc() EvidenceFunc {
	r.evidenceMu.RLock()
	defer r.evidenceMu.RUnlock()
	return r.evidence
}

// Init implements enclave.Runtime: it checks the configuration, opens the rootfs and the
// compilation cache and creates the wazero runtime every Spawn shares.
func (r *Runtime) Init(ctx context.Context, cfg enclave.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.initialized {
		return errors.New("builtin:wasm: Init called twice")
	}
	switch cfg.Type {
	case "sim", "tdx", "snp":
		// sim: no TEE. tdx/snp: the whole (confidential) VM is the TEE and the runelet is in it.
	case "intelSgx":
		return errors.New("builtin:wasm runs in the runelet's own address space, outside any SGX enclave; " +
			"use an SGX PAL (such as Occlum's) for ENCLAVE_TYPE=intelSgx")
	case "":
		return errors.New("builtin:wasm: enclave type is empty")
	default:
		return fmt.Errorf("builtin:wasm: unknown enclave type %q (known: sim, tdx, snp)", cfg.Type)
	}
	args, err := parseRuntimeArgs(cfg.Args)
	if err != nil {
		return err
	}
	if cfg.Rootfs == "" {
		return errors.New("builtin:wasm: rootfs is empty")
	}
	root, err := openRootFS(cfg.Rootfs)
	if err != nil {
		return fmt.Errorf("builtin:wasm: %w", err)
	}
	cacheDir := cfg.CacheDir
	if args.interpreter {
		cacheDir = "" // nothing is compiled to native code, so no code cache is read
	}
	cache, readOnly, err := openCache(cacheDir, cfg.Rootfs)
	if err != nil {
		root.Close()
		return fmt.Errorf("builtin:wasm: %w", err)
	}
	r.cfg, r.args, r.rootfs, r.cache, r.cacheReadOnly = cfg, args, root, cache, readOnly
	if cache != nil && codecache.HasManifest(cacheDir) {
		r.cacheEntry = cacheDir
	}
	r.primary, err = r.newEngine(ctx, cache)
	if err != nil {
		r.closeLocked(ctx)
		return fmt.Errorf("builtin:wasm: %w", err)
	}
	r.initialized = true
	return nil
}

// openCache opens the compilation cache at dir ("" means none). A cache holds native code the
// runtime executes, so a cache the guest could write would let it run code outside the wasm
// sandbox: a cache inside the rootfs must be read-only. rune hands the runelet one entry of its
// host code cache (package codecache), read-only; compile checks such an entry against its
// manifest each time it loaded code from it (see Runtime.cacheEntry). Any other read-only
// directory is not used: nothing says its code is what it seems.
func openCache(dir, rootfs string) (cache wazero.CompilationCache, readOnly bool, err error) {
	if dir == "" {
		return nil, false, nil
	}
	writable := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK, unix.AT_EACCESS) == nil
	if _, statErr := filepath.EvalSymlinks(dir); errors.Is(statErr, fs.ErrNotExist) {
		// A cache dir that does not exist yet will be created by wazero, writable.
		writable = true
	}
	inside, err := pathWithin(rootfs, dir)
	if err != nil {
		return nil, false, fmt.Errorf("compilation cache %s: %w", dir, err)
	}
	if inside && writable {
		return nil, false, fmt.Errorf("compilation cache %s is inside the rootfs %s and writable: a workload could plant "+
			"native code in it; fill it on the host with wasm.CacheModule and mount it read-only, or place it outside the rootfs",
			dir, rootfs)
	}
	if !writable && !codecache.HasManifest(dir) {
		return nil, true, nil
	}
	cache, err = wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		if !writable {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("open compilation cache %s: %w", dir, err)
	}
	return cache, !writable, nil
}

// pathWithin reports whether p is root or lies beneath it, after resolving symlinks in both.
func pathWithin(root, p string) (bool, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return false, err
	}
	realPath, err := evalExisting(p)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(realRoot, realPath)
	if err != nil {
		return false, err
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")), nil
}

// evalExisting resolves symlinks in the longest existing prefix of p and appends the rest.
func evalExisting(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

func (r *Runtime) newEngine(ctx context.Context, cache wazero.CompilationCache) (*engine, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, runtimeConfig(cache, r.args.memoryLimitPages, r.args.interpreter))
	if err := instantiateHostModules(ctx, rt, hostHooks{evidence: r.evidenceFunc, resource: r.resourceFunc}); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &engine{rt: rt, modules: map[[sha256.Size]byte]wazero.CompiledModule{}}, nil
}

// compile returns the module compiled in one of the runtime's engines, compiling it at most once;
// a private module (the plaintext of a sealed one) only in the engine without a cache.
func (r *Runtime) compile(ctx context.Context, wasmBytes []byte, private bool) (*engine, wazero.CompiledModule, error) {
	return r.compileSum(ctx, wasmBytes, sha256.Sum256(wasmBytes), private)
}

// compileSum is compile for a module whose SHA-256 the caller has computed already.
func (r *Runtime) compileSum(ctx context.Context, wasmBytes []byte, sum [sha256.Size]byte, private bool) (*engine, wazero.CompiledModule, error) {
	r.compileMu.Lock()
	defer r.compileMu.Unlock()
	r.mu.Lock()
	destroyed := r.destroyed
	r.mu.Unlock()
	if destroyed {
		return nil, nil, errors.New("builtin:wasm: runtime destroyed")
	}
	for _, e := range []*engine{r.primary, r.fallback} {
		if e != nil {
			if cm, ok := e.modules[sum]; ok {
				return e, cm, nil
			}
		}
	}
	if err := checkModuleBounds(wasmBytes); err != nil {
		return nil, nil, fmt.Errorf("invalid wasm module: %w", err)
	}
	e := r.primary
	var cm wazero.CompiledModule
	err := errCacheDistrusted
	if private && r.cache != nil {
		err = errPrivate
	} else if !r.cacheDistrusted {
		cm, err = e.rt.CompileModule(ctx, wasmBytes)
	}
	if err == nil && r.cacheEntry != "" {
		// wazero reads the entry by path and checks only a CRC-32: what it loaded counts only if
		// the entry still matches its manifest now, after the load. Nothing of it has run yet.
		if verr := codecache.Verify(r.cacheEntry); verr != nil {
			cm.Close(ctx)
			r.cacheDistrusted, err = true, verr
		}
	}
	if err != nil && r.cache != nil && (r.cacheReadOnly || r.cacheDistrusted || err == errPrivate) {
		if r.fallback == nil {
			if r.fallback, err = r.newEngine(ctx, nil); err != nil {
				return nil, nil, err
			}
		}
		e = r.fallback
		cm, err = e.rt.CompileModule(ctx, wasmBytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("invalid wasm module: %w", err)
	}
	if err := checkCommand(cm); err != nil {
		cm.Close(ctx)
		return nil, nil, fmt.Errorf("invalid wasm module: %w", err)
	}
	e.modules[sum] = cm
	return e, cm, nil
}

// errCacheDistrusted stands for a compile the primary engine is no longer trusted with;
// errPrivate for one it must not see (its cache would store the code).
var (
	errCacheDistrusted = errors.New("compilation cache distrusted")
	errPrivate         = errors.New("private module")
)

// unseal opens a sealed module with the key fetched through the resource hook.
func (r *Runtime) unseal(ctx context.Context, data []byte) ([]byte, error) {
	var key sealed.KeyFunc
	if fetch := r.resourceFunc(); fetch != nil {
		key = func(id string) ([]byte, error) { return fetch(ctx, id) }
	}
	return sealed.Unseal(data, key)
}

// launch is what Spawn and Measurement derive from a Process.
type launch struct {
	modulePath string
	module     []byte
	Launch
}

// prepare reads the module, except one in an encrypted layer that is not unpacked yet (for the
// measurement, which covers its path).
func (r *Runtime) prepare(p enclave.Process, unpacked bool) (*launch, error) {
	r.mu.Lock()
	initialized, destroyed := r.initialized, r.destroyed
	r.mu.Unlock()
	if !initialized {
		return nil, errors.New("builtin:wasm: runtime not initialized")
	}
	if destroyed {
		return nil, errors.New("builtin:wasm: runtime destroyed")
	}
	res, err := p.Resolve()
	if err != nil {
		return nil, fmt.Errorf("builtin:wasm: %w", err)
	}
	modulePath := res.Path
	resolved := p
	resolved.Path = modulePath
	inLayer, _ := resolved.CodeInLayer()
	var module []byte
	if inLayer == "" || unpacked {
		if module, err = r.rootfs.readFile(modulePath); err != nil {
			return nil, fmt.Errorf("builtin:wasm: read wasm module %s: %w", modulePath, err)
		}
	}
	argv := res.Args
	for _, kv := range p.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("builtin:wasm: environment entry %q: want KEY=VALUE", kv)
		}
	}
	return &launch{
		modulePath: modulePath,
		module:     module,
		Launch: Launch{
			Args:        slices.Clone(argv),
			Env:         slices.Clone(p.Env),
			Dir:         p.Dir,
			MemoryLimit: uint64(r.args.memoryLimitPages) * pageSize,
			Secrets:     slices.Clone(p.Secrets),
			Layers:      slices.Clone(p.Layers),
			CodeInLayer: inLayer,
		},
	}, nil
}

// Preload compiles the module p would run (validation, and code from the cache entry checked
// against its manifest) so that a Spawn of the same bytes finds it compiled. Spawn compiles
// whatever bytes it reads then: a module changed after Preload is refused when Measurement took
// it (checkMeasured), and compiled anew otherwise (an exec'd process). A sealed module or one in
// an encrypted layer is not preloaded: it has no plaintext yet.
func (r *Runtime) Preload(ctx context.Context, p enclave.Process) error {
	l, err := r.prepare(p, false)
	if err != nil {
		return err
	}
	if l.module == nil || sealed.IsSealed(l.module) {
		return nil
	}
	_, _, err = r.compile(ctx, l.module, false)
	return err
}

// PreloadChecks implements runelet.Preloader: with engine=interpreter the host validated nothing
// at create (prepare has nothing to compile), so PID 1's preload is the module's check.
func (r *Runtime) PreloadChecks() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.args.interpreter
}

// Measurement implements enclave.Runtime: Measure over the module at p.Path in the rootfs and the
// launch configuration Spawn would use.
func (r *Runtime) Measurement(p enclave.Process) (string, error) {
	l, err := r.prepare(p, false)
	if err != nil {
		return "", err
	}
	if l.CodeInLayer != "" {
		return Measure(nil, l.Launch), nil
	}
	sum := sealed.CodeDigest(l.module)
	r.mu.Lock()
	if r.measured == nil {
		r.measured = map[string]measuredCode{}
	}
	r.measured[l.modulePath] = measuredCode{sum: sum, sealed: sealed.IsSealed(l.module)}
	r.mu.Unlock()
	return measureSum(sum, l.Launch), nil
}

// measuredCode is what Measurement took of a module: its code digest, and whether it was sealed.
type measuredCode struct {
	sum    [sha256.Size]byte
	sealed bool
}

// checkMeasured refuses a module whose code digest (sealed.CodeDigest) is not the one Measurement
// took for its path, and a module that Measurement took sealed and that is not sealed now; none
// taken: nothing to compare, as for an exec'd process. It returns the code digest, which for a
// plain module is its SHA-256, so that Spawn does not hash it twice.
func (r *Runtime) checkMeasured(modulePath string, code []byte) ([sha256.Size]byte, error) {
	got := sealed.CodeDigest(code)
	r.mu.Lock()
	want, ok := r.measured[modulePath]
	r.mu.Unlock()
	if !ok {
		return got, nil
	}
	isSealed := sealed.IsSealed(code)
	if want.sealed && !isSealed {
		return got, fmt.Errorf("builtin:wasm: module %s was sealed when it was measured and is not now: refused", modulePath)
	}
	if got != want.sum {
		if isSealed {
			return got, fmt.Errorf("builtin:wasm: sealed module %s: it changed since it was measured (code digest %x, measured %x): refused before fetching its key", modulePath, got, want.sum)
		}
		// The attested measurement names the module read at create: a module replaced since
		// (the rootfs is the node's) would run under an identity that is not its own.
		return got, fmt.Errorf("builtin:wasm: module %s changed since it was measured (SHA-256 %x, measured %x): refused", modulePath, got, want.sum)
	}
	return got, nil
}

// Destroy implements enclave.Runtime: it kills what still runs, waits for it, and frees the
// wazero runtimes, the cache and the rootfs.
func (r *Runtime) Destroy() error {
	r.mu.Lock()
	if r.destroyed || !r.initialized {
		r.destroyed = true
		r.mu.Unlock()
		return nil
	}
	r.destroyed = true
	procs := make([]*process, 0, len(r.procs))
	for p := range r.procs {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	for _, p := range procs {
		p.terminate(unix.SIGKILL)
	}
	for _, p := range procs {
		<-p.done
	}
	r.compileMu.Lock()
	defer r.compileMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeLocked(context.Background())
}

func (r *Runtime) closeLocked(ctx context.Context) error {
	var errs []error
	for _, e := range []*engine{r.primary, r.fallback} {
		if e != nil {
			errs = append(errs, e.rt.Close(ctx))
		}
	}
	r.primary, r.fallback = nil, nil
	if r.cache != nil {
		errs = append(errs, r.cache.Close(ctx))
		r.cache = nil
	}
	if r.rootfs != nil {
		errs = append(errs, r.rootfs.Close())
		r.rootfs = nil
	}
	return errors.Join(errs...)
}
