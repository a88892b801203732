package harness

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/native"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm"
	"github.com/inclavare-containers/inclavare-go/sealed"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

// Broker starts this repository's verdictd (bin/verdictd, or $VERDICTD_BINARY) with o.
func Broker(t testing.TB, o verdictdtest.ProcessOptions) *verdictdtest.Process {
	t.Helper()
	if o.Binary == "" {
		o.Binary = os.Getenv("VERDICTD_BINARY")
		if o.Binary == "" {
			o.Binary = filepath.Join(RepoRoot(t), "bin", "verdictd")
		}
	}
	if _, err := os.Stat(o.Binary); err != nil {
		t.Fatalf("verdictd binary %s: %v (run make build)", o.Binary, err)
	}
	return verdictdtest.Run(t, o)
}

// SimPolicy is a broker policy releasing every resource to sim enclaves with one of measurements.
func SimPolicy(measurements ...string) string {
	q, _ := json.Marshal(measurements)
	return `{"default":{"tees":{"sim":{"measurements":{"measurement":` + string(q) + `},"allow_unknown_tcb":true}}}}`
}

// EnclaveMeasurement is the tenant's own computation (docs/measurement.md) of the measurement of
// code started by a built-in enclave runtime as the final OCI config spec says: the enclave
// settings read from it as rune reads them, the rest of the environment as the workload gets it.
func EnclaveMeasurement(t testing.TB, code []byte, spec *specs.Spec) string {
	t.Helper()
	var cp specs.Spec
	b, _ := json.Marshal(spec)
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	s, err := enclave.FromSpec(&cp)
	if err != nil || s == nil {
		t.Fatalf("enclave settings of the spec: %v, %v", s, err)
	}
	if len(s.Args) > 0 {
		t.Fatalf("EnclaveMeasurement does not read ENCLAVE_RUNTIME_ARGS %q", s.Args)
	}
	p := cp.Process
	switch s.RuntimePath {
	case "builtin:wasm":
		return wasm.Measure(code, wasm.Launch{Args: p.Args, Env: p.Env, Dir: p.Cwd, Secrets: s.KBS.Measured()})
	case "builtin:native":
		return native.Measure(code, native.Launch{Args: p.Args, Env: p.Env, Dir: p.Cwd, Secrets: s.KBS.Measured()})
	}
	t.Fatalf("EnclaveMeasurement: %s is not a built-in runtime", s.RuntimePath)
	return ""
}

// SealedProgram is a program sealed for the broker resource keyID with a fresh key, and a marker:
// 64 random bytes of its plaintext that exist nowhere else (appended to an ELF file, which the
// loader ignores; a custom section of a wasm module), to search the host for.
func SealedProgram(t testing.TB, plain []byte, wasmModule bool, keyID string) (data, key, marker []byte) {
	t.Helper()
	marker = make([]byte, 64)
	rand.Read(marker)
	prog := bytes.Clone(plain)
	if wasmModule {
		name := "inclavare-test-marker"
		body := append(binary.AppendUvarint(nil, uint64(len(name))), name...)
		body = append(body, marker...)
		prog = append(prog, 0)
		prog = binary.AppendUvarint(prog, uint64(len(body)))
		prog = append(prog, body...)
	} else {
		prog = append(prog, marker...)
	}
	key = make([]byte, sealed.KeySize)
	rand.Read(key)
	data, err := sealed.Seal(prog, key, keyID)
	if err != nil {
		t.Fatal(err)
	}
	return data, key, marker
}

// AssertBytesNowhere searches the trees under roots (regular files up to 256 MiB, links not
// followed, skip and below left out) for needle: found, it is an error naming the file.
func AssertBytesNowhere(t testing.TB, needle []byte, roots []string, skip ...string) {
	t.Helper()
	skipped := map[string]bool{}
	for _, s := range skip {
		skipped[s] = true
	}
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if skipped[p] {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if info, err := d.Info(); err != nil || info.Size() > 256<<20 {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, needle) {
				t.Errorf("the plaintext is on the host at %s", p)
			}
			return nil
		})
	}
}
