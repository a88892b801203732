package enclavehost

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rootDir is a fresh directory that passes CheckRootOwnedDir (under /run: /tmp is writable by all).
func rootDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root; CI runs it as root")
		}
		t.Skip("this test needs root")
	}
	d, err := paltest.NewPALDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// mountOverlay mounts m (an overlay from Inject) at a fresh directory, as libcontainer would.
func mountOverlay(t *testing.T, m specs.Mount) string {
	t.Helper()
	target := t.TempDir()
	var data []string
	flags := uintptr(0)
	for _, o := range m.Options {
		switch o {
		case "ro":
			flags |= unix.MS_RDONLY
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		default:
			data = append(data, o)
		}
	}
	if err := unix.Mount("overlay", target, "overlay", flags, strings.Join(data, ",")); err != nil {
		t.Fatalf("mount %v: %v", m.Options, err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

func mountAt(t *testing.T, spec *specs.Spec, dest string) specs.Mount {
	t.Helper()
	for _, m := range spec.Mounts {
		if m.Destination == dest {
			return m
		}
	}
	t.Fatalf("no mount at %s in %+v", dest, spec.Mounts)
	return specs.Mount{}
}

// TestInject: the container gets private copies of the runelet, the loader, the libraries and the
// PAL through a read-only overlay, never a bind mount of a host file.
func TestInject(t *testing.T) {
	copies := rootDir(t)
	pals := rootDir(t)
	pal, err := paltest.Copy("/usr/lib/x86_64-linux-gnu/libc.so.6", pals, "libpal.so")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	os.WriteFile(filepath.Join(cache, "module"), []byte("compiled"), 0o644)
	// /bin/ls stands in for the runelet: a dynamically linked executable owned by root.
	s := &enclave.Settings{Type: attestation.Sim, RuntimePath: pal, LogLevel: "info"}
	resolved, err := ResolvePAL(s, []string{pals})
	if err != nil {
		t.Fatal(err)
	}
	o := InjectOptions{Runelet: "/bin/ls", PAL: resolved, CacheDir: cache, PALDirs: []string{pals}, CopyDir: copies}
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"/app/x", "a"}}}
	p, err := Inject(spec, s, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			t.Errorf("bind mount of a host file: %+v", m)
		}
	}
	if want := []string{agent.Loader, "--argv0", "init-runelet", "--library-path", agent.LibDir, agent.Binary, "init"}; !slices.Equal(spec.Process.Args, want) {
		t.Errorf("args %q, want %q", spec.Process.Args, want)
	}
	if p.Config.RuntimePath != agent.PALDir+"/libpal.so" || p.Config.CacheDir != agent.CacheDir {
		t.Errorf("config %+v", p.Config)
	}
	ro := mountAt(t, spec, agent.ReadOnlyDir)
	if ro.Type != "overlay" || !slices.Contains(ro.Options, "ro") {
		t.Errorf("%s: %+v", agent.ReadOnlyDir, ro)
	}
	dir := mountOverlay(t, ro)
	ls, _ := filepath.EvalSymlinks("/bin/ls")
	for rel, host := range map[string]string{"init-runelet": ls, "ld.so": "/lib64/ld-linux-x86-64.so.2", "lib/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6", "pal/libpal.so": pal} {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		want, _ := os.ReadFile(host)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not a copy of %s (%v)", rel, host, err)
		}
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil || fi.Mode().Perm() != 0o555 {
			t.Errorf("%s: mode %v, %v", rel, fi.Mode(), err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("read-only directory holds %d entries, want ld.so, init-runelet, lib, pal", len(entries))
	}
	// The kernel refuses to make the overlay writable, whatever the mount flags say.
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT, ""); !errors.Is(err, unix.EROFS) {
		t.Errorf("remount read-write: %v, want EROFS", err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind remount read-write: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "libc.so.6"), []byte("x"), 0o755); !errors.Is(err, unix.EROFS) {
		t.Errorf("write after bind remount: %v, want EROFS", err)
	}
	cacheDir := mountOverlay(t, mountAt(t, spec, agent.CacheDir))
	if b, err := os.ReadFile(filepath.Join(cacheDir, "module")); err != nil || string(b) != "compiled" {
		t.Errorf("cache: %q %v", b, err)
	}

	// Another container reuses the same copies.
	spec2 := &specs.Spec{Process: &specs.Process{Args: []string{"/app/x"}}}
	if _, err := Inject(spec2, s, o); err != nil {
		t.Fatal(err)
	}
	if a, b := mountAt(t, spec, agent.ReadOnlyDir), mountAt(t, spec2, agent.ReadOnlyDir); !slices.Equal(a.Options, b.Options) {
		t.Errorf("second container: %q, first %q", b.Options, a.Options)
	}
	// A PAL outside the PAL directories is refused by the one PAL check, and Inject injects no PAL
	// that check did not return.
	s.RuntimePath = "/lib/x86_64-linux-gnu/libc.so.6"
	var na *NotAllowedPALError
	if _, err := ResolvePAL(s, o.PALDirs); !errors.As(err, &na) {
		t.Errorf("PAL outside the PAL directories: %v", err)
	}
	o.PAL = ""
	if _, err := Inject(&specs.Spec{Process: &specs.Process{Args: []string{"/x"}}}, s, o); err == nil || !strings.Contains(err.Error(), "not checked") {
		t.Errorf("PAL that ResolvePAL did not return: %v", err)
	}
}

func TestReadOnlyOverlay(t *testing.T) {
	m, err := readOnlyOverlay("/d", []string{`/a,b:c\d`, "/e"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `lowerdir=/a\,b\:c\\d:/e`; !slices.Contains(m.Options, want) {
		t.Errorf("options %q, want %q", m.Options, want)
	}
	many := make([]string, 200)
	for i := range many {
		many[i] = "/run/rune/injected/0123456789abcdef-0123456789abcdef"
	}
	if _, err := readOnlyOverlay("/d", many); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("200 layers: %v", err)
	}
}

// TestCopyStore: a changed host file gets a new layer; layers of versions that are gone are
// collected once unused, never while an overlay uses them.
func TestCopyStore(t *testing.T) {
	dir := rootDir(t)
	src := filepath.Join(rootDir(t), "lib.so")
	os.WriteFile(src, []byte("v1"), 0o755)
	layer := func() string {
		s, err := openCopyStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		l, err := s.layer(src, "lib/lib.so")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	v1 := layer()
	if again := layer(); again != v1 {
		t.Errorf("unchanged file: new layer %s, had %s", again, v1)
	}
	if b, _ := os.ReadFile(filepath.Join(v1, "lib", "lib.so")); string(b) != "v1" {
		t.Errorf("copy holds %q", b)
	}
	old := time.Now().Add(-2 * copyGrace)
	os.Chtimes(v1, old, old)
	// v1 in use by an overlay (as in a running container): kept.
	inUse := mountOverlay(t, specs.Mount{Options: []string{"ro", "lowerdir=" + v1 + ":" + filepath.Join(dir, "empty")}})
	os.WriteFile(src, []byte("v2"), 0o755)
	v2 := layer()
	if v2 == v1 {
		t.Fatal("changed file: same layer")
	}
	if _, err := os.Stat(v1); err != nil {
		t.Errorf("layer in use was collected: %v", err)
	}
	// Unused and old: collected at the next new layer.
	if err := unix.Unmount(inUse, 0); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(v2, old, old)
	os.WriteFile(src, []byte("v3"), 0o755)
	v3 := layer()
	for _, l := range []string{v1, v2} {
		if _, err := os.Stat(l); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("superseded layer %s not collected: %v", l, err)
		}
	}
	if _, err := os.Stat(v3); err != nil {
		t.Error(err)
	}
	// A store another user can write is refused.
	os.Chown(dir, 1000, 1000)
	if _, err := openCopyStore(dir); err == nil || !strings.Contains(err.Error(), "not root") {
		t.Errorf("store owned by a user: %v", err)
	}
}
