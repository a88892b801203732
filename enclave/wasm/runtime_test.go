package wasm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

func quoteLines(items ...string) string {
	var b strings.Builder
	for _, s := range items {
		fmt.Fprintf(&b, "%q\n", s)
	}
	return b.String()
}

func TestRunHello(t *testing.T) {
	rootfs := newRootfs(t)
	rt := newRuntime(t, rootfs, nil)
	exotic := []string{"hello", "args", "with space", `dou"ble`, "it's", "ünïcødé ✓", "", "tab\there", "new\nline", "--flag=1"}
	tests := []struct {
		name       string
		p          enclave.Process
		stdin      []byte
		wantStatus int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "argv passed exactly, argv[0] as given",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: exotic},
			wantStdout: quoteLines(exotic...),
		},
		{
			name:       "no args means argv[0] is the path",
			p:          enclave.Process{Path: "/app/hello.wasm"},
			wantStdout: "hello\n",
		},
		{
			name: "env passed exactly and in order, a repeated key once",
			p: enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "env"},
				Env: []string{"B=2", "A=1", "EMPTY=", "SPACE=a b", "QUOTE=\"'", "UTF=ünï", "EQ=a=b", "A=again"}},
			wantStdout: quoteLines("B=2", "A=again", "EMPTY=", "SPACE=a b", "QUOTE=\"'", "UTF=ünï", "EQ=a=b"),
		},
		{
			name:       "no env at all",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "env"}},
			wantStdout: "",
		},
		{
			name:       "dir becomes PWD and the working directory",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "pwd"}, Dir: "/data"},
			wantStdout: "/data\n",
		},
		{
			name:       "relative path resolved against dir; relative file read",
			p:          enclave.Process{Path: "hello.wasm", Args: []string{"hello", "cat", "../etc/hostname"}, Dir: "/app"},
			wantStdout: "enclave-test\n",
		},
		{
			name:       "reads a file of its rootfs",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "cat", "/etc/hostname"}},
			wantStdout: "enclave-test\n",
		},
		{
			name:       "missing file in the guest is a guest error",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "cat", "/etc/nope"}},
			wantStatus: 1,
			wantStderr: "cat: open /etc/nope: No such file or directory\n",
		},
		{
			name:       "stdin",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "stdin"}},
			stdin:      []byte("line one\nline two ✓\n"),
			wantStdout: "line one\nline two ✓\n",
		},
		{
			name:       "exit 0",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "exit", "0"}},
			wantStdout: "out\n", wantStderr: "err\n",
		},
		{
			name:       "exit 3",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "exit", "3"}},
			wantStatus: 3, wantStdout: "out\n", wantStderr: "err\n",
		},
		{
			name:       "exit 255",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "exit", "255"}},
			wantStatus: 255, wantStdout: "out\n", wantStderr: "err\n",
		},
		{
			name:       "exit 256 stays a failure",
			p:          enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "exit", "256"}},
			wantStatus: 255, wantStdout: "out\n", wantStderr: "err\n",
		},
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

func TestTrap(t *testing.T) {
	rootfs := newRootfs(t)
	writeFile(t, filepath.Join(rootfs, "app", "trap.wasm"), trapModule())
	rt := newRuntime(t, rootfs, nil)
	got := run(t, rt, enclave.Process{Path: "/app/trap.wasm"}, nil)
	if got.status != TrapExitStatus {
		t.Errorf("status %d, want %d", got.status, TrapExitStatus)
	}
	if !strings.HasPrefix(got.stderr, "builtin:wasm: /app/trap.wasm: trap: ") || !strings.Contains(got.stderr, "unreachable") {
		t.Errorf("stderr %q does not explain the trap", got.stderr)
	}
}

func TestSpawnErrors(t *testing.T) {
	rootfs := newRootfs(t)
	writeFile(t, filepath.Join(rootfs, "app", "garbage.wasm"), []byte("#!/bin/sh\necho not wasm\n"))
	writeFile(t, filepath.Join(rootfs, "app", "nostart.wasm"), module())
	writeFile(t, filepath.Join(rootfs, "app", "import.wasm"), importModule("env", "host_thing"))
	writeFile(t, filepath.Join(rootfs, "app", "badsig.wasm"), importModule("wasi_snapshot_preview1", "proc_exit"+"_nope"))
	rt := newRuntime(t, rootfs, nil)
	tests := []struct {
		name string
		p    enclave.Process
		want string
	}{
		{"missing module", enclave.Process{Path: "/app/missing.wasm"}, "read wasm module /app/missing.wasm: no such file or directory"},
		{"module is a directory", enclave.Process{Path: "/app"}, "read wasm module /app: not a regular file"},
		{"not wasm", enclave.Process{Path: "/app/garbage.wasm"}, "/app/garbage.wasm: invalid wasm module: "},
		{"no _start", enclave.Process{Path: "/app/nostart.wasm"}, "invalid wasm module: no exported function _start"},
		{"unknown import", enclave.Process{Path: "/app/import.wasm"}, "imports function env.host_thing, which builtin:wasm does not provide"},
		{"unknown wasi function", enclave.Process{Path: "/app/badsig.wasm"}, "imports function wasi_snapshot_preview1.proc_exit_nope"},
		{"env without =", enclave.Process{Path: "/app/hello.wasm", Env: []string{"NOEQUALS"}}, `environment entry "NOEQUALS": want KEY=VALUE`},
		{"env with empty key", enclave.Process{Path: "/app/hello.wasm", Env: []string{"=x"}}, `environment entry "=x"`},
		{"missing dir", enclave.Process{Path: "/app/hello.wasm", Dir: "/nope"}, "working directory /nope: no such file or directory"},
		{"dir is a file", enclave.Process{Path: "/app/hello.wasm", Dir: "/etc/hostname"}, "working directory /etc/hostname: not a directory"},
		{"relative dir", enclave.Process{Path: "/app/hello.wasm", Dir: "data"}, `working directory "data" is not absolute`},
		{"empty path", enclave.Process{}, "process path is empty"},
		{"NUL in arg", enclave.Process{Path: "/app/hello.wasm", Args: []string{"a\x00b"}}, "instantiate /app/hello.wasm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, err := rt.Spawn(context.Background(), tt.p)
			if err == nil {
				proc.Wait()
				t.Fatalf("Spawn succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestNotInitialized(t *testing.T) {
	rt := New()
	if _, err := rt.Spawn(context.Background(), enclave.Process{Path: "/x.wasm"}); err == nil || !strings.Contains(err.Error(), "not initialized") {
		t.Errorf("Spawn before Init: %v", err)
	}
	if _, err := rt.Measurement(enclave.Process{Path: "/x.wasm"}); err == nil || !strings.Contains(err.Error(), "not initialized") {
		t.Errorf("Measurement before Init: %v", err)
	}
}

func TestInitErrors(t *testing.T) {
	rootfs := t.TempDir()
	tests := []struct {
		name string
		cfg  enclave.Config
		want string
	}{
		{"sgx refused", enclave.Config{Type: "intelSgx", Rootfs: rootfs}, "outside any SGX enclave"},
		{"unknown type", enclave.Config{Type: "sev", Rootfs: rootfs}, `unknown enclave type "sev"`},
		{"empty type", enclave.Config{Rootfs: rootfs}, "enclave type is empty"},
		{"empty rootfs", enclave.Config{Type: "sim"}, "rootfs is empty"},
		{"missing rootfs", enclave.Config{Type: "sim", Rootfs: filepath.Join(rootfs, "nope")}, "no such file or directory"},
		{"bad arg", enclave.Config{Type: "sim", Rootfs: rootfs, Args: []string{"memory=12X"}}, `runtime argument "memory=12X"`},
		{"unknown arg", enclave.Config{Type: "sim", Rootfs: rootfs, Args: []string{"heap=1M"}}, `unknown key "heap"`},
		{"writable cache inside rootfs", enclave.Config{Type: "sim", Rootfs: rootfs, CacheDir: filepath.Join(rootfs, "cache")},
			"is inside the rootfs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := New()
			err := rt.Init(context.Background(), tt.cfg)
			if err == nil {
				rt.Destroy()
				t.Fatalf("Init succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	t.Run("init twice", func(t *testing.T) {
		rt := newRuntime(t, rootfs, func(c *enclave.Config) { c.CacheDir = "" })
		if err := rt.Init(context.Background(), enclave.Config{Type: "sim", Rootfs: rootfs}); err == nil {
			t.Error("second Init succeeded")
		}
	})
}

func TestWriteAndList(t *testing.T) {
	rootfs := newRootfs(t)
	rt := newRuntime(t, rootfs, nil)
	got := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "write", "/data/out.txt", "written by wasm"}}, nil)
	if got.status != 0 {
		t.Fatalf("write: %+v", got)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "data", "out.txt")); err != nil || string(b) != "written by wasm" {
		t.Errorf("host sees %q, %v", b, err)
	}
	if err := os.Mkdir(filepath.Join(rootfs, "app", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello.wasm", filepath.Join(rootfs, "app", "link")); err != nil {
		t.Fatal(err)
	}
	got = run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "ls", "/app"}}, nil)
	if want := "evidence.wasm f\nhello.wasm f\nlink l\nsleeper.wasm f\nsub d\n"; got.stdout != want {
		t.Errorf("ls /app: %q, want %q (stderr %q)", got.stdout, want, got.stderr)
	}
}
