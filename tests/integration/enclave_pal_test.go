package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/harness"

	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

var (
	palOnce    sync.Once
	palBuilder *paltest.Builder
)

// buildPAL builds the reference PAL for o, once per test binary, in a temporary directory (which rune
// refuses to load from: see installPAL).
func buildPAL(t *testing.T, o paltest.Options) string {
	t.Helper()
	palOnce.Do(func() {
		dir, err := harness.BinaryTempDir("pal-builds")
		if err != nil {
			t.Fatal(err)
		}
		palBuilder = paltest.NewBuilder(dir)
	})
	p, err := palBuilder.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// palDir makes a PAL directory for this test (root's, as rune requires of a PAL directory) and
// points rune, through $RUNE_CONFIG, to a configuration that allows it and nothing else.
func palDir(t *testing.T) string {
	t.Helper()
	dir, cfg := harness.PALConfig(t)
	t.Setenv("RUNE_CONFIG", cfg)
	return dir
}

// installPAL builds the reference PAL for o and installs it in dir, as a node operator would.
func installPAL(t *testing.T, dir string, o paltest.Options) string {
	t.Helper()
	built := buildPAL(t, o)
	p := filepath.Join(dir, filepath.Base(built))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	p, err := paltest.Copy(built, dir, filepath.Base(built))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEnclavePAL runs busybox through the reference PAL of each API version and checks what the PAL was
// asked to do, from its trace, beside the container's output and exit status.
func TestEnclavePAL(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	dir := palDir(t)
	for _, v := range []int{1, 2, 3} {
		t.Run("v"+strconv.Itoa(v), func(t *testing.T) {
			pal := installPAL(t, dir, paltest.Options{Version: v})
			env := []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal, "ENCLAVE_RUNTIME_ARGS=trace=/tmp/pal.trace", "ENCLAVE_RUNTIME_LOGLEVEL=debug"}
			dir, _ := enclaveBundle(t, env, "/bin/sh", "-c", `echo "pal says $1"; exit 5`, "sh", "hi there")
			id := "pal-v" + strconv.Itoa(v)
			res := r.run(t, "run", "-b", dir, id)
			if res.code != 5 || res.stdout != "pal says hi there\n" {
				t.Errorf("run through PAL v%d: %d %q %s", v, res.code, res.stdout, res.stderr)
			}
			trace, err := os.ReadFile(filepath.Join(dir, "rootfs", "tmp", "pal.trace"))
			if err != nil {
				t.Fatalf("PAL trace: %v", err)
			}
			calls := traceCalls(string(trace))
			want := map[int][]string{
				1: {"pal_get_version", "pal_init", "pal_exec", "pal_destroy"},
				2: {"pal_get_version", "pal_init", "pal_create_process", "pal_exec", "pal_destroy"},
				3: {"pal_get_version", "pal_init", "pal_create_process", "pal_exec", "pal_destroy"},
			}[v]
			if strings.Join(calls, " ") != strings.Join(want, " ") {
				t.Errorf("PAL v%d calls %v, want %v\n%s", v, calls, want, trace)
			}
			if !strings.Contains(string(trace), "debug") {
				t.Errorf("PAL v%d did not receive the log level: %s", v, trace)
			}
			assertNothingLeft(t, r, id, dir)
		})
	}
	// kill reaches the process the PAL runs (v2 and v3 have pal_kill).
	pal := installPAL(t, dir, paltest.Options{Version: 3})
	dir, _ = enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal, "ENCLAVE_RUNTIME_ARGS=trace=/tmp/pal.trace"}, "sleep", "1000")
	if res := r.run(t, "create", "-b", dir, "pal-kill"); res.code != 0 {
		t.Fatalf("create: %s", res.stderr)
	}
	if res := r.run(t, "start", "pal-kill"); res.code != 0 {
		t.Fatalf("start: %s", res.stderr)
	}
	if res := r.run(t, "exec", "pal-kill", "sh", "-c", "echo exec via pal; exit 6"); res.code != 6 || res.stdout != "exec via pal\n" {
		t.Errorf("exec through PAL: %d %q %s", res.code, res.stdout, res.stderr)
	}
	r.run(t, "kill", "pal-kill", "TERM")
	r.waitStatus(t, "pal-kill", "stopped")
	trace, _ := os.ReadFile(filepath.Join(dir, "rootfs", "tmp", "pal.trace"))
	if !strings.Contains(string(trace), "pal_kill") {
		t.Errorf("SIGTERM did not become pal_kill:\n%s", trace)
	}
	r.run(t, "delete", "pal-kill")
	assertNothingLeft(t, r, "pal-kill", dir)
}

func traceCalls(trace string) []string {
	var calls []string
	for _, line := range strings.Split(trace, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "pal_") {
			calls = append(calls, strings.TrimSuffix(f[0], ":"))
		}
	}
	return calls
}

// TestEnclaveBadInput: each bad enclave setting fails create with a clear error, and nothing is left
// behind: no state, cgroup, mount or process.
func TestEnclaveBadInput(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	simPlatform(t, r)
	pals := palDir(t)
	loop := filepath.Join(pals, "loop.so")
	os.Symlink(loop, loop)
	notELF := filepath.Join(pals, "text.so")
	os.WriteFile(notELF, []byte("not a library\n"), 0o755)
	// Every PAL path rune may not load gets the same answer (the PAL path and the allowed
	// directories), whatever is at that path: missing, a directory, a loop, not an ELF library, a
	// host file, a real PAL outside the allowed directories.
	notAllowed := "is not an allowed PAL: a PAL must be an ELF shared library owned by root and writable only by root, " +
		"in one of the PAL directories ([enclave] pal_dirs: " + pals + ")"
	badWasm := "invalid wasm"
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown type", []string{"ENCLAVE_TYPE=quantum", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, nil, `unknown enclave type "quantum"`},
		{"hardware type absent", []string{"ENCLAVE_TYPE=tdx", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, nil, "needs TEE hardware"},
		{"sgx absent", []string{"ENCLAVE_TYPE=intelSgx", "ENCLAVE_RUNTIME_PATH=/nonexistent/libpal.so"}, nil, "/dev/sgx_enclave"},
		{"no runtime", []string{"ENCLAVE_TYPE=sim"}, nil, "ENCLAVE_RUNTIME_PATH is required"},
		{"bad log level", append(simWasm(), "ENCLAVE_RUNTIME_LOGLEVEL=loud"), nil, `invalid ENCLAVE_RUNTIME_LOGLEVEL "loud"`},
		{"native outside sim", nil, nil, ""}, // filled below: needs hardware to reach the check
		{"unknown builtin", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:jvm"}, nil, `unknown built-in enclave runtime "builtin:jvm"`},
		{"missing PAL", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + filepath.Join(pals, "nope.so")}, nil, filepath.Join(pals, "nope.so") + `" ` + notAllowed},
		{"PAL is a directory", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pals}, nil, pals + `" ` + notAllowed},
		{"PAL symlink loop", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + loop}, nil, loop + `" ` + notAllowed},
		{"PAL not ELF", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + notELF}, nil, notELF + `" ` + notAllowed},
		{"PAL outside the PAL directories", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + buildPAL(t, paltest.Options{Version: 3})}, nil, notAllowed},
		{"host file as PAL", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=/etc/shadow"}, nil, `"/etc/shadow" ` + notAllowed},
		{"PAL version 4", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + installPAL(t, pals, paltest.Options{Version: 3, ReportedVersion: 4})}, nil, "4"},
		{"PAL missing symbol", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + installPAL(t, pals, paltest.Options{Version: 2, Omit: []string{"pal_create_process"}})}, nil, "pal_create_process"},
		{"pal_init fails", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + installPAL(t, pals, paltest.Options{Version: 3, Fail: "pal_init:22"})}, nil, "pal_init: -22"},
		{"pal_init crashes", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + installPAL(t, pals, paltest.Options{Version: 3, Crash: "pal_init"})}, nil, "crashed in pal_init: SIGSEGV"},
		{"invalid wasm", simWasm(), []string{"/app/bad.wasm"}, "invalid wasm"},
		{"entrypoint missing", simWasm(), []string{"/app/missing.wasm"}, "/app/missing.wasm"},
		{"native entrypoint missing", []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}, []string{"nosuchprogram"}, "nosuchprogram"},
	}
	for _, tc := range cases {
		if tc.want == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args == nil {
				args = []string{"/app/prog.wasm", "exit", "0"}
			}
			dir, _ := enclaveBundle(t, tc.env, args...)
			os.WriteFile(filepath.Join(dir, "rootfs", "app", "bad.wasm"), []byte(badWasm), 0o644)
			id := "bad-enclave"
			res := r.run(t, "create", "-b", dir, id)
			if res.code != 1 || !strings.Contains(unquote(res.stderr), tc.want) {
				t.Errorf("create: code %d stderr %q; want 1 and %q", res.code, res.stderr, tc.want)
			}
			if strings.Contains(res.stderr, "panic:") || strings.Contains(res.stderr, "goroutine ") {
				t.Errorf("rune crashed: %s", res.stderr)
			}
			assertNothingLeft(t, r, id, dir)
		})
	}
}

// unquote undoes logrus's quoting of the message, so expectations read like the error itself.
func unquote(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\"`, `"`), `\\`, `\`)
}
