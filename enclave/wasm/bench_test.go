package wasm

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// BenchmarkSpawnWait measures starting a fresh instance of an already compiled module and
// waiting for it: the cost of each exec.
func BenchmarkSpawnWait(b *testing.B) {
	rootfs := b.TempDir()
	writeFile(b, filepath.Join(rootfs, "grow.wasm"), growModule(1))
	rt := New()
	if err := rt.Init(context.Background(), enclave.Config{Type: "sim", Rootfs: rootfs}); err != nil {
		b.Fatal(err)
	}
	defer rt.Destroy()
	for b.Loop() {
		proc, err := rt.Spawn(context.Background(), enclave.Process{Path: "/grow.wasm"})
		if err != nil {
			b.Fatal(err)
		}
		if status, _ := proc.Wait(); status != 0 {
			b.Fatalf("status %d", status)
		}
	}
}

// BenchmarkValidate measures the create-time check of a Go-built module (about 3 MB).
func BenchmarkValidate(b *testing.B) {
	module := program(b, "hello")
	b.SetBytes(int64(len(module)))
	for b.Loop() {
		if err := Validate(module); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMeasure measures hashing a Go-built module with its launch configuration.
func BenchmarkMeasure(b *testing.B) {
	module := program(b, "hello")
	launch := Launch{Args: []string{"hello", "a", "b"}, Env: []string{"PATH=/bin", "HOME=/"}, Dir: "/"}
	b.SetBytes(int64(len(module)))
	for b.Loop() {
		Measure(module, launch)
	}
}

// BenchmarkWarmStart measures what the runelet of a warm enclave container does for a Go-built
// module (2.7 MB): Init on the module's entry of the host code cache, measure, Spawn, Wait, and
// Destroy, in a fresh Runtime each time, as each container has its own runelet.
func BenchmarkWarmStart(b *testing.B) {
	rootfs := newRootfs(b)
	hello := program(b, "hello")
	entry, err := CacheModule(context.Background(), filepath.Join(b.TempDir(), "wasm"), hello, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		rt := New()
		if err := rt.Init(context.Background(), enclave.Config{Type: "sim", Rootfs: rootfs, CacheDir: entry}); err != nil {
			b.Fatal(err)
		}
		p := enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello"}}
		if _, err := rt.Measurement(p); err != nil {
			b.Fatal(err)
		}
		proc, err := rt.Spawn(context.Background(), p)
		if err != nil {
			b.Fatal(err)
		}
		if status, _ := proc.Wait(); status != 0 {
			b.Fatalf("status %d", status)
		}
		if err := rt.Destroy(); err != nil {
			b.Fatal(err)
		}
	}
}
