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
