package enclave

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/inclavare-containers/inclavare-go/attestation/tee"
)

// BuiltinPrefix marks ENCLAVE_RUNTIME_PATH values that name a runtime built into the runelet.
const BuiltinPrefix = "builtin:"

// RuntimeRef is an ENCLAVE_RUNTIME_PATH in its one parsed form: either a runtime built into the
// runelet or a PAL library on the host, never both. ParseRuntimePath is the one place that tells
// them apart and knows the built-in runtimes' names.
type RuntimeRef struct {
	// Builtin is the built-in runtime's name ("wasm", "native"); "" for a PAL.
	Builtin string
	// PAL is the PAL library's host path as the settings give it; "" for a built-in runtime.
	PAL string
}

// The built-in runtimes, by their RuntimeRef.
var (
	WasmRuntime   = RuntimeRef{Builtin: "wasm"}
	NativeRuntime = RuntimeRef{Builtin: "native"}
)

// builtinTEEs are the built-in runtimes and the TEE types each may run on (nil: any). rune knows
// them from here without linking their code; the runelet links the code, and RegisterBuiltin
// accepts no other name.
var builtinTEEs = map[string][]tee.TEE{
	WasmRuntime.Builtin: nil,
	// builtin:native isolates nothing: it is a stand-in for an enclave on the sim TEE only.
	NativeRuntime.Builtin: {tee.Sim},
}

// String is the ENCLAVE_RUNTIME_PATH value of r.
func (r RuntimeRef) String() string {
	if r.Builtin != "" {
		return BuiltinPrefix + r.Builtin
	}
	return r.PAL
}

// IsPAL reports whether r is a PAL library.
func (r RuntimeRef) IsPAL() bool { return r.Builtin == "" }

// ParseRuntimePath parses an ENCLAVE_RUNTIME_PATH: "builtin:<name>" of a known built-in runtime,
// or the absolute host path of a PAL library.
func ParseRuntimePath(p string) (RuntimeRef, error) {
	r := splitRuntimePath(p)
	switch {
	case p == "":
		return RuntimeRef{}, fmt.Errorf("%s is required for an enclave container (a PAL library path, or %s / %s)", EnvPath, WasmRuntime, NativeRuntime)
	case !r.IsPAL():
		if _, ok := builtinTEEs[r.Builtin]; !ok {
			return RuntimeRef{}, fmt.Errorf("unknown built-in enclave runtime %q in %s (known: %s)", p, EnvPath, strings.Join(builtinNames(), ", "))
		}
	case !strings.HasPrefix(p, "/"):
		return RuntimeRef{}, fmt.Errorf("%s %q must be an absolute host path of a PAL library", EnvPath, p)
	}
	return r, nil
}

// splitRuntimePath is the lexical split of p, without checks.
func splitRuntimePath(p string) RuntimeRef {
	if name, ok := strings.CutPrefix(p, BuiltinPrefix); ok {
		return RuntimeRef{Builtin: name}
	}
	return RuntimeRef{PAL: p}
}

// checkTEE refuses a built-in runtime on a TEE type it does not run on.
func (r RuntimeRef) checkTEE(t tee.TEE) error {
	allowed := builtinTEEs[r.Builtin]
	if r.IsPAL() || allowed == nil {
		return nil
	}
	for _, a := range allowed {
		if a == t {
			return nil
		}
	}
	return fmt.Errorf("%s provides no isolation; it is only available with %s=%s, not %q", r, EnvType, tee.Sim, t)
}

// builtinNames are the known built-in runtimes, as ENCLAVE_RUNTIME_PATH values, sorted.
func builtinNames() []string {
	names := make([]string, 0, len(builtinTEEs))
	for n := range builtinTEEs {
		names = append(names, RuntimeRef{Builtin: n}.String())
	}
	sort.Strings(names)
	return names
}

// Runtime is the enclave runtime the settings name (their RuntimePath, parsed; Validate has
// checked it).
func (s *Settings) Runtime() RuntimeRef { return splitRuntimePath(s.RuntimePath) }

// Factory makes a fresh Runtime.
type Factory func() Runtime

var (
	mu       sync.RWMutex
	builtins = map[string]Factory{}
)

// RegisterBuiltin makes a Go runtime available as ENCLAVE_RUNTIME_PATH "builtin:<name>". name
// must be one of the built-in runtimes this package knows (builtinTEEs): rune decides from that
// list without linking the runtimes' code.
func RegisterBuiltin(name string, f Factory) {
	if _, ok := builtinTEEs[name]; !ok {
		panic(fmt.Sprintf("enclave: RegisterBuiltin(%q): not a known built-in runtime (known: %s)", name, strings.Join(builtinNames(), ", ")))
	}
	mu.Lock()
	defer mu.Unlock()
	builtins[name] = f
}

// Builtin returns a new instance of the built-in runtime name.
func Builtin(name string) (Runtime, error) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := builtins[name]
	if !ok {
		known := make([]string, 0, len(builtins))
		for k := range builtins {
			known = append(known, RuntimeRef{Builtin: k}.String())
		}
		sort.Strings(known)
		return nil, fmt.Errorf("unknown built-in enclave runtime %q (known: %v)", RuntimeRef{Builtin: name}, known)
	}
	return f(), nil
}
