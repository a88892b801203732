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
	"github.com/inclavare-containers/inclavare-go/layerkey"
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

// TestWrappedSealedModule: a module sealed at conversion (a fresh content key wrapped by the
// broker's KEK) runs with the KEK the hook returns and is measured as its plaintext; a file
// replaced after the measurement (another program, sealed the same way: a node operator can
// wrap keys of its own) is refused before any key is fetched.
func TestWrappedSealedModule(t *testing.T) {
	rootfs := newRootfs(t)
	kek, dek := make([]byte, sealed.KeySize), make([]byte, sealed.KeySize)
	rand.Read(kek)
	rand.Read(dek)
	seal := func(plain []byte) []byte {
		w, err := layerkey.Wrap(kek, "tenant/kek/hello", dek)
		if err != nil {
			t.Fatal(err)
		}
		data, err := sealed.SealWrapped(plain, dek, "tenant/kek/hello", w)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	plain := program(t, "hello")
	writeFile(t, filepath.Join(rootfs, "app", "sealed.wasm"), seal(plain))
	rt := newRuntime(t, rootfs, nil)
	p := enclave.Process{Path: "/app/sealed.wasm", Args: []string{"hello", "args", "wrapped"}}
	m, err := rt.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	launch := Launch{Args: p.Args, MemoryLimit: uint64(rt.args.memoryLimitPages) * pageSize}
	if m != Measure(plain, launch) {
		t.Fatal("the measurement of a wrapped sealed module is not its plaintext's")
	}
	fetched := 0
	rt.SetResourceFunc(func(_ context.Context, id string) ([]byte, error) { fetched++; return kek, nil })
	if got := run(t, rt, p, nil); got.status != 0 || got.stdout != quoteLines("hello", "args", "wrapped") || fetched != 1 {
		t.Fatalf("got %+v, %d fetches", got, fetched)
	}
	writeFile(t, filepath.Join(rootfs, "app", "sealed.wasm"), seal(program(t, "sleeper")))
	fetched = 0
	if _, err := rt.Spawn(context.Background(), p); err == nil || !strings.Contains(err.Error(), "changed since it was measured") || fetched != 0 {
		t.Fatalf("a replaced sealed module: %v (%d fetches)", err, fetched)
	}
}

// TestSealedModuleSwappedForPlain: the node operator replaces a sealed module (tenant-sealed or
// sealed at conversion), after it was measured at create, by a plain module of its own, which
// needs no key at all. Without a check it would run under the measurement of the sealed one and
// could fetch the tenant's keys through the resource hook; it is refused before anything runs
// ("sealed when it was measured").
func TestSealedModuleSwappedForPlain(t *testing.T) {
	kek, key := make([]byte, sealed.KeySize), make([]byte, sealed.KeySize)
	rand.Read(kek)
	rand.Read(key)
	wrapped, err := sealed.SealWrapped(program(t, "hello"), key, "tenant/kek/hello", func() []byte {
		w, err := layerkey.Wrap(kek, "tenant/kek/hello", key)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}())
	if err != nil {
		t.Fatal(err)
	}
	tenantSealed, err := sealed.Seal(program(t, "hello"), key, "tenant/key/hello")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"sealed at conversion": wrapped, "tenant-sealed": tenantSealed} {
		t.Run(name, func(t *testing.T) {
			rootfs := newRootfs(t)
			writeFile(t, filepath.Join(rootfs, "app", "sealed.wasm"), data)
			rt := newRuntime(t, rootfs, nil)
			fetched := 0
			rt.SetResourceFunc(func(context.Context, string) ([]byte, error) { fetched++; return kek, nil })
			p := enclave.Process{Path: "/app/sealed.wasm", Args: []string{"hello"}}
			if _, err := rt.Measurement(p); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(rootfs, "app", "sealed.wasm"), trapModule())
			proc, err := rt.Spawn(context.Background(), p)
			if err == nil {
				proc.Wait()
			}
			if err == nil || !strings.Contains(err.Error(), "sealed when it was measured") || fetched != 0 {
				t.Fatalf("a sealed module swapped for a plain one after the measurement: %v (%d fetches)", err, fetched)
			}
		})
	}
}
