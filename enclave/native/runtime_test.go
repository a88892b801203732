package native

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// busybox is the static busybox the tests copy into their rootfs (Debian's busybox-static).
const busybox = "/bin/busybox"

func writeFile(t *testing.T, p string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
}

// newRootfs makes a rootfs with a static busybox at /bin/busybox, applet links to it, and a few
// files of its own.
func newRootfs(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatalf("this test needs a static busybox at %s (Debian package busybox-static): %v", busybox, err)
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "bin", "busybox"), bb, 0o755)
	for _, applet := range []string{"sh", "cat", "env", "pwd", "sleep", "printf"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("native-test\n"), 0o644)
	writeFile(t, filepath.Join(root, "data", "notexec"), []byte("#!/bin/sh\n"), 0o644)
	return root
}

func newRuntime(t *testing.T, rootfs string) *Runtime {
	t.Helper()
	rt, err := enclave.Builtin("native")
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Init(context.Background(), enclave.Config{Type: "sim", RuntimePath: "builtin:native", Rootfs: rootfs}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return rt.(*Runtime)
}

type result struct {
	status         int
	stdout, stderr string
}

func run(t *testing.T, rt enclave.Runtime, p enclave.Process, stdin string) result {
	t.Helper()
	dir := t.TempDir()
	create := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	p.Stdout, p.Stderr = create("stdout"), create("stderr")
	if stdin != "" {
		writeFile(t, filepath.Join(dir, "stdin"), []byte(stdin), 0o644)
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
	return result{status, read("stdout"), read("stderr")}
}

func TestRun(t *testing.T) {
	rt := newRuntime(t, newRootfs(t))
	exotic := []string{"with space", `dou"ble`, "it's", "ünïcødé ✓", "", "tab\there", "new\nline", "$HOME", "*"}
	sh := func(script string, args ...string) enclave.Process {
		return enclave.Process{Path: "/bin/sh", Args: append([]string{"sh", "-c", script, "argv0"}, args...)}
	}
	tests := []struct {
		name       string
		p          enclave.Process
		stdin      string
		wantStatus int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "argv passed exactly",
			p:          sh(`printf '[%s]\n' "$0" "$@"`, exotic...),
			wantStdout: "[argv0]\n[with space]\n[dou\"ble]\n[it's]\n[ünïcødé ✓]\n[]\n[tab\there]\n[new\nline]\n[$HOME]\n[*]\n",
		},
		{
			name:       "argv[0] as given picks the busybox applet",
			p:          enclave.Process{Path: "/bin/busybox", Args: []string{"printf", "%s|", "a", "b"}},
			wantStdout: "a|b|",
		},
		{
			name: "env passed exactly, in order, repeated keys included",
			p: enclave.Process{Path: "/bin/env", Args: []string{"env"},
				Env: []string{"B=2", "A=1", "EMPTY=", "SPACE=a b", "UTF=ünï", "A=again"}},
			wantStdout: "B=2\nA=1\nEMPTY=\nSPACE=a b\nUTF=ünï\nA=again\n",
		},
		{
			name:       "no env: nothing of the runelet's leaks",
			p:          enclave.Process{Path: "/bin/env", Args: []string{"env"}},
			wantStdout: "",
		},
		{
			name:       "dir",
			p:          enclave.Process{Path: "/bin/pwd", Args: []string{"pwd"}, Dir: "/data"},
			wantStdout: "/data\n",
		},
		{
			name:       "default dir is /",
			p:          enclave.Process{Path: "/bin/pwd", Args: []string{"pwd"}},
			wantStdout: "/\n",
		},
		{
			name:       "relative path resolved against dir",
			p:          enclave.Process{Path: "../bin/cat", Args: []string{"cat", "hostname"}, Dir: "/etc"},
			wantStdout: "native-test\n",
		},
		{
			name:       "reads its rootfs, not the host's",
			p:          enclave.Process{Path: "/bin/cat", Args: []string{"cat", "/etc/hostname"}},
			wantStdout: "native-test\n",
		},
		{
			name:       "stdin",
			p:          enclave.Process{Path: "/bin/cat", Args: []string{"cat"}},
			stdin:      "line one\nline two ✓\n",
			wantStdout: "line one\nline two ✓\n",
		},
		{"exit 0", sh("echo out; echo err >&2; exit 0"), "", 0, "out\n", "err\n"},
		{"exit 3", sh("echo out; echo err >&2; exit 3"), "", 3, "out\n", "err\n"},
		{"exit 255", sh("echo out; echo err >&2; exit 255"), "", 255, "out\n", "err\n"},
		{"killed by a signal it sends itself", sh("kill -SEGV $$"), "", 128 + int(syscall.SIGSEGV), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, rt, tt.p, tt.stdin)
			if got.status != tt.wantStatus || got.stdout != tt.wantStdout || got.stderr != tt.wantStderr {
				t.Errorf("got status %d stdout %q stderr %q\nwant status %d stdout %q stderr %q",
					got.status, got.stdout, got.stderr, tt.wantStatus, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestSignal(t *testing.T) {
	rt := newRuntime(t, newRootfs(t))
	for _, tt := range []struct {
		sig  syscall.Signal
		want int
	}{
		{syscall.SIGTERM, 143},
		{syscall.SIGKILL, 137},
		{syscall.SIGINT, 130},
	} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			out, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			proc, err := rt.Spawn(context.Background(), enclave.Process{
				Path: "/bin/sh", Args: []string{"sh", "-c", "echo ready; exec sleep 1000"}, Stdout: outW,
			})
			outW.Close()
			if err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
				t.Fatalf("read %q, %v", line, err)
			}
			if err := proc.Signal(0); err != nil {
				t.Errorf("Signal(0) on a running process: %v", err)
			}
			if err := proc.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			if status, err := proc.Wait(); status != tt.want || err != nil {
				t.Errorf("Wait = %d, %v; want %d", status, err, tt.want)
			}
			if err := proc.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("Signal after exit: %v", err)
			}
		})
	}
}

func TestDestroyKills(t *testing.T) {
	rt := New()
	if err := rt.Init(context.Background(), enclave.Config{Type: "sim", Rootfs: newRootfs(t)}); err != nil {
		t.Fatal(err)
	}
	proc, err := rt.Spawn(context.Background(), enclave.Process{Path: "/bin/sleep", Args: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Destroy(); err != nil {
		t.Fatal(err)
	}
	if status, _ := proc.Wait(); status != 137 {
		t.Errorf("status %d, want 137", status)
	}
	if _, err := rt.Spawn(context.Background(), enclave.Process{Path: "/bin/sleep"}); err == nil {
		t.Error("Spawn after Destroy succeeded")
	}
}

func TestInitErrors(t *testing.T) {
	rootfs := t.TempDir()
	for _, tt := range []struct {
		name string
		cfg  enclave.Config
		want string
	}{
		{"sgx", enclave.Config{Type: "intelSgx", Rootfs: rootfs}, "builtin:native provides no isolation; it is only available with ENCLAVE_TYPE=sim"},
		{"tdx", enclave.Config{Type: "tdx", Rootfs: rootfs}, "only available with ENCLAVE_TYPE=sim"},
		{"empty type", enclave.Config{Rootfs: rootfs}, "only available with ENCLAVE_TYPE=sim"},
		{"runtime args", enclave.Config{Type: "sim", Rootfs: rootfs, Args: []string{"memory=1M"}}, `takes no runtime arguments, got "memory=1M"`},
		{"no rootfs", enclave.Config{Type: "sim"}, "rootfs is empty"},
		{"missing rootfs", enclave.Config{Type: "sim", Rootfs: filepath.Join(rootfs, "nope")}, "no such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := New().Init(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Init: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSpawnErrors(t *testing.T) {
	rootfs := newRootfs(t)
	host := t.TempDir()
	writeFile(t, filepath.Join(host, "hostonly"), []byte("#!/bin/sh\necho escaped\n"), 0o755)
	if err := os.Symlink(filepath.Join(host, "hostonly"), filepath.Join(rootfs, "bin", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("../", 10)+filepath.Join(host, "hostonly")[1:], filepath.Join(rootfs, "bin", "escape-rel")); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, rootfs)
	for _, tt := range []struct {
		name string
		p    enclave.Process
		want string
	}{
		{"missing executable", enclave.Process{Path: "/bin/nope"}, "executable /bin/nope: no such file or directory"},
		{"directory", enclave.Process{Path: "/bin"}, "executable /bin: not a regular file"},
		{"not executable", enclave.Process{Path: "/data/notexec"}, "executable /data/notexec: permission denied"},
		{"absolute symlink out of the rootfs", enclave.Process{Path: "/bin/escape"}, "no such file or directory"},
		{"relative symlink out of the rootfs", enclave.Process{Path: "/bin/escape-rel"}, "no such file or directory"},
		{"missing dir", enclave.Process{Path: "/bin/sh", Dir: "/nope"}, "working directory /nope: no such file or directory"},
		{"relative dir", enclave.Process{Path: "/bin/sh", Dir: "data"}, `working directory "data" is not absolute`},
		{"empty path", enclave.Process{}, "process path is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proc, err := rt.Spawn(context.Background(), tt.p)
			if err == nil {
				proc.Wait()
				t.Fatalf("Spawn succeeded, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	if _, err := New().Spawn(context.Background(), enclave.Process{Path: "/bin/sh"}); err == nil || !strings.Contains(err.Error(), "not initialized") {
		t.Errorf("Spawn before Init: %v", err)
	}
}

// TestMeasureSpecVector checks Measure against a pre-image built byte by byte here and the
// digest docs/measurement.md publishes for the native example.
func TestMeasureSpecVector(t *testing.T) {
	exe := []byte("\x7fELF")
	launch := Launch{Args: []string{"/bin/app", "-v"}, Env: []string{"A=1", "A=2"}, Dir: "/srv"}
	var pre []byte
	str := func(s string) {
		pre = binary.BigEndian.AppendUint32(pre, uint32(len(s)))
		pre = append(pre, s...)
	}
	exeSum := sha256.Sum256(exe)
	str("inclavare-enclave-measurement/v1")
	str("runtime")
	str("native")
	str("executable-sha256")
	str(string(exeSum[:]))
	str("argv")
	pre = append(pre, 0, 0, 0, 2)
	str("/bin/app")
	str("-v")
	str("env")
	pre = append(pre, 0, 0, 0, 2)
	str("A=1")
	str("A=2")
	str("dir")
	str("/srv")
	want := sha256.Sum256(pre)
	got := Measure(exe, launch)
	if got != hex.EncodeToString(want[:]) {
		t.Fatalf("Measure = %s, want %x", got, want)
	}
	const published = "04684afbae019ac2fd66f22f95dc314ee92b948167fb7f701684e16960ed592c"
	if got != published {
		t.Errorf("Measure = %s, docs/measurement.md publishes %s", got, published)
	}
}

func TestMeasure(t *testing.T) {
	exe := []byte("executable")
	base := Launch{Args: []string{"app", "a b", ""}, Env: []string{"X=1", "Y=2"}, Dir: "/work"}
	baseline := Measure(exe, base)
	if Measure([]byte("executable"), Launch{Args: []string{"app", "a b", ""}, Env: []string{"X=1", "Y=2"}, Dir: "/work"}) != baseline {
		t.Fatal("same input, different measurement")
	}
	seen := map[string]string{baseline: "baseline"}
	for _, tt := range []struct {
		name   string
		exe    []byte
		launch Launch
	}{
		{"executable byte", []byte("executablf"), base},
		{"one arg", exe, Launch{Args: []string{"app", "a c", ""}, Env: base.Env, Dir: base.Dir}},
		{"arg boundary", exe, Launch{Args: []string{"app", "a", "b", ""}, Env: base.Env, Dir: base.Dir}},
		{"trailing empty arg", exe, Launch{Args: []string{"app", "a b"}, Env: base.Env, Dir: base.Dir}},
		{"env order", exe, Launch{Args: base.Args, Env: []string{"Y=2", "X=1"}, Dir: base.Dir}},
		{"repeated env key", exe, Launch{Args: base.Args, Env: []string{"X=1", "Y=2", "Y=2"}, Dir: base.Dir}},
		{"dir", exe, Launch{Args: base.Args, Env: base.Env, Dir: "/"}},
	} {
		got := Measure(tt.exe, tt.launch)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same measurement as %s", tt.name, prev)
		}
		seen[got] = tt.name
	}
	if Measure(exe, Launch{Args: []string{"x"}}) != Measure(exe, Launch{Args: []string{"x"}, Dir: "/"}) {
		t.Error("empty dir is not measured as /")
	}
}

func TestRuntimeMeasurement(t *testing.T) {
	rootfs := newRootfs(t)
	rt := newRuntime(t, rootfs)
	bb, _ := os.ReadFile(filepath.Join(rootfs, "bin", "busybox"))
	p := enclave.Process{Path: "/bin/sh", Args: []string{"sh", "-c", "true"}, Env: []string{"K=V"}, Dir: "/data"}
	got, err := rt.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	// /bin/sh is a symlink to busybox inside the rootfs: the bytes measured are busybox's.
	if want := Measure(bb, Launch{Args: p.Args, Env: p.Env, Dir: p.Dir}); got != want {
		t.Errorf("Measurement = %s, want %s", got, want)
	}
	if again, _ := newRuntime(t, rootfs).Measurement(p); again != got {
		t.Error("two runtimes measure the same process differently")
	}
	q := p
	q.Args = nil
	if m, _ := rt.Measurement(q); m != Measure(bb, Launch{Args: []string{"/bin/sh"}, Env: p.Env, Dir: p.Dir}) {
		t.Error("without args, argv[0] measured is not the path")
	}
	writeFile(t, filepath.Join(rootfs, "bin", "busybox"), append(bb, 0), 0o755)
	if changed, _ := rt.Measurement(p); changed == got {
		t.Error("changing the executable does not change the measurement")
	}
	for _, bad := range []enclave.Process{{Path: "/bin/nope"}, {Path: "/bin"}} {
		if _, err := rt.Measurement(bad); err == nil {
			t.Errorf("Measurement(%s) succeeded", bad.Path)
		}
	}
}
