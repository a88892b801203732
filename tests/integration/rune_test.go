package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunExitStatus: rune run returns the container process's exit status exactly as runc does.
func TestRunExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
		out    string
	}{
		{"echo hello; exit 0", 0, "hello\n"},
		{"exit 3", 3, ""},
		{"exit 255", 255, ""},
		// PID 1 ignores signals it has no handler for, so a child shell is the one killed.
		{`sh -c 'kill -TERM $$'; exit $?`, 143, ""},
		{`sh -c 'kill -KILL $$'; exit $?`, 137, ""},
		{"echo err >&2; exit 1", 1, ""},
	} {
		for _, r := range []*runtimeBin{rune(t), runc(t)} {
			r.cleanup(t)
			dir, _ := bundle(t, "sh", "-c", tc.script)
			id := "exit-" + r.name
			res := r.run(t, "run", "-b", dir, id)
			if res.code != tc.want || res.stdout != tc.out {
				t.Errorf("%s run %q: code %d stdout %q stderr %q; want %d %q", r.name, tc.script, res.code, res.stdout, res.stderr, tc.want, tc.out)
			}
			assertNothingLeft(t, r, id, dir)
		}
	}
}

// TestLifecycleLikeRunc walks create, state, start, exec, pause, resume, kill, delete on both
// runtimes and compares what a caller sees at each step.
func TestLifecycleLikeRunc(t *testing.T) {
	for _, r := range []*runtimeBin{rune(t), runc(t)} {
		t.Run(r.name, func(t *testing.T) {
			r.cleanup(t)
			dir, _ := bundle(t, "sleep", "1000")
			id := "life-" + r.name
			if res := r.run(t, "create", "-b", dir, id); res.code != 0 {
				t.Fatalf("create: %d %s", res.code, res.stderr)
			}
			st := r.state(t, id)
			if st["status"] != "created" || st["pid"].(float64) <= 0 || st["bundle"] != dir || st["id"] != id {
				t.Fatalf("state after create: %v", st)
			}
			for _, key := range []string{"ociVersion", "rootfs", "created", "owner"} {
				if _, ok := st[key]; !ok {
					t.Errorf("state lacks %q: %v", key, st)
				}
			}
			if res := r.run(t, "start", id); res.code != 0 {
				t.Fatalf("start: %d %s", res.code, res.stderr)
			}
			r.waitStatus(t, id, "running")
			if res := r.run(t, "start", id); res.code != 1 || !strings.Contains(res.stderr, "cannot start an already running container") {
				t.Errorf("second start: %d %q", res.code, res.stderr)
			}
			res := r.run(t, "exec", id, "sh", "-c", `printf '%s|' "$@"; exit 5`, "x", "a b", "", "ü'\"")
			if res.code != 5 || res.stdout != "a b||ü'\"|" {
				t.Errorf("exec: %d %q %q", res.code, res.stdout, res.stderr)
			}
			if res := r.run(t, "exec", id, "/nonexistent"); res.code != 255 {
				t.Errorf("exec of a missing program: %d, want 255 (%s)", res.code, res.stderr)
			}
			if res := r.run(t, "pause", id); res.code != 0 {
				t.Fatalf("pause: %s", res.stderr)
			}
			r.waitStatus(t, id, "paused")
			if res := r.run(t, "exec", id, "true"); res.code != 255 || !strings.Contains(res.stderr, "paused") {
				t.Errorf("exec in paused container: %d %s", res.code, res.stderr)
			}
			if res := r.run(t, "resume", id); res.code != 0 {
				t.Fatalf("resume: %s", res.stderr)
			}
			list := r.run(t, "list")
			if !strings.HasPrefix(list.stdout, "ID   ") || !strings.Contains(list.stdout, id) || !strings.Contains(list.stdout, "running") {
				t.Errorf("list: %q", list.stdout)
			}
			ps := r.run(t, "ps", "--format", "json", id)
			if ps.code != 0 || !strings.HasPrefix(ps.stdout, "[") {
				t.Errorf("ps: %d %q", ps.code, ps.stdout)
			}
			if res := r.run(t, "delete", id); res.code != 1 || !strings.Contains(res.stderr, "cannot delete container "+id+" that is not stopped: running") {
				t.Errorf("delete of running container: %d %q", res.code, res.stderr)
			}
			if res := r.run(t, "kill", id, "KILL"); res.code != 0 {
				t.Fatalf("kill: %s", res.stderr)
			}
			r.waitStatus(t, id, "stopped")
			if st := r.state(t, id); st["pid"].(float64) != 0 {
				t.Errorf("stopped container reports pid %v, runc reports 0", st["pid"])
			}
			if res := r.run(t, "kill", id, "KILL"); res.code != 1 || !strings.Contains(res.stderr, "not running") {
				t.Errorf("kill of stopped container: %d %q", res.code, res.stderr)
			}
			if res := r.run(t, "delete", id); res.code != 0 {
				t.Fatalf("delete: %s", res.stderr)
			}
			if res := r.run(t, "state", id); res.code != 1 || !strings.Contains(res.stderr, "container does not exist") {
				t.Errorf("state after delete: %d %q", res.code, res.stderr)
			}
			assertNothingLeft(t, r, id, dir)
		})
	}
}

// TestBadInput: each mistake gets a clear error naming the problem and runc's exit status, and
// leaves nothing behind.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) // breaks the bundle
		id    string
		args  func(dir, id string) []string
		want  string // in rune's error
	}{
		{"malformed config", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": {`), 0o644)
		}, "bad1", runArgs, "config.json"},
		{"config is null", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`null`), 0o644)
		}, "bad2", runArgs, "config cannot be null"},
		{"no args", func(t *testing.T, dir string) {
			s := defaultSpec(t)
			s.Process.Args = nil
			writeSpec(t, dir, s)
		}, "bad3", runArgs, "args must not be empty"},
		{"relative cwd", func(t *testing.T, dir string) {
			s := defaultSpec(t)
			s.Process.Cwd = "tmp"
			writeSpec(t, dir, s)
		}, "bad4", runArgs, "Cwd must be an absolute path"},
		{"missing rootfs", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "rootfs"))
		}, "bad5", runArgs, "rootfs"},
		{"missing config", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
		}, "bad6", runArgs, "config.json not found"},
		{"entrypoint missing from rootfs", func(t *testing.T, dir string) {
			s := defaultSpec(t)
			s.Process.Terminal = false
			s.Process.Args = []string{"/no/such/program"}
			writeSpec(t, dir, s)
		}, "bad7", runArgs, "/no/such/program"},
		{"id with slash", nil, "a/b", runArgs, "invalid container ID format"},
		{"id dot-dot", nil, "..", runArgs, "invalid container ID format"},
		{"unknown id", nil, "nosuch", func(dir, id string) []string { return []string{"state", id} }, "container does not exist"},
		{"kill unknown id", nil, "nosuch2", func(dir, id string) []string { return []string{"kill", id} }, "container does not exist"},
		{"unknown mount type", func(t *testing.T, dir string) {
			s := defaultSpec(t)
			s.Process.Terminal = false
			s.Process.Args = []string{"true"}
			s.Mounts = append(s.Mounts, specsMount("/mnt", "nosuchfs", "none"))
			writeSpec(t, dir, s)
		}, "bad8", runArgs, "dst=/mnt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var codes []int
			runcPanicked := false
			for _, r := range []*runtimeBin{rune(t), runc(t)} {
				r.cleanup(t)
				dir, _ := bundle(t, "true")
				if tc.setup != nil {
					tc.setup(t, dir)
				}
				res := r.run(t, tc.args(dir, tc.id)...)
				codes = append(codes, res.code)
				if r.name == "runc" && strings.Contains(res.stderr, "panic:") {
					runcPanicked = true
				}
				if r.name == "rune" && (res.code == 0 || !strings.Contains(res.stderr, tc.want)) {
					t.Errorf("rune %v: code %d, stderr %q; want an error mentioning %q", tc.args(dir, tc.id), res.code, res.stderr, tc.want)
				}
				if r.name == "rune" && strings.Contains(res.stderr, "panic") {
					t.Errorf("rune panicked: %s", res.stderr)
				}
				assertNothingLeft(t, r, tc.id, dir)
			}
			// runc exits 1 on every command failure; where runc 1.1 panics instead (a null config),
			// rune must still give the ordinary failure status.
			if codes[0] != 1 || (!runcPanicked && codes[0] != codes[1]) {
				t.Errorf("exit status: rune %d, runc %d (panicked: %v)", codes[0], codes[1], runcPanicked)
			}
		})
	}
}

func runArgs(dir, id string) []string { return []string{"run", "-b", dir, id} }

// TestDuplicateAndBadSignal covers the mistakes made against an existing container.
func TestDuplicateAndBadSignal(t *testing.T) {
	for _, r := range []*runtimeBin{rune(t), runc(t)} {
		r.cleanup(t)
		dir, _ := bundle(t, "sleep", "100")
		if res := r.run(t, "create", "-b", dir, "dup"); res.code != 0 {
			t.Fatalf("%s create: %s", r.name, res.stderr)
		}
		pid := r.state(t, "dup")["pid"]
		res := r.run(t, "create", "-b", dir, "dup")
		if res.code != 1 || !strings.Contains(res.stderr, "already exists") {
			t.Errorf("%s duplicate create: %d %q", r.name, res.code, res.stderr)
		}
		if st := r.state(t, "dup"); st["pid"] != pid || st["status"] != "created" {
			t.Errorf("%s: duplicate create disturbed the first container: %v", r.name, st)
		}
		for _, sig := range []string{"FOO", "SIGNOPE", "0x9"} {
			res := r.run(t, "kill", "dup", sig)
			if res.code != 1 || !strings.Contains(res.stderr, "signal") {
				t.Errorf("%s kill %s: %d %q", r.name, sig, res.code, res.stderr)
			}
		}
		if res := r.run(t, "delete", "dup"); res.code != 0 {
			t.Errorf("%s delete of created container: %d %s", r.name, res.code, res.stderr)
		}
		assertNothingLeft(t, r, "dup", dir)
	}
}

// TestForegroundSignals: rune run forwards signals to the container process.
func TestForegroundSignals(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	dir, _ := bundle(t, "sh", "-c", `trap 'echo got-usr1; exit 42' USR1; echo ready; while :; do sleep 0.1; done`)
	res := runWithSignal(t, r, dir, "sig", "ready", "USR1")
	if res.code != 42 || !strings.Contains(res.stdout, "got-usr1") {
		t.Errorf("run with SIGUSR1: code %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
	assertNothingLeft(t, r, "sig", dir)
}

// TestCheckpointNeedsCRIU: without CRIU, checkpoint and restore say so instead of failing deep inside.
// (With Debian's CRIU 3.17 on this kernel, CRIU itself cannot dump, for runc as for rune.)
func TestCheckpointNeedsCRIU(t *testing.T) {
	r := rune(t)
	r.cleanup(t)
	dir, _ := bundle(t, "sleep", "100")
	if res := r.run(t, "run", "-d", "-b", dir, "ckpt"); res.code != 0 {
		t.Fatalf("run -d: %s", res.stderr)
	}
	t.Setenv("PATH", "/nonexistent")
	for _, cmd := range [][]string{{"checkpoint", "ckpt"}, {"restore", "-b", dir, "ckpt2"}} {
		res := r.run(t, cmd...)
		if res.code != 1 || !strings.Contains(res.stderr, "needs CRIU") {
			t.Errorf("%v without CRIU: %d %q", cmd, res.code, res.stderr)
		}
	}
	if st := r.state(t, "ckpt"); st["status"] != "running" {
		t.Errorf("failed checkpoint disturbed the container: %v", st)
	}
}
