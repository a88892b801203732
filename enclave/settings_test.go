package enclave

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestFromSpec(t *testing.T) {
	cases := []struct {
		name    string
		env     []string
		ann     map[string]string
		want    *Settings
		wantEnv []string
		err     string
	}{
		{name: "ordinary", env: []string{"PATH=/bin"}, wantEnv: []string{"PATH=/bin"}},
		{name: "env", env: []string{"PATH=/bin", "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm", "ENCLAVE_RUNTIME_ARGS=memory=64M,x=1", "ENCLAVE_RUNTIME_LOGLEVEL=debug"},
			want:    &Settings{Type: "sim", RuntimePath: "builtin:wasm", Args: []string{"memory=64M", "x=1"}, LogLevel: "debug"},
			wantEnv: []string{"PATH=/bin"}},
		{name: "annotations", ann: map[string]string{"enclave.type": "sim", "enclave.runtime.path": "builtin:native"},
			want: &Settings{Type: "sim", RuntimePath: "builtin:native", LogLevel: "info"}, wantEnv: []string{}},
		{name: "env wins over annotation", env: []string{"ENCLAVE_TYPE=sim"}, ann: map[string]string{"enclave.type": "tdx", "enclave.runtime.path": "builtin:wasm"},
			want: &Settings{Type: "sim", RuntimePath: "builtin:wasm", LogLevel: "info"}, wantEnv: []string{}},
		{name: "path without type", env: []string{"ENCLAVE_RUNTIME_PATH=builtin:wasm"}, err: "ENCLAVE_TYPE is not"},
		{name: "unknown type", env: []string{"ENCLAVE_TYPE=x", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, err: `unknown enclave type "x"`},
		{name: "relative PAL", env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=libpal.so"}, err: "absolute host path"},
		{name: "native needs sim", env: []string{"ENCLAVE_TYPE=snp", "ENCLAVE_RUNTIME_PATH=builtin:native"}, err: "only available with ENCLAVE_TYPE=sim"},
		{name: "bad level", env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm", "ENCLAVE_RUNTIME_LOGLEVEL=LOUD"}, err: "invalid ENCLAVE_RUNTIME_LOGLEVEL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{Env: tc.env}, Annotations: tc.ann}
			got, err := FromSpec(spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("settings %+v, want %+v", got, tc.want)
			}
			if len(spec.Process.Env) != len(tc.wantEnv) || (len(tc.wantEnv) > 0 && !reflect.DeepEqual(spec.Process.Env, tc.wantEnv)) {
				t.Errorf("env left %q, want %q", spec.Process.Env, tc.wantEnv)
			}
		})
	}
}

// TestCheckRuntimePath: the pod author chooses ENCLAVE_RUNTIME_PATH. A path outside the allowed PAL
// directories, or inside but not a root-owned ELF library writable only by root, is refused, and
// every refusal reads the same (up to the path itself): no message tells a missing host file from
// an unreadable one or from one that is not an ELF library.
func TestCheckRuntimePath(t *testing.T) {
	m := hostMachine(t)
	dir := palDir(t)
	good := writeELF(t, filepath.Join(dir, "libpal.so"), testELF{machine: m}, 0o755)
	nested := writeELF(t, filepath.Join(dir, "v1", "libpal.so"), testELF{machine: m}, 0o755)
	link := filepath.Join(dir, "libpal-link.so")
	os.Symlink("libpal.so", link)
	// A link elsewhere makes a PAL directory too (Occlum installs through such links).
	linkedDir := filepath.Join(palDir(t), "pal")
	os.Symlink(dir, linkedDir)
	loop := filepath.Join(dir, "loop.so")
	os.Symlink(loop, loop)
	text := filepath.Join(dir, "text.so")
	os.WriteFile(text, []byte("hello"), 0o755)
	exe := writeELF(t, filepath.Join(dir, "exe.so"), testELF{machine: m, typ: 2}, 0o755)
	gw := writeELF(t, filepath.Join(dir, "gw.so"), testELF{machine: m}, 0o775)
	foreign := writeELF(t, filepath.Join(dir, "foreign.so"), testELF{machine: m}, 0o755)
	os.Chown(foreign, 1000, 1000)
	userDir := filepath.Join(dir, "user")
	userPAL := writeELF(t, filepath.Join(userDir, "libpal.so"), testELF{machine: m}, 0o755)
	os.Chown(userDir, 1000, 1000)
	fifo := filepath.Join(dir, "fifo.so")
	syscall.Mkfifo(fifo, 0o644)
	outside := writeELF(t, filepath.Join(palDir(t), "libpal.so"), testELF{machine: m}, 0o755)
	escape := filepath.Join(dir, "escape.so")
	os.Symlink(outside, escape)
	dirs := []string{dir}

	for _, path := range []string{good, nested, link, filepath.Join(linkedDir, "libpal.so")} {
		if err := (&Settings{Type: "sim", RuntimePath: path}).CheckRuntimePath(dirs); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	if err := (&Settings{Type: "sim", RuntimePath: filepath.Join(linkedDir, "libpal.so")}).CheckRuntimePath([]string{linkedDir}); err != nil {
		t.Errorf("PAL directory given as a link: %v", err)
	}
	if err := (&Settings{Type: "sim", RuntimePath: "builtin:wasm"}).CheckRuntimePath(nil); err != nil {
		t.Errorf("builtin: %v", err)
	}
	refused := map[string]string{
		"missing":                     filepath.Join(dir, "missing.so"),
		"directory":                   filepath.Join(dir, "v1"),
		"the PAL directory itself":    dir,
		"symbolic link loop":          loop,
		"not ELF":                     text,
		"ELF executable":              exe,
		"group-writable":              gw,
		"owned by a user":             foreign,
		"in a user's directory":       userPAL,
		"FIFO":                        fifo,
		"device":                      "/dev/null",
		"host file":                   "/etc/shadow",
		"host library":                "/lib/x86_64-linux-gnu/libc.so.6",
		"outside, same name":          outside,
		"link out of the directory":   escape,
		"dot-dot out":                 dir + "/../../etc/shadow",
		"relative":                    "libpal.so",
		"allowed directory not there": filepath.Join(dir, "x.so"),
	}
	want := ""
	for name, path := range refused {
		err := (&Settings{Type: "sim", RuntimePath: path}).CheckRuntimePath(dirs)
		var na *NotAllowedPALError
		if !errors.As(err, &na) {
			t.Errorf("%s (%s): %v, want a NotAllowedPALError", name, path, err)
			continue
		}
		msg := strings.ReplaceAll(err.Error(), strconv.Quote(path), "PATH")
		if want == "" {
			want = msg
		}
		if msg != want {
			t.Errorf("%s: %q\nwant the same text as the others: %q", name, msg, want)
		}
	}
	if !strings.Contains(want, dir) || !strings.Contains(want, "pal_dirs") {
		t.Errorf("refusal %q does not name the allowed directories", want)
	}
	// No directory allowed: no PAL at all.
	if err := (&Settings{Type: "sim", RuntimePath: good}).CheckRuntimePath([]string{}); err == nil || !strings.Contains(err.Error(), "none are configured") {
		t.Errorf("no PAL directories: %v", err)
	}
	// "/" is never a PAL directory, even when a configured directory resolves to it.
	rootLink := filepath.Join(palDir(t), "root")
	os.Symlink("/", rootLink)
	if err := (&Settings{Type: "sim", RuntimePath: good}).CheckRuntimePath([]string{rootLink}); err == nil {
		t.Error("a PAL directory resolving to / allowed a PAL")
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		p    Process
		want Resolved
		err  string
	}{
		{p: Process{Path: "/app/x"}, want: Resolved{Path: "/app/x", Dir: "/", Args: []string{"/app/x"}}},
		{p: Process{Path: "x", Dir: "/app", Args: []string{"x", "a"}}, want: Resolved{Path: "/app/x", Dir: "/app", Args: []string{"x", "a"}}},
		{p: Process{Path: "x", Dir: "app"}, err: "not absolute"},
		{p: Process{}, err: "empty"},
	} {
		got, err := tc.p.Resolve()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want %q", tc.p, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: %+v %v, want %+v", tc.p, got, err, tc.want)
		}
	}
}
