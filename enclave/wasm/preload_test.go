package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

// compiledCount is how many modules the runtime's engines hold compiled.
func compiledCount(rt *Runtime) int {
	rt.compileMu.Lock()
	defer rt.compileMu.Unlock()
	n := 0
	for _, e := range []*engine{rt.primary, rt.fallback} {
		if e != nil {
			n += len(e.modules)
		}
	}
	return n
}

// TestPreload: Preload compiles the entrypoint's module, and Spawn of the same bytes uses it
// without compiling again; a module replaced after Preload runs as it is then, not as it was
// preloaded, when nothing measured it (an exec'd process; the measured entrypoint:
// TestModuleReplacedAfterMeasurement).
func TestPreload(t *testing.T) {
	rootfs := newRootfs(t)
	rt := newRuntime(t, rootfs, nil)
	p := enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello"}}
	if err := rt.Preload(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.primary.modules[sha256.Sum256(program(t, "hello"))]; !ok || compiledCount(rt) != 1 {
		t.Fatalf("after Preload: %d modules compiled, hello among them: %v", compiledCount(rt), ok)
	}
	if got := run(t, rt, p, nil); got.status != 0 || got.stdout != "hello\n" {
		t.Fatalf("preloaded hello: %+v", got)
	}
	if n := compiledCount(rt); n != 1 {
		t.Fatalf("Spawn compiled the preloaded module again: %d modules", n)
	}

	writeFile(t, filepath.Join(rootfs, "app", "hello.wasm"), trapModule())
	if got := run(t, rt, p, nil); got.status != TrapExitStatus {
		t.Fatalf("module replaced after Preload: %+v, want the replacement's trap (status %d)", got, TrapExitStatus)
	}
}

// TestPreloadSealed: a sealed module has no plaintext before start, so Preload compiles nothing
// and fetches no key.
func TestPreloadSealed(t *testing.T) {
	rootfs := newRootfs(t)
	key := make([]byte, sealed.KeySize)
	rand.Read(key)
	data, err := sealed.Seal(program(t, "hello"), key, "tenant/key/hello")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "app", "sealed.wasm"), data)
	rt := newRuntime(t, rootfs, nil)
	fetched := false
	rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { fetched = true; return key, nil })
	if err := rt.Preload(context.Background(), enclave.Process{Path: "/app/sealed.wasm"}); err != nil {
		t.Fatal(err)
	}
	if n := compiledCount(rt); n != 0 || fetched {
		t.Fatalf("Preload of a sealed module: %d modules compiled, key fetched %v", n, fetched)
	}
}

// TestModuleReplacedAfterMeasurement: the node operator (whose disk the rootfs is) replaces the
// entrypoint's plain module between create (PID 1 measured it, and that measurement is what the
// enclave's evidence reports) and start. Start must refuse it, naming the change, and nothing of
// the replacement may run: otherwise it would run under an identity that is not its own.
func TestModuleReplacedAfterMeasurement(t *testing.T) {
	rootfs := newRootfs(t)
	rt := newRuntime(t, rootfs, nil)
	p := enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello"}}
	if _, err := rt.Measurement(p); err != nil {
		t.Fatal(err)
	}
	if err := rt.Preload(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "app", "hello.wasm"), trapModule())
	proc, err := rt.Spawn(context.Background(), p)
	if err == nil {
		code, _ := proc.Wait()
		t.Fatalf("replaced module ran under the create-time measurement (exit %d)", code)
	}
	if !strings.Contains(err.Error(), "changed since it was measured") {
		t.Fatalf("Spawn of a replaced module: %v, want a refusal naming the change", err)
	}

	// The module as measured still runs.
	writeFile(t, filepath.Join(rootfs, "app", "hello.wasm"), program(t, "hello"))
	if got := run(t, rt, p, nil); got.status != 0 || got.stdout != "hello\n" {
		t.Fatalf("the measured module after the refusal: %+v", got)
	}
}
