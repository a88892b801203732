package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/enclavehost"
)

// run parses args (global flags, then the command's) as rune would and calls action with the
// command's context.
func run(t *testing.T, cmd cli.Command, args []string, action func(c *cli.Context) error) error {
	t.Helper()
	app := newApp()
	app.Before = nil
	cmd.Action = action
	app.Commands = []cli.Command{cmd}
	return app.Run(append([]string{"rune"}, args...))
}

func TestParseSignal(t *testing.T) {
	for raw, want := range map[string]unix.Signal{"9": unix.SIGKILL, "KILL": unix.SIGKILL, "sigterm": unix.SIGTERM, "SIGUSR1": unix.SIGUSR1, "0": 0, "hup": unix.SIGHUP} {
		if got, err := parseSignal(raw); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", raw, got, err, want)
		}
	}
	for _, raw := range []string{"-1", "65", "SIGNOPE", ""} {
		if _, err := parseSignal(raw); err == nil {
			t.Errorf("parseSignal(%q) accepted", raw)
		}
	}
}

func TestSubCgroupPaths(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want map[string]string
		err  string
	}{
		{nil, nil, ""},
		{[]string{"sub"}, map[string]string{"": "sub"}, ""},
		{[]string{"cpu,memory:a", "pids:b"}, map[string]string{"cpu": "a", "memory": "a", "pids": "b"}, ""},
		{[]string{"a", "b"}, nil, "missing <controller>: prefix"},
		{[]string{":a"}, nil, "empty <controller> prefix"},
		{[]string{"cpu:a", "cpu:b"}, nil, "controller cpu specified multiple times"},
	} {
		got, err := subCgroupPaths(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.args, got, err, tc.want)
		}
	}
}

// TestValidID: delete removes a state directory by id, so an id may never name a path elsewhere.
func TestValidID(t *testing.T) {
	for _, id := range []string{"c1", "a.b", "x_y-z"} {
		if err := validID(id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x", "/abs"} {
		if err := validID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestPIDColumn(t *testing.T) {
	if i, err := pidColumn("UID PID PPID C STIME TTY TIME CMD"); err != nil || i != 1 {
		t.Errorf("pidColumn = %d, %v", i, err)
	}
	if _, err := pidColumn("USER COMMAND"); err == nil {
		t.Error("ps output without PID accepted")
	}
}

func TestRootlessFlag(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want bool
		err  string
	}{
		{"--rootless=true", true, ""},
		{"--rootless=false", false, ""},
		{"--rootless=maybe", false, `invalid --rootless value "maybe"`},
	} {
		var got bool
		var gotErr error
		err := run(t, cli.Command{Name: "x"}, []string{tc.arg, "x"}, func(c *cli.Context) error {
			got, gotErr = rootlessCgroups(c)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if tc.err != "" {
			if gotErr == nil || !strings.Contains(gotErr.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.arg, gotErr, tc.err)
			}
			continue
		}
		if gotErr != nil || got != tc.want {
			t.Errorf("%s: %v, %v", tc.arg, got, gotErr)
		}
	}
}

// TestManifestFlags: the flags and the environment the shim sets (go-runc passes no arguments of
// its choosing) give the same policy; a trust file named either way must exist.
func TestManifestFlags(t *testing.T) {
	policy := func(env map[string]string, args ...string) enclavehost.ManifestPolicy {
		for k, v := range env {
			t.Setenv(k, v)
		}
		var p enclavehost.ManifestPolicy
		if err := run(t, cli.Command{Name: "x"}, append(args, "x"), func(c *cli.Context) error {
			p = manifestPolicyFrom(c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := policy(nil); p.TrustNamed || p.Require || p.AllowEphemeral || p.TrustFile == "" {
		t.Errorf("defaults: %+v", p)
	}
	want := enclavehost.ManifestPolicy{TrustFile: "/t.pem", TrustNamed: true, Require: true, AllowEphemeral: true}
	if p := policy(nil, "--manifest-trust", "/t.pem", "--require-manifest", "--manifest-allow-ephemeral"); p != want {
		t.Errorf("flags: %+v, want %+v", p, want)
	}
	if p := policy(map[string]string{envManifestTrust: "/t.pem", envRequireManifest: "true", envManifestAllowEphemeral: "true"}); p != want {
		t.Errorf("environment: %+v, want %+v", p, want)
	}
}

func TestCheckArgs(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	stdout := os.Stdout
	os.Stdout = devNull // checkArgs prints usage, as runc does
	defer func() { os.Stdout = stdout }()
	for _, tc := range []struct {
		args     []string
		expected int
		kind     int
		err      string
	}{
		{[]string{"a"}, 1, exactArgs, ""},
		{nil, 1, exactArgs, `"x" requires exactly 1 argument(s)`},
		{[]string{"a", "b"}, 1, minArgs, ""},
		{nil, 1, minArgs, `"x" requires a minimum of 1 argument(s)`},
		{[]string{"a", "b", "c"}, 2, maxArgs, `"x" requires a maximum of 2 argument(s)`},
	} {
		var got error
		app := cli.NewApp()
		app.Writer = devNull
		app.Commands = []cli.Command{{Name: "x", Action: func(c *cli.Context) error {
			got = checkArgs(c, tc.expected, tc.kind)
			return nil
		}}}
		if err := app.Run(append([]string{"rune", "x"}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		if tc.err == "" && got != nil || tc.err != "" && (got == nil || !strings.Contains(got.Error(), tc.err)) {
			t.Errorf("%q (%d, %d): %v, want %q", tc.args, tc.expected, tc.kind, got, tc.err)
		}
	}
}

func TestUpdateFlags(t *testing.T) {
	var r specs.LinuxResources
	r.BlockIO, r.CPU, r.Memory, r.Pids = &specs.LinuxBlockIO{}, &specs.LinuxCPU{}, &specs.LinuxMemory{}, &specs.LinuxPids{}
	err := run(t, updateCommand, []string{"update", "--memory", "64M", "--memory-swap", "-1", "--cpu-quota", "50000", "--cpu-period", "100000",
		"--cpuset-cpus", "0-1", "--pids-limit", "10", "--blkio-weight", "300", "c1"}, func(c *cli.Context) error {
		return resourcesFromFlags(c, &r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != -1 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 ||
		r.CPU.Cpus != "0-1" || *r.Pids.Limit != 10 || *r.BlockIO.Weight != 300 {
		t.Errorf("resources %+v %+v %+v", *r.Memory, *r.CPU, *r.Pids)
	}
	err = run(t, updateCommand, []string{"update", "--cpu-period", "soon", "c1"}, func(c *cli.Context) error {
		return resourcesFromFlags(c, &r)
	})
	if err == nil || !strings.Contains(err.Error(), "invalid value for cpu-period") {
		t.Errorf("bad --cpu-period: %v", err)
	}
}

// TestExecProcessFile: `exec -p process.json` takes the process from the file, validated.
func TestExecProcessFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"args":["/bin/true"],"cwd":"/","env":["A=1"]}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"args":[],"cwd":"/"}`), 0o644)
	spec := func(path string) (*specs.Process, error) {
		var p *specs.Process
		var perr error
		err := run(t, execCommand, []string{"exec", "-p", path, "c1"}, func(c *cli.Context) error {
			p, perr = execSpec(c, nil)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return p, perr
	}
	if p, err := spec(good); err != nil || p.Args[0] != "/bin/true" || p.Env[0] != "A=1" {
		t.Errorf("good process: %+v, %v", p, err)
	}
	if _, err := spec(bad); err == nil {
		t.Error("process without args accepted")
	}
	if _, err := spec(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing process file accepted")
	}
}
