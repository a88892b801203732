package wasm

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// runtimeConfig is the one wazero configuration every builtin:wasm engine uses. Precompile must
// use the same options as Init: wazero's cache key covers the module bytes and whether
// termination checks are compiled in (WithCloseOnContextDone), so any drift here would make the
// host-filled cache miss. The interpreter (engine=interpreter) has no cache: it compiles nothing
// to native code.
func runtimeConfig(cache wazero.CompilationCache, memoryLimitPages uint32, interpreter bool) wazero.RuntimeConfig {
	cfg := wazero.NewRuntimeConfig()
	if interpreter {
		cfg, cache = wazero.NewRuntimeConfigInterpreter(), nil
	}
	cfg = cfg.
		// Compiled code checks for Close/cancel at function entries and loop back-edges, so a
		// signal stops even a guest that never calls into the host.
		WithCloseOnContextDone(true)
	if cache != nil {
		cfg = cfg.WithCompilationCache(cache)
	}
	if memoryLimitPages != 0 {
		cfg = cfg.WithMemoryLimitPages(memoryLimitPages)
	}
	return cfg
}

// instantiateHostModules adds everything a builtin:wasm guest may import.
func instantiateHostModules(ctx context.Context, rt wazero.Runtime, hooks hostHooks) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fmt.Errorf("instantiate %s: %w", wasi_snapshot_preview1.ModuleName, err)
	}
	if err := instantiateEvidenceModule(ctx, rt, hooks); err != nil {
		return fmt.Errorf("instantiate %s: %w", evidenceModuleName, err)
	}
	return nil
}

// validator is a shared interpreter runtime holding the host modules: Validate needs wazero's
// decoder and validator, not native code, and the host modules tell which imports exist.
var validator struct {
	once    sync.Once
	rt      wazero.Runtime
	imports map[[2]string]api.FunctionDefinition
	err     error
}

func validatorRuntime() (wazero.Runtime, map[[2]string]api.FunctionDefinition, error) {
	validator.once.Do(func() {
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		none := hostHooks{evidence: func() EvidenceFunc { return nil }, resource: func() ResourceFunc { return nil }}
		if err := instantiateHostModules(ctx, rt, none); err != nil {
			validator.err = err
			return
		}
		imports := map[[2]string]api.FunctionDefinition{}
		for _, name := range []string{wasi_snapshot_preview1.ModuleName, evidenceModuleName} {
			for fn, def := range rt.Module(name).ExportedFunctionDefinitions() {
				imports[[2]string{name, fn}] = def
			}
		}
		validator.rt, validator.imports = rt, imports
	})
	return validator.rt, validator.imports, validator.err
}

// Validate checks that wasmBytes is a WebAssembly module builtin:wasm can run: it decodes and
// validates, exports a WASI command entry point (_start with no parameters or results), and
// imports only functions the runtime provides, with matching signatures. rune calls it at create
// so that a bad module fails there with "invalid wasm module: …". The bytes are untrusted.
func Validate(wasmBytes []byte) (err error) {
	rt, _, err := validatorRuntime()
	if err != nil {
		return fmt.Errorf("wasm validator: %w", err)
	}
	defer func() {
		// wazero's decoder is not promised panic-free on hostile bytes; fail closed with an error.
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid wasm module: decoder failed: %v", p)
		}
	}()
	if err := checkModuleBounds(wasmBytes); err != nil {
		return fmt.Errorf("invalid wasm module: %w", err)
	}
	ctx := context.Background()
	cm, err := rt.CompileModule(ctx, wasmBytes)
	if err != nil {
		return fmt.Errorf("invalid wasm module: %w", err)
	}
	defer cm.Close(ctx)
	if err := checkCommand(cm); err != nil {
		return fmt.Errorf("invalid wasm module: %w", err)
	}
	return nil
}

// checkCommand reports why a compiled module cannot run as a builtin:wasm command.
func checkCommand(cm wazero.CompiledModule) error {
	_, provided, err := validatorRuntime()
	if err != nil {
		return fmt.Errorf("wasm validator: %w", err)
	}
	start, ok := cm.ExportedFunctions()["_start"]
	if !ok {
		return fmt.Errorf("no exported function _start: not a WASI command module")
	}
	if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		return fmt.Errorf("_start must take no parameters and return nothing, has %s", signature(start))
	}
	for _, fn := range cm.ImportedFunctions() {
		module, name, _ := fn.Import()
		want, ok := provided[[2]string{module, name}]
		if !ok {
			return fmt.Errorf("imports function %s.%s, which builtin:wasm does not provide (it provides %s, %s.%s and %s.%s)",
				module, name, wasi_snapshot_preview1.ModuleName, evidenceModuleName, evidenceFunctionName, evidenceModuleName, resourceFunctionName)
		}
		if !slices.Equal(fn.ParamTypes(), want.ParamTypes()) || !slices.Equal(fn.ResultTypes(), want.ResultTypes()) {
			return fmt.Errorf("imports function %s.%s as %s, but it is %s", module, name, signature(fn), signature(want))
		}
	}
	for _, mem := range cm.ImportedMemories() {
		module, name, _ := mem.Import()
		return fmt.Errorf("imports memory %s.%s, which builtin:wasm does not provide (a module must define its own memory)", module, name)
	}
	return nil
}

// signature renders a function type as "(i32, i32) -> (i32)".
func signature(fn api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := "("
		for i, t := range ts {
			if i > 0 {
				s += ", "
			}
			s += api.ValueTypeName(t)
		}
		return s + ")"
	}
	return names(fn.ParamTypes()) + " -> " + names(fn.ResultTypes())
}

// Precompile compiles wasmBytes into the compilation cache at cacheDir, so that a builtin:wasm
// runtime whose Config.CacheDir is cacheDir starts the module without compiling it. rune uses
// CacheModule instead, which keeps one verified entry per module.
func Precompile(ctx context.Context, cacheDir string, wasmBytes []byte) error {
	if err := Validate(wasmBytes); err != nil {
		return err
	}
	return compileInto(ctx, cacheDir, wasmBytes)
}

func newCompilationCache(dir string) (wazero.CompilationCache, error) {
	return wazero.NewCompilationCacheWithDir(dir)
}

// newPlainRuntime is a runtime with runtimeConfig and no host modules: enough to compile.
func newPlainRuntime(ctx context.Context, cache wazero.CompilationCache) wazero.Runtime {
	return wazero.NewRuntimeWithConfig(ctx, runtimeConfig(cache, 0, false))
}
