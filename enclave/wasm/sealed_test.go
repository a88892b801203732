package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/sealed"
)

// TestSealedModule: a sealed module runs with the key the resource hook returns, compiled only in
// memory (a writable compilation cache outside the rootfs gains nothing), is measured as stored,
// and does not run without the key.
func TestSealedModule(t *testing.T) {
	rootfs := newRootfs(t)
	key := make([]byte, sealed.KeySize)
	rand.Read(key)
	plain := program(t, "hello")
	data, err := sealed.Seal(plain, key, "tenant/key/hello")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "app", "sealed.wasm"), data)
	cacheDir := t.TempDir()
	rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = cacheDir })
	p := enclave.Process{Path: "/app/sealed.wasm", Args: []string{"hello", "args", "sealed"}}

	if _, err := rt.Spawn(context.Background(), p); err == nil || !strings.Contains(err.Error(), "ENCLAVE_KBS_URL") {
		t.Fatalf("without a key broker: %v", err)
	}
	refusal := errors.New("broker: policy denied the resource")
	rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { return nil, refusal })
	if _, err := rt.Spawn(context.Background(), p); !errors.Is(err, refusal) {
		t.Fatalf("with a refusing broker: %v", err)
	}
	rt.SetResourceFunc(func(_ context.Context, id string) ([]byte, error) {
		if id != "tenant/key/hello" {
			return nil, errors.New("unknown resource " + id)
		}
		return key, nil
	})
	got := run(t, rt, p, nil)
	if got.status != 0 || got.stdout != quoteLines("hello", "args", "sealed") {
		t.Fatalf("got %+v", got)
	}
	var files []string
	filepath.WalkDir(cacheDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("compiled code of the plaintext was written to the cache: %v", files)
	}

	m, err := rt.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	launch := Launch{Args: p.Args, MemoryLimit: uint64(rt.args.memoryLimitPages) * pageSize}
	if m != Measure(data, launch) || m == Measure(plain, launch) {
		t.Fatal("the measurement is not over the sealed module as stored")
	}
}
