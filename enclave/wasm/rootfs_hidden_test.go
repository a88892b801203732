package wasm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
)

func TestRuneDirIsRuneletDir(t *testing.T) {
	if "/"+runeDir != agent.Dir {
		t.Fatalf("runeDir %q, agent.Dir %q: the guest would see rune's directory", runeDir, agent.Dir)
	}
}

// TestGuestCannotReachRuneDir lays out the rootfs the way rune does (a tmpfs at /dev/.rune with
// files bind-mounted into it, procfs at /proc) in a private mount namespace, and has a guest try
// every way in: the path, ".." tricks, a symlink it makes itself, /proc/self. Each is absent to
// it; the rest of /dev and /proc stays visible.
func TestGuestCannotReachRuneDir(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for mounts")
	}
	if os.Getenv("WASM_TEST_HIDDEN") == "" {
		rootfs := newRootfs(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestGuestCannotReachRuneDir$", "-test.v")
		cmd.Env = append(os.Environ(), "WASM_TEST_HIDDEN="+rootfs)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestGuestCannotReachRuneDir") {
			t.Fatalf("in a private mount namespace: %v\n%s", err, out)
		}
		return
	}
	rootfs := os.Getenv("WASM_TEST_HIDDEN")
	mustMount := func(src, dst, fstype string, flags uintptr, data string) {
		t.Helper()
		if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
			t.Fatalf("mount %s on %s: %v", src, dst, err)
		}
	}
	dev := filepath.Join(rootfs, "dev")
	rd := filepath.Join(dev, ".rune")
	for _, d := range []string{rd, filepath.Join(rootfs, "proc"), filepath.Join(rootfs, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dev, "null-ish"), []byte("dev file\n"))
	mustMount("tmpfs", rd, "tmpfs", 0, "mode=755")
	writeFile(t, filepath.Join(rd, "agent"), []byte("in the tmpfs\n"))
	host := filepath.Join(t.TempDir(), "binary")
	writeFile(t, host, []byte("a host binary\n"))
	writeFile(t, filepath.Join(rd, "init-runelet"), nil)
	mustMount(host, filepath.Join(rd, "init-runelet"), "", unix.MS_BIND, "")
	cacheSrc := t.TempDir()
	writeFile(t, filepath.Join(cacheSrc, "wazero", "key"), []byte("compiled code\n"))
	if err := os.Mkdir(filepath.Join(rd, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustMount(cacheSrc, filepath.Join(rd, "cache"), "", unix.MS_BIND|unix.MS_REC, "")
	mustMount("proc", filepath.Join(rootfs, "proc"), "proc", 0, "")

	rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = "" })
	guest := func(args ...string) result {
		return run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: append([]string{"hello"}, args...)}, nil)
	}
	for _, p := range []string{
		"/dev/.rune/agent", "/dev/.rune/init-runelet", "/dev/.rune/cache/wazero/key",
		"/dev/../dev/.rune/agent", "/dev/./.rune/init-runelet", "/app/../dev/.rune/cache/wazero/key",
	} {
		if got := guest("cat", p); got.status == 0 || !strings.Contains(got.stderr, "No such file") {
			t.Errorf("guest read %s: %+v; want no such file", p, got)
		}
	}
	// The runelet's memory and layout are not the guest's, nor is any write to its /proc files.
	pid := strconv.Itoa(os.Getpid())
	for _, p := range []string{"/proc/self/mem", "/proc/self/environ", "/proc/" + pid + "/maps", "/proc/thread-self/auxv", "/proc/self/task/" + pid + "/mem"} {
		if got := guest("cat", p); got.status == 0 || !strings.Contains(got.stderr, "Permission denied") {
			t.Errorf("guest read %s: %+v; want permission denied", p, got)
		}
	}
	for _, p := range []string{"/proc/self/mem", "/proc/self/comm", "/proc/" + pid + "/oom_score_adj"} {
		if got := guest("write", p, "1"); got.status == 0 || !strings.Contains(got.stderr, "Permission denied") {
			t.Errorf("guest wrote %s: %+v; want permission denied", p, got)
		}
	}
	// What the process is stays readable.
	if got := guest("cat", "/proc/self/status"); got.status != 0 || !strings.Contains(got.stdout, "CapEff") {
		t.Errorf("cat /proc/self/status: %+v", got)
	}
	if got := guest("ls", "/dev/.rune"); got.status == 0 {
		t.Errorf("guest listed /dev/.rune: %+v", got)
	}
	// A symlink the guest makes itself leads nowhere either.
	if got := guest("symlink", "../dev/.rune", "/tmp/r"); got.status != 0 {
		t.Fatalf("symlink: %+v", got)
	}
	if got := guest("cat", "/tmp/r/agent"); got.status == 0 || !strings.Contains(got.stderr, "No such file") {
		t.Errorf("guest read through its own symlink: %+v", got)
	}
	// /dev lists without .rune; the rest of /dev and /proc is there.
	if got := guest("ls", "/dev"); got.status != 0 || strings.Contains(got.stdout, ".rune") || !strings.Contains(got.stdout, "null-ish") {
		t.Errorf("ls /dev: %+v", got)
	}
	if got := guest("cat", "/dev/null-ish"); got.stdout != "dev file\n" {
		t.Errorf("cat /dev/null-ish: %+v", got)
	}
	if got := guest("cat", "/proc/version"); got.status != 0 || !strings.HasPrefix(got.stdout, "Linux") {
		t.Errorf("cat /proc/version: %+v", got)
	}
	// The runtime itself reads no module from there either.
	if _, err := rt.Measurement(enclave.Process{Path: "/dev/.rune/init-runelet"}); err == nil {
		t.Errorf("the runtime read a module from /dev/.rune")
	}
}

// A /dev/.rune that is not a mount is the image's own directory, not rune's: it stays visible.
func TestPlainRuneDirStaysVisible(t *testing.T) {
	rootfs := newRootfs(t)
	writeFile(t, filepath.Join(rootfs, "dev", ".rune", "file"), []byte("image content\n"))
	rt := newRuntime(t, rootfs, nil)
	if got := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "cat", "/dev/.rune/file"}}, nil); got.stdout != "image content\n" {
		t.Errorf("cat: %+v", got)
	}
}
