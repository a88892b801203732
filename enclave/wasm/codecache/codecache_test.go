package codecache

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

const build = "go1-test"

// fakeCompile stands in for wazero: it writes what a wazero file cache holds for one module.
func fakeCompile(content string) func(dir string) error {
	return func(dir string) error {
		sub := filepath.Join(dir, "wazero-v0-amd64-linux")
		if err := os.Mkdir(sub, 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(sub, "key"), []byte(content), 0o600)
	}
}

func openRoot(t *testing.T) (*Root, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "wasm")
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

// leftovers lists what is in the build directory besides entries.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, build))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), tmpPrefix) || strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestEnsureFillsOnceAndReuses(t *testing.T) {
	r, dir := openRoot(t)
	sum := sha256.Sum256([]byte("module"))
	calls := 0
	fill := func(d string) error { calls++; return fakeCompile("code")(d) }
	entry, err := r.Ensure(build, sum, fill)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, build, hexSum(sum)); entry != want {
		t.Errorf("entry %s, want %s", entry, want)
	}
	if err := Verify(entry); err != nil {
		t.Errorf("Verify of a fresh entry: %v", err)
	}
	again, err := r.Ensure(build, sum, fill)
	if err != nil || again != entry || calls != 1 {
		t.Errorf("second Ensure: %s %v, %d fills; want the same entry and one fill", again, err, calls)
	}
	// The host's directories are private; the entry, which a container's user reads through its
	// mount, is readable by all and writable by none but its owner.
	for p, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, build): 0o700, entry: 0o755,
		filepath.Join(entry, "wazero-v0-amd64-linux"): 0o755, filepath.Join(entry, "wazero-v0-amd64-linux", "key"): 0o644,
		filepath.Join(entry, Manifest): 0o644,
	} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("left behind: %v", l)
	}
}

func hexSum(sum [32]byte) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for _, c := range sum {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}

// A damaged or modified entry is never handed out: it is rebuilt.
func TestEnsureReplacesDamagedEntry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, entry string)
	}{
		{"code modified", func(t *testing.T, entry string) {
			os.WriteFile(filepath.Join(entry, "wazero-v0-amd64-linux", "key"), []byte("poison"), 0o600)
		}},
		{"code truncated", func(t *testing.T, entry string) {
			os.Truncate(filepath.Join(entry, "wazero-v0-amd64-linux", "key"), 1)
		}},
		{"file added", func(t *testing.T, entry string) {
			os.WriteFile(filepath.Join(entry, "wazero-v0-amd64-linux", "other"), []byte("x"), 0o600)
		}},
		{"manifest removed", func(t *testing.T, entry string) { os.Remove(filepath.Join(entry, Manifest)) }},
		{"manifest garbage", func(t *testing.T, entry string) {
			os.WriteFile(filepath.Join(entry, Manifest), []byte("garbage\n"), 0o600)
		}},
		{"symlink in entry", func(t *testing.T, entry string) {
			p := filepath.Join(entry, "wazero-v0-amd64-linux", "key")
			os.Remove(p)
			os.Symlink("/etc/passwd", p)
		}},
		{"entry is a symlink", func(t *testing.T, entry string) {
			os.RemoveAll(entry)
			os.Symlink(t.TempDir(), entry)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, dir := openRoot(t)
			sum := sha256.Sum256([]byte(tc.name))
			entry, err := r.Ensure(build, sum, fakeCompile("good"))
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, entry)
			if err := Verify(entry); err == nil {
				t.Errorf("Verify accepted the damaged entry")
			}
			rebuilt := 0
			got, err := r.Ensure(build, sum, func(d string) error { rebuilt++; return fakeCompile("good")(d) })
			if err != nil || got != entry || rebuilt != 1 {
				t.Fatalf("Ensure after damage: %s %v, %d fills; want the entry rebuilt once", got, err, rebuilt)
			}
			if fi, err := os.Lstat(entry); err != nil || !fi.IsDir() {
				t.Errorf("entry after rebuild: %v %v, want a directory", fi, err)
			}
			if err := Verify(entry); err != nil {
				t.Errorf("rebuilt entry: %v", err)
			}
			if b, _ := os.ReadFile(filepath.Join(entry, "wazero-v0-amd64-linux", "key")); string(b) != "good" {
				t.Errorf("rebuilt code %q", b)
			}
			if l := leftovers(t, dir); len(l) != 0 {
				t.Errorf("left behind: %v", l)
			}
		})
	}
}

// A symlink planted where the build directory belongs is not written through.
func TestEnsureRefusesPlantedBuildSymlink(t *testing.T) {
	r, dir := openRoot(t)
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dir, build)); err != nil {
		t.Fatal(err)
	}
	entry, err := r.Ensure(build, sha256.Sum256([]byte("m")), fakeCompile("code"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, build)); err != nil || !fi.IsDir() {
		t.Errorf("build dir: %v %v, want a real directory", fi, err)
	}
	if es, _ := os.ReadDir(elsewhere); len(es) != 0 {
		t.Errorf("the symlink's target was written to: %v", es)
	}
	if err := Verify(entry); err != nil {
		t.Error(err)
	}
}

func TestOpenRefusesSymlinkRoot(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "wasm")
	os.Symlink(t.TempDir(), link)
	if _, err := Open(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open of a symlink: %v", err)
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	r, err := Open(open)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o700 {
		t.Errorf("root left %v, want 0700", fi.Mode().Perm())
	}
}

// Concurrent writers of one module: one entry, everyone gets it, nothing left behind.
func TestEnsureConcurrent(t *testing.T) {
	_, dir := openRoot(t)
	sum := sha256.Sum256([]byte("shared"))
	var fills atomic.Int32
	var wg sync.WaitGroup
	entries := make([]string, 8)
	errs := make([]error, 8)
	start := make(chan struct{})
	for i := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Each writer has its own Root, as separate prepare processes do.
			ri, err := Open(dir)
			if err != nil {
				errs[i] = err
				return
			}
			defer ri.Close()
			entries[i], errs[i] = ri.Ensure(build, sum, func(d string) error { fills.Add(1); return fakeCompile("code")(d) })
		}()
	}
	close(start)
	wg.Wait()
	for i := range entries {
		if errs[i] != nil || entries[i] != entries[0] {
			t.Errorf("writer %d: %s %v", i, entries[i], errs[i])
		}
	}
	if err := Verify(entries[0]); err != nil {
		t.Error(err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("left behind: %v", l)
	}
	t.Logf("%d of 8 writers compiled", fills.Load())
}

// Sweep removes what a dead writer left, never what a live one holds.
func TestSweep(t *testing.T) {
	r, dir := openRoot(t)
	bfd, err := r.ensureDir(r.fd, build, build)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bfd)
	liveFD, live, err := makeTemp(bfd, "live")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(liveFD)
	deadFD, dead, err := makeTemp(bfd, "dead")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, build, dead, "partial"), []byte("x"), 0o600)
	unix.Close(deadFD) // the writer died: its lock is gone
	entry, err := r.Ensure(build, sha256.Sum256([]byte("kept")), fakeCompile("code"))
	if err != nil {
		t.Fatal(err)
	}
	Sweep(dir)
	if _, err := os.Stat(filepath.Join(dir, build, dead)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead writer's directory survived: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, build, live)); err != nil {
		t.Errorf("live writer's directory removed: %v", err)
	}
	if err := Verify(entry); err != nil {
		t.Errorf("entry after Sweep: %v", err)
	}
}
