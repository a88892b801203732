package wasm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// sharedCacheDir is a compilation cache shared by the tests (outside every rootfs), kept in the
// user's cache directory across runs like Go's build cache, so each test program is compiled to
// native code once, not once per test. Tests about the cache itself use fresh directories.
var sharedCacheDir string

func TestMain(m *testing.M) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sharedCacheDir = filepath.Join(base, "inclavare-go", "wasm-test-cache")
	if err := os.MkdirAll(sharedCacheDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if programs.dir != "" {
		os.RemoveAll(programs.dir)
	}
	os.Exit(code)
}

// programs holds the testdata Go programs built for wasip1, once per test run.
var programs struct {
	once sync.Once
	dir  string
	err  error
}

// program returns the bytes of the wasip1 build of testdata/<name>.
func program(t testing.TB, name string) []byte {
	t.Helper()
	programs.once.Do(func() {
		dir, err := os.MkdirTemp("", "wasm-test-programs-")
		if err != nil {
			programs.err = err
			return
		}
		programs.dir = dir
		cmd := exec.Command("go", "build", "-o", dir+"/", "./testdata/hello", "./testdata/sleeper", "./testdata/evidence")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			programs.err = fmt.Errorf("build wasip1 test programs: %v\n%s", err, out)
		}
	})
	if programs.err != nil {
		t.Fatal(programs.err)
	}
	b, err := os.ReadFile(filepath.Join(programs.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRootfs makes a rootfs holding the test programs under /app, /etc/hostname and an empty /data.
func newRootfs(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	for _, name := range []string{"hello", "sleeper", "evidence"} {
		writeFile(t, filepath.Join(root, "app", name+".wasm"), program(t, name))
	}
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("enclave-test\n"))
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newRuntime initializes a builtin:wasm runtime, obtained through the enclave registry, for
// rootfs; change adjusts the config first.
func newRuntime(t testing.TB, rootfs string, change func(*enclave.Config)) *Runtime {
	t.Helper()
	rt, err := enclave.Builtin("wasm")
	if err != nil {
		t.Fatal(err)
	}
	cfg := enclave.Config{Type: "sim", RuntimePath: "builtin:wasm", Rootfs: rootfs, CacheDir: sharedCacheDir}
	if change != nil {
		change(&cfg)
	}
	if err := rt.Init(context.Background(), cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return rt.(*Runtime)
}

// result is what a finished process left behind.
type result struct {
	status         int
	stdout, stderr string
}

// run spawns p (stdout and stderr captured in files, stdin from stdin when not nil) and waits.
func run(t testing.TB, rt enclave.Runtime, p enclave.Process, stdin []byte) result {
	t.Helper()
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	p.Stdout, p.Stderr = open("stdout"), open("stderr")
	if stdin != nil {
		writeFile(t, filepath.Join(dir, "stdin"), stdin)
		f, err := os.Open(filepath.Join(dir, "stdin"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		p.Stdin = f
	}
	proc, err := rt.Spawn(context.Background(), p)
	if err != nil {
		t.Fatalf("Spawn(%s %q): %v", p.Path, p.Args, err)
	}
	status, err := proc.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return result{status: status, stdout: read("stdout"), stderr: read("stderr")}
}

// Hand-assembled modules for cases a Go program cannot produce (traps, odd exports, imports).

func leb128(v uint32) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

func section(id byte, payload ...[]byte) []byte {
	body := bytes.Join(payload, nil)
	return append(append([]byte{id}, leb128(uint32(len(body)))...), body...)
}

func name(s string) []byte { return append(leb128(uint32(len(s))), s...) }

func module(sections ...[]byte) []byte {
	return append([]byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}, bytes.Join(sections, nil)...)
}

// commandModule is a module whose _start (type () -> ()) has body code, with one memory of
// minPages pages when minPages > 0.
func commandModule(minPages uint32, code ...byte) []byte {
	body := append([]byte{0x00}, code...) // no locals
	body = append(body, 0x0b)             // end
	sections := [][]byte{
		section(1, []byte{0x01, 0x60, 0x00, 0x00}), // types: () -> ()
		section(3, []byte{0x01, 0x00}),             // functions: func 0 has type 0
	}
	exports := [][]byte{{0x01}, name("_start"), {0x00, 0x00}}
	if minPages > 0 {
		sections = append(sections, section(5, []byte{0x01, 0x00}, leb128(minPages))) // memory: min only
		exports = [][]byte{{0x02}, name("_start"), {0x00, 0x00}, name("memory"), {0x02, 0x00}}
	}
	sections = append(sections,
		section(7, exports...),
		section(10, []byte{0x01}, leb128(uint32(len(body))), body),
	)
	return module(sections...)
}

// trapModule's _start executes unreachable.
func trapModule() []byte { return commandModule(0, 0x00) }

// growModule's _start grows its one-page memory by pages and traps if that fails.
func growModule(pages uint32) []byte {
	code := append([]byte{0x41}, leb128(pages)...) // i32.const pages (pages < 2^20 keeps it positive)
	code = append(code,
		0x40, 0x00, // memory.grow 0
		0x41, 0x7f, // i32.const -1
		0x46,       // i32.eq
		0x04, 0x40, // if
		0x00, //   unreachable
		0x0b, // end
	)
	return commandModule(1, code...)
}

// importModule imports module.field with type (i32) -> () and calls nothing.
func importModule(mod, field string) []byte {
	return module(
		section(1, []byte{0x02, 0x60, 0x00, 0x00, 0x60, 0x01, 0x7f, 0x00}),
		section(2, []byte{0x01}, name(mod), name(field), []byte{0x00, 0x01}),
		section(3, []byte{0x01, 0x00}),
		section(7, []byte{0x01}, name("_start"), []byte{0x00, 0x01}),
		section(10, []byte{0x01, 0x02, 0x00, 0x0b}),
	)
}
