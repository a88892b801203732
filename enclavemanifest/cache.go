package enclavemanifest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest/internal/boundedread"
	"github.com/inclavare-containers/inclavare-go/internal/atomicfile"
)

// DefaultCacheMaxBytes bounds a conversion cache when OpenCache is given 0.
const DefaultCacheMaxBytes = 64 << 20

// staleTempAge: a temporary file this old was left by a writer that died.
const staleTempAge = time.Hour

// ErrCacheMiss: the cache holds no usable manifest for a key. Every error of Cache.Get
// satisfies errors.Is(err, ErrCacheMiss); the message says when an entry was discarded.
var ErrCacheMiss = errors.New("enclave manifest cache miss")

// CacheKey is everything that determines a conversion's manifest except its creation time,
// so that equal keys may share one manifest. The entrypoint is part of it because the
// measurement covers argv, env and cwd, which come from the container, not the image.
type CacheKey struct {
	// ImageDigest is the OCI digest of the image the rootfs was made from. Required: without
	// it nothing ties a cached measurement to the bytes being run.
	ImageDigest    string
	ImageReference string
	// KeyID is the signer's key id (Identity.KeyID).
	KeyID      string
	Enclave    Enclave
	Entrypoint Entrypoint
	// RuntimeDigest is the OCI digest of the PAL library file when Enclave.RuntimePath is a
	// host path (its bytes are measured and may change under an unchanged path); it must be
	// empty for a built-in runtime.
	RuntimeDigest string
}

// SettingsHash is the hex SHA-256 of an unambiguous (length-prefixed) encoding of the
// enclave settings, the entrypoint and the runtime digest.
func (k CacheKey) SettingsHash() string {
	var e lengthPrefixed
	e.str("inclavare-enclave-manifest-cache/v1")
	e.str(string(k.Enclave.Type)).str(k.Enclave.RuntimePath).list(k.Enclave.Args).str(k.Enclave.LogLevel).str(k.Enclave.RAType)
	e.str(k.Entrypoint.Path).list(k.Entrypoint.Args).list(k.Entrypoint.Env).str(k.Entrypoint.Cwd)
	e.str(k.RuntimeDigest)
	sum := sha256.Sum256(e.buf)
	return hex.EncodeToString(sum[:])
}

// fileName is the entry's name: a digest of (image digest, image reference, key id, settings hash).
func (k CacheKey) fileName() string {
	var e lengthPrefixed
	e.str("inclavare-enclave-manifest-cache-entry/v1").str(k.ImageDigest).str(k.ImageReference).str(k.KeyID).str(k.SettingsHash())
	sum := sha256.Sum256(e.buf)
	return hex.EncodeToString(sum[:]) + ".json"
}

func (k CacheKey) validate() error {
	if err := checkDigest(k.ImageDigest); err != nil {
		return fmt.Errorf("cache key: image digest %q: %v", clip(k.ImageDigest), err)
	}
	if !isKeyID(k.KeyID) {
		return fmt.Errorf("cache key: key id %q is not a key id", clip(k.KeyID))
	}
	builtin := !k.Enclave.Settings().Runtime().IsPAL()
	switch {
	case builtin && k.RuntimeDigest != "":
		return fmt.Errorf("cache key: a runtime digest is given for the built-in runtime %s", k.Enclave.RuntimePath)
	case !builtin:
		if err := checkDigest(k.RuntimeDigest); err != nil {
			return fmt.Errorf("cache key: the enclave runtime %s is a host file: its digest is required (%q: %v)", clip(k.Enclave.RuntimePath), clip(k.RuntimeDigest), err)
		}
	}
	return nil
}

// describes reports whether m is a manifest for k.
func (k CacheKey) describes(m *Manifest) error {
	var diffs []string
	if m.Image == nil || m.Image.Digest != k.ImageDigest || m.Image.Reference != k.ImageReference {
		diffs = append(diffs, "image")
	}
	if m.Signer.KeyID != k.KeyID || m.Signer.Ephemeral {
		diffs = append(diffs, "signer")
	}
	if len(m.Enclave.diff(k.Enclave)) > 0 {
		diffs = append(diffs, "enclave settings")
	}
	if m.MatchesEntrypoint(k.Entrypoint) != nil {
		diffs = append(diffs, "entrypoint")
	}
	if len(diffs) > 0 {
		return fmt.Errorf("manifest differs from the key in: %s", strings.Join(diffs, ", "))
	}
	return nil
}

type lengthPrefixed struct{ buf []byte }

func (e *lengthPrefixed) str(s string) *lengthPrefixed {
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
	return e
}

func (e *lengthPrefixed) list(l []string) *lengthPrefixed {
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
	return e
}

// Cache keeps signed manifests of earlier conversions, so that a second container of the
// same image and configuration skips measuring and signing. Entries are written atomically,
// verified with the signer's key when read (a damaged or foreign entry is discarded, never
// returned), and the least recently used are evicted beyond a size bound. Several shims may
// share one directory. A cached manifest is no more trusted than a fresh one: rune verifies it
// and measures the workload itself either way.
type Cache struct {
	dir      string
	maxBytes int64
	mu       sync.Mutex
}

// OpenCache uses dir (created, mode 0700, when missing) holding at most maxBytes of
// manifests; 0 means DefaultCacheMaxBytes.
func OpenCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("manifest cache: negative size bound %d", maxBytes)
	}
	if maxBytes == 0 {
		maxBytes = DefaultCacheMaxBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("manifest cache: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("manifest cache: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("manifest cache: %s is not a directory", dir)
	}
	return &Cache{dir: dir, maxBytes: maxBytes}, nil
}

// Get returns the cached manifest for key, verified with the signer identity id. On any
// error, which satisfies errors.Is(err, ErrCacheMiss), the caller converts afresh; an entry
// that fails verification or does not describe key is removed and the error says why.
func (c *Cache) Get(key CacheKey, id Identity) ([]byte, error) {
	if err := key.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCacheMiss, err)
	}
	if err := id.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCacheMiss, err)
	}
	if id.Ephemeral || id.KeyID != key.KeyID {
		return nil, fmt.Errorf("%w: the signer (key %s, ephemeral %t) is not the key's (%s)", ErrCacheMiss, id.KeyID, id.Ephemeral, key.KeyID)
	}
	name := key.fileName()
	p := filepath.Join(c.dir, name)
	data, err := boundedread.FileNoFollow(p, MaxSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrCacheMiss
	}
	if err != nil {
		return nil, c.discard(p, err)
	}
	trust := NewTrust()
	if _, err := trust.AddPublicKey(id.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: signer key: %v", ErrCacheMiss, err)
	}
	m, err := Verify(data, trust)
	if err != nil {
		return nil, c.discard(p, err)
	}
	if err := key.describes(m); err != nil {
		return nil, c.discard(p, err)
	}
	now := time.Now()
	// The modification time orders eviction: a hit makes the entry the most recently used.
	_ = os.Chtimes(p, now, now)
	return data, nil
}

func (c *Cache) discard(p string, why error) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: bad entry %s (%v) could not be removed: %v", ErrCacheMiss, p, why, err)
	}
	return fmt.Errorf("%w: discarded bad entry %s: %v", ErrCacheMiss, p, why)
}

// Put stores a manifest for key. The manifest must be well-formed, describe key and not be
// signed with an ephemeral key (nobody else could use it).
func (c *Cache) Put(key CacheKey, data []byte) error {
	if err := key.validate(); err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	if int64(len(data)) > c.maxBytes {
		return fmt.Errorf("manifest cache: a %d-byte manifest does not fit the %d-byte bound", len(data), c.maxBytes)
	}
	m, err := ParseUnverified(data)
	if err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	if m.Signer.Ephemeral {
		return errors.New("manifest cache: manifests signed with an ephemeral key are not cached")
	}
	if err := key.describes(m); err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	name := key.fileName()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := atomicfile.Write(filepath.Join(c.dir, name), data, 0o600); err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	return c.evict(name)
}

// evict removes the least recently used entries until the directory holds at most maxBytes,
// never the entry just written, and removes temporary files that dead writers left behind.
func (c *Cache) evict(keep string) error {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	type entry struct {
		name  string
		size  int64
		mtime time.Time
	}
	var list []entry
	var total int64
	now := time.Now()
	for _, de := range entries {
		info, err := de.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		name := de.Name()
		switch {
		case strings.HasPrefix(name, ".tmp-"):
			if now.Sub(info.ModTime()) > staleTempAge {
				os.Remove(filepath.Join(c.dir, name))
				continue
			}
			total += info.Size()
		case isEntryName(name):
			total += info.Size()
			if name != keep {
				list = append(list, entry{name, info.Size(), info.ModTime()})
			}
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].mtime.Before(list[j].mtime) })
	for _, e := range list {
		if total <= c.maxBytes {
			break
		}
		if err := os.Remove(filepath.Join(c.dir, e.name)); err == nil || errors.Is(err, os.ErrNotExist) {
			total -= e.size
		}
	}
	return nil
}

func isEntryName(name string) bool {
	h, ok := strings.CutSuffix(name, ".json")
	return ok && isLowerHex(h, 64)
}
