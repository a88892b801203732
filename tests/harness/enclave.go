package harness

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// SimEnclave gives r's enclave containers (ENCLAVE_TYPE=sim) a sim platform key and a compiled-module
// cache of this test's own.
func SimEnclave(t testing.TB, r *Runtime) {
	t.Helper()
	r.Env = append(r.Env,
		"RUNE_SIM_PLATFORM_KEY="+filepath.Join(t.TempDir(), "platform-key.pem"),
		"RUNE_CACHE_DIR="+filepath.Join(t.TempDir(), "cache"))
}

// PALDir makes a PAL directory for this test (root's and writable by root only, as rune requires
// of a PAL directory; removed at the end) and points r, through RUNE_CONFIG, at a configuration
// whose [enclave] pal_dirs is that directory alone.
func PALDir(t testing.TB, r *Runtime) string {
	t.Helper()
	dir, cfg := PALConfig(t)
	r.Env = append(r.Env, "RUNE_CONFIG="+cfg)
	return dir
}

// PALConfig makes a PAL directory for this test (root's and writable by root only; removed at
// the end) and a rune configuration whose [enclave] pal_dirs is that directory alone, for
// RUNE_CONFIG.
func PALConfig(t testing.TB) (dir, config string) {
	t.Helper()
	dir, err := paltest.NewPALDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	config = filepath.Join(t.TempDir(), "config.toml")
	if err := paltest.WriteConfig(config, dir); err != nil {
		t.Fatal(err)
	}
	return dir, config
}

var (
	palOnce    sync.Once
	palBuilder *paltest.Builder
	palErr     error
)

// BuildStub links (once per test binary) an empty shared library whose DT_SONAME is name.
func BuildStub(t testing.TB, name string) string {
	t.Helper()
	BuildPAL(t, paltest.Options{Version: 3})
	p, err := palBuilder.Stub(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BuildPAL builds the reference PAL for o (once per test binary) in a temporary directory, from
// which rune refuses to load it; InstallPAL puts a copy where it may.
func BuildPAL(t testing.TB, o paltest.Options) string {
	t.Helper()
	palOnce.Do(func() {
		var dir string
		if dir, palErr = BinaryTempDir("harness-pal"); palErr == nil {
			palBuilder = paltest.NewBuilder(dir)
		}
	})
	if palErr != nil {
		t.Fatal(palErr)
	}
	p, err := palBuilder.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// InstallPAL builds the reference PAL for o and installs it in dir as name, as a node operator
// would (owned by root, mode 0755).
func InstallPAL(t testing.TB, dir, name string, o paltest.Options) string {
	t.Helper()
	p, err := paltest.Copy(BuildPAL(t, o), dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
