package enclavemanifest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func cacheKeyFor(m Manifest, keyID string) CacheKey {
	return CacheKey{
		ImageDigest: m.Image.Digest, ImageReference: m.Image.Reference, KeyID: keyID,
		Enclave: m.Enclave, Entrypoint: m.Entrypoint,
	}
}

func TestCacheHitMissCorrupt(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := mustKeySigner(t, ed25519TestKey())
	id, _ := s.Identity(context.Background())
	m := sampleManifest()
	key := cacheKeyFor(m, id.KeyID)

	if _, err := c.Get(key, id); err != ErrCacheMiss {
		t.Fatalf("empty cache: %v, want ErrCacheMiss", err)
	}
	data := mustSign(t, m, s)
	if err := c.Put(key, data); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := c.Get(key, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("hit: %v", err)
	}

	// Anything that changes the measurement's inputs is another key.
	for name, edit := range map[string]func(*CacheKey){
		"image digest": func(k *CacheKey) { k.ImageDigest = "sha256:" + hex64('b') },
		"env":          func(k *CacheKey) { k.Entrypoint.Env = append([]string{"X=1"}, k.Entrypoint.Env...) },
		"runtime args": func(k *CacheKey) { k.Enclave.Args = []string{"memory=32M"} },
		"args split":   func(k *CacheKey) { k.Entrypoint.Args = []string{"hello.wasm -v"} },
	} {
		k := key
		edit(&k)
		if _, err := c.Get(k, id); err != ErrCacheMiss {
			t.Errorf("%s changed: %v, want a miss", name, err)
		}
	}

	// Another signer's identity never gets this signer's entries.
	other := mustKeySigner(t, testKeys(t)[0].key)
	otherID, _ := other.Identity(context.Background())
	if _, err := c.Get(cacheKeyFor(m, otherID.KeyID), otherID); err != ErrCacheMiss {
		t.Fatalf("other signer: %v", err)
	}

	// A damaged entry is discarded and reported as a miss.
	entry := filepath.Join(dir, key.fileName())
	for _, i := range []int{5, len(data) / 2, len(data) - 10} {
		bad := bytes.Clone(data)
		bad[i] ^= 1
		if err := os.WriteFile(entry, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := c.Get(key, id)
		if !errors.Is(err, ErrCacheMiss) || !strings.Contains(err.Error(), "discarded bad entry") {
			t.Fatalf("corrupt entry (byte %d): %v", i, err)
		}
		if _, err := os.Stat(entry); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("corrupt entry not removed: %v", err)
		}
	}

	// A validly signed entry for other inputs, put under this key's name, is discarded too.
	m2 := sampleManifest()
	m2.Entrypoint.Args = []string{"other"}
	if err := os.WriteFile(entry, mustSign(t, m2, s), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(key, id); !errors.Is(err, ErrCacheMiss) || !strings.Contains(err.Error(), "entrypoint") {
		t.Fatalf("misplaced entry: %v", err)
	}

	// A symbolic link is not followed.
	target := writeFile(t, t.TempDir(), "elsewhere.json", data)
	if err := os.Symlink(target, entry); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(key, id); !errors.Is(err, ErrCacheMiss) || !strings.Contains(err.Error(), "discarded") {
		t.Fatalf("symlinked entry: %v", err)
	}
}

func TestCachePutRefuses(t *testing.T) {
	c, err := OpenCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	s := mustKeySigner(t, ed25519TestKey())
	id, _ := s.Identity(context.Background())
	m := sampleManifest()
	data := mustSign(t, m, s)
	eph, _ := NewEphemeralSigner()
	ephID, _ := eph.Identity(context.Background())

	pal := sampleManifest()
	pal.Enclave = Enclave{Type: "sim", RuntimePath: "/usr/lib/libocclum-pal.so", LogLevel: "info"}
	palData := mustSign(t, pal, s)

	tests := []struct {
		name string
		key  CacheKey
		data []byte
		msg  string
	}{
		{"no image digest", func() CacheKey { k := cacheKeyFor(m, id.KeyID); k.ImageDigest = ""; return k }(), data, "image digest"},
		{"key differs from manifest", func() CacheKey { k := cacheKeyFor(m, id.KeyID); k.Entrypoint.Cwd = "/"; return k }(), data, "entrypoint"},
		{"ephemeral", cacheKeyFor(m, ephID.KeyID), mustSign(t, m, eph), "ephemeral"},
		{"garbage", cacheKeyFor(m, id.KeyID), []byte("{}"), "malformed"},
		{"PAL without runtime digest", cacheKeyFor(pal, id.KeyID), palData, "its digest is required"},
		{"builtin with runtime digest", func() CacheKey { k := cacheKeyFor(m, id.KeyID); k.RuntimeDigest = "sha256:" + hex64('c'); return k }(), data, "built-in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Put(tc.key, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	// With the PAL's digest, the PAL manifest is cached, and a changed PAL is another key.
	k := cacheKeyFor(pal, id.KeyID)
	k.RuntimeDigest = "sha256:" + hex64('d')
	if err := c.Put(k, palData); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(k, id); err != nil {
		t.Fatal(err)
	}
	k.RuntimeDigest = "sha256:" + hex64('e')
	if _, err := c.Get(k, id); err != ErrCacheMiss {
		t.Fatalf("upgraded PAL: %v, want a miss", err)
	}
}

func TestCacheSizeBound(t *testing.T) {
	dir := t.TempDir()
	s := mustKeySigner(t, ed25519TestKey())
	id, _ := s.Identity(context.Background())
	var entries [][]byte
	var keys []CacheKey
	for i := range 4 {
		m := sampleManifest()
		m.Entrypoint.Args = []string{"app", strings.Repeat("x", i+1)}
		entries = append(entries, mustSign(t, m, s))
		keys = append(keys, cacheKeyFor(m, id.KeyID))
	}
	// Room for three entries (they differ in size by a few bytes at most).
	c, err := OpenCache(dir, int64(3*len(entries[3])+8))
	if err != nil {
		t.Fatal(err)
	}
	// A stale temporary file of a dead writer is cleaned up; a fresh one is left alone.
	stale := writeFile(t, dir, ".tmp-enclave-manifest-stale", []byte("x"))
	old := time.Now().Add(-2 * staleTempAge)
	os.Chtimes(stale, old, old)
	fresh := writeFile(t, dir, ".tmp-enclave-manifest-fresh", nil)

	base := time.Now().Add(-time.Hour)
	for i := range 3 {
		if err := c.Put(keys[i], entries[i]); err != nil {
			t.Fatal(err)
		}
		// Distinct modification times, oldest first, without sleeping.
		at := base.Add(time.Duration(i) * time.Minute)
		os.Chtimes(filepath.Join(dir, keys[i].fileName()), at, at)
	}
	// Using entry 0 makes entry 1 the least recently used.
	if _, err := c.Get(keys[0], id); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(keys[3], entries[3]); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true} {
		_, err := os.Stat(filepath.Join(dir, keys[i].fileName()))
		if (err == nil) != want {
			t.Errorf("entry %d present = %t, want %t", i, err == nil, want)
		}
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale temporary file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("fresh temporary file removed")
	}
	if err := (&Cache{dir: dir, maxBytes: 10}).Put(keys[0], entries[0]); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("entry larger than the cache: %v", err)
	}
	if _, err := OpenCache(stale, -1); err == nil {
		t.Fatal("negative bound accepted")
	}
}

func TestBundleFile(t *testing.T) {
	bundle := t.TempDir()
	if _, err := ReadFromBundle(bundle); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing manifest: %v, want os.ErrNotExist", err)
	}
	if err := WriteToBundle(bundle, []byte(`{"payload":"e30=","signature":"AA=="}`)); err == nil {
		t.Fatal("a malformed manifest was written")
	}
	if _, err := os.Stat(BundlePath(bundle)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused write left a file")
	}
	data := mustSign(t, sampleManifest(), mustKeySigner(t, ed25519TestKey()))
	if err := WriteToBundle(bundle, data); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(bundle, "enclave-manifest.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("manifest file: %v %v", fi, err)
	}
	got, err := ReadFromBundle(bundle)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(bundle, ".tmp-*"))
	if len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	// A symbolic link, a FIFO or an oversized file is refused.
	other := t.TempDir()
	os.Symlink(writeFile(t, t.TempDir(), "m.json", data), BundlePath(other))
	if _, err := ReadFromBundle(other); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlink: %v", err)
	}
	fifo := t.TempDir()
	if err := mkfifo(BundlePath(fifo)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFromBundle(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO: %v", err)
	}
	big := t.TempDir()
	writeFile(t, big, FileName, bytes.Repeat([]byte(" "), MaxSize+1))
	if _, err := ReadFromBundle(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized: %v", err)
	}
}
