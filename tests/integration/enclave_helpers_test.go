package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/opencontainers/runtime-spec/specs-go"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// enclaveProgs builds testdata/enclaveprog for WASI and for Linux once per test binary.
func enclaveProgs(t testing.TB) (wasmPath, nativePath string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = harness.BinaryTempDir("enclaveprog")
		if buildErr != nil {
			return
		}
		for _, b := range []struct{ goos, goarch, out string }{
			{"wasip1", "wasm", "enclaveprog.wasm"},
			{"linux", "amd64", "enclaveprog"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, b.out), "./testdata/enclaveprog")
			cmd.Env = append(os.Environ(), "GOOS="+b.goos, "GOARCH="+b.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = &buildError{err: err, out: string(out)}
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build enclaveprog: %v", buildErr)
	}
	return filepath.Join(buildDir, "enclaveprog.wasm"), filepath.Join(buildDir, "enclaveprog")
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// enclaveBundle is a busybox bundle with the enclave programs at /app and the enclave settings in env.
func enclaveBundle(t testing.TB, env []string, args ...string) (string, *specs.Spec) {
	t.Helper()
	wasmProg, nativeProg := enclaveProgs(t)
	dir, spec := bundle(t, args...)
	for src, dst := range map[string]string{wasmProg: "app/prog.wasm", nativeProg: "app/prog"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rootfs", dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec.Process.Env = append(spec.Process.Env, env...)
	// Writable, so that a PAL can leave its trace in the rootfs for the test to read.
	spec.Root.Readonly = false
	writeSpec(t, dir, spec)
	return dir, spec
}

func simWasm() []string {
	return []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}
}
