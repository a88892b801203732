package wasm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// TestMeasureSpecVector rebuilds the pre-image of docs/measurement.md's worked example byte by
// byte, independently of measurementEncoder, and checks Measure hashes exactly that. The digest
// is the one the document publishes.
func TestMeasureSpecVector(t *testing.T) {
	module := []byte("\x00asm\x01\x00\x00\x00")
	launch := Launch{Args: []string{"app.wasm", "-v"}, Env: []string{"A=1"}, Dir: "/srv", MemoryLimit: 64 << 20}

	var pre []byte
	str := func(s string) {
		pre = binary.BigEndian.AppendUint32(pre, uint32(len(s)))
		pre = append(pre, s...)
	}
	moduleSum := sha256.Sum256(module)
	str("inclavare-enclave-measurement/v1")
	str("runtime")
	str("wasm")
	str("module-sha256")
	str(string(moduleSum[:]))
	str("argv")
	pre = append(pre, 0, 0, 0, 2)
	str("app.wasm")
	str("-v")
	str("env")
	pre = append(pre, 0, 0, 0, 1)
	str("A=1")
	str("dir")
	str("/srv")
	str("memory-limit")
	pre = append(pre, 0, 0, 0, 0, 0x04, 0, 0, 0)
	want := sha256.Sum256(pre)

	got := Measure(module, launch)
	if got != hex.EncodeToString(want[:]) {
		t.Fatalf("Measure = %s, want %x", got, want)
	}
	const published = "28eb682cb78535163333af841b2e90e4ec720a51d585474cc5dab48567b6fb6e"
	if got != published {
		t.Errorf("Measure = %s, docs/measurement.md publishes %s", got, published)
	}
}

func TestMeasureSensitivity(t *testing.T) {
	module := []byte("module bytes")
	base := Launch{Args: []string{"app", "a b", ""}, Env: []string{"X=1", "Y=2"}, Dir: "/work", MemoryLimit: 32 << 20}
	baseline := Measure(module, base)
	if again := Measure([]byte("module bytes"), Launch{Args: []string{"app", "a b", ""}, Env: []string{"X=1", "Y=2"}, Dir: "/work", MemoryLimit: 32 << 20}); again != baseline {
		t.Fatalf("same input, different measurement: %s vs %s", baseline, again)
	}
	different := []struct {
		name   string
		module []byte
		launch Launch
	}{
		{"module byte", []byte("module bytez"), base},
		{"one arg", module, Launch{Args: []string{"app", "a c", ""}, Env: base.Env, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"argv[0]", module, Launch{Args: []string{"/app", "a b", ""}, Env: base.Env, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"arg boundary", module, Launch{Args: []string{"app", "a", "b", ""}, Env: base.Env, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"trailing empty arg dropped", module, Launch{Args: []string{"app", "a b"}, Env: base.Env, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"arg moved to env", module, Launch{Args: []string{"app", "a b"}, Env: []string{"", "X=1", "Y=2"}, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"env value", module, Launch{Args: base.Args, Env: []string{"X=1", "Y=3"}, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"env order", module, Launch{Args: base.Args, Env: []string{"Y=2", "X=1"}, Dir: base.Dir, MemoryLimit: base.MemoryLimit}},
		{"dir", module, Launch{Args: base.Args, Env: base.Env, Dir: "/work/", MemoryLimit: base.MemoryLimit}},
		{"memory limit", module, Launch{Args: base.Args, Env: base.Env, Dir: base.Dir, MemoryLimit: 64 << 20}},
		{"no memory limit", module, Launch{Args: base.Args, Env: base.Env, Dir: base.Dir}},
	}
	seen := map[string]string{baseline: "baseline"}
	for _, tt := range different {
		got := Measure(tt.module, tt.launch)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same measurement as %s", tt.name, prev)
		}
		seen[got] = tt.name
	}

	same := []struct {
		name string
		a, b Launch
	}{
		{"empty dir is /", Launch{Args: []string{"x"}}, Launch{Args: []string{"x"}, Dir: "/"}},
		{"no limit is the 4 GiB maximum", Launch{Args: []string{"x"}}, Launch{Args: []string{"x"}, MemoryLimit: 4 << 30}},
		{"a repeated key is what the guest sees", Launch{Env: []string{"A=1", "B=2", "A=3"}}, Launch{Env: []string{"A=3", "B=2"}}},
	}
	for _, tt := range same {
		if Measure(module, tt.a) != Measure(module, tt.b) {
			t.Errorf("%s: measurements differ", tt.name)
		}
	}
}

func TestRuntimeMeasurement(t *testing.T) {
	rootfs := newRootfs(t)
	hello := program(t, "hello")
	p := enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "x"}, Env: []string{"K=V"}, Dir: "/data"}
	measure := func(args []string) string {
		t.Helper()
		rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.Args = args })
		got, err := rt.Measurement(p)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	unlimited := measure(nil)
	if want := Measure(hello, Launch{Args: p.Args, Env: p.Env, Dir: p.Dir}); unlimited != want {
		t.Errorf("Measurement = %s, Measure = %s", unlimited, want)
	}
	if again := measure(nil); again != unlimited {
		t.Errorf("two runtimes measure the same workload differently: %s, %s", unlimited, again)
	}
	limited := measure([]string{"memory=64M"})
	if want := Measure(hello, Launch{Args: p.Args, Env: p.Env, Dir: p.Dir, MemoryLimit: 64 << 20}); limited != want {
		t.Errorf("with memory=64M: Measurement = %s, Measure = %s", limited, want)
	}
	if limited == unlimited {
		t.Error("the memory limit does not change the measurement")
	}

	rt := newRuntime(t, rootfs, nil)
	q := p
	q.Args = nil
	if got, _ := rt.Measurement(q); got != Measure(hello, Launch{Args: []string{"/app/hello.wasm"}, Env: p.Env, Dir: p.Dir}) {
		t.Error("without args, argv[0] measured is not the path")
	}
	writeFile(t, filepath.Join(rootfs, "app", "hello.wasm"), append(hello, 0x00, 0x00)) // a custom section appended
	if got, _ := rt.Measurement(p); got == unlimited {
		t.Error("changing the module does not change the measurement")
	}
	if _, err := rt.Measurement(enclave.Process{Path: "/app/missing.wasm"}); err == nil {
		t.Error("Measurement of a missing module succeeded")
	}
}
