package security

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Exec confinement. Party: the pod author (who chooses the container's config and, through the
// orchestrator, what an exec asks for) and any unprivileged process inside an enclave container.
// Hole: PID 1 of an enclave container (the init-runelet) used to run every exec'd process itself,
// so the process got PID 1's capabilities, user, no_new_privs, seccomp and cgroup instead of the
// exec's, and PID 1 took exec requests from anyone in the container over /dev/.rune/agent.sock
// (mode 0666). Expected now: builtin:native and builtin:wasm exec'd processes have exactly what
// `runc exec` gives the same exec spec; a PAL exec (which must run in PID 1's enclave) is refused
// unless the exec asks for exactly the enclave's confinement; the agent socket serves no exec.

// dockerCaps is Docker's default capability set: a realistic PID 1, with CAP_SETUID and
// CAP_SETGID, which a runelet needs to run a process as another user.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// statusFields are the lines of /proc/<pid>/status that make up a process's confinement.
var statusFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
	"NoNewPrivs", "Seccomp", "Seccomp_filters"}

// blockChmod is a seccomp profile that allows everything but changing a file's mode, which the
// runelet used to need for its agent socket.
func blockChmod() *specs.LinuxSeccomp {
	eperm := uint(1)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{{
			Names:    []string{"chmod", "fchmod", "fchmodat", "fchmodat2"},
			Action:   specs.ActErrno,
			ErrnoRet: &eperm,
		}},
	}
}

// confine gives a bundle's process the confinement every container of these tests starts from.
func confine(spec *specs.Spec, seccomp bool) {
	spec.Process.NoNewPrivileges = false
	spec.Process.User = specs.User{UID: 0, GID: 0}
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: slices.Clone(dockerCaps), Effective: slices.Clone(dockerCaps), Permitted: slices.Clone(dockerCaps),
	}
	if seccomp {
		spec.Linux.Seccomp = blockChmod()
	}
}

// enclaveRune is rune with a sim platform key and a wasm cache of the test's own.
func enclaveRune(t *testing.T) *harness.Runtime {
	t.Helper()
	r := harness.Rune(t)
	tmp := t.TempDir()
	r.Env = append(r.Env, "RUNE_SIM_PLATFORM_KEY="+filepath.Join(tmp, "platform-key.pem"), "RUNE_CACHE_DIR="+filepath.Join(tmp, "cache"))
	r.Cleanup(t)
	return r
}

// referencePAL installs the reference PAL (API v3) in a PAL directory of this test and points rune,
// through RUNE_CONFIG, at a configuration that allows that directory: rune loads PALs only from
// root's PAL directories (tests/security/pal_paths_test.go).
func referencePAL(t *testing.T) string {
	t.Helper()
	dir, cfg := harness.PALConfig(t)
	t.Setenv("RUNE_CONFIG", cfg)
	return harness.InstallPAL(t, dir, "libpal.so", paltest.Options{Version: 3})
}

// enclaveKind is one enclave runtime under test: its settings, its entrypoint, and how an exec'd
// process prints files.
type enclaveKind struct {
	name    string
	runtime func(t *testing.T) string
	entry   []string
	cat     []string
}

var (
	nativeKind = enclaveKind{"native", func(*testing.T) string { return "builtin:native" }, []string{"sleep", "1000"}, []string{"cat"}}
	wasmKind   = enclaveKind{"wasm", func(*testing.T) string { return "builtin:wasm" }, []string{"/app/probe.wasm", "sleep"}, []string{"/app/probe.wasm", "cat"}}
	palKind    = enclaveKind{"pal", referencePAL, []string{"sleep", "1000"}, []string{"cat"}}
)

// startEnclave runs an enclave container of kind k, PID 1 as root with Docker's default
// capabilities, with the wasm probe and the agent client in its rootfs.
func startEnclave(t *testing.T, r *harness.Runtime, k enclaveKind, id string, seccomp bool) string {
	t.Helper()
	dir, spec := harness.Bundle(t, k.entry...)
	confine(spec, seccomp)
	spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+k.runtime(t))
	harness.WriteSpec(t, dir, spec)
	copyInto(t, dir, harness.BuildGo(t, "./tests/security/testdata/execprobe", "wasip1", "wasm"), "app/probe.wasm")
	copyInto(t, dir, harness.BuildGo(t, "./tests/security/testdata/agentclient", "linux", "amd64"), "app/agentclient")
	r.Must(t, "run", "-d", "-b", dir, id)
	return dir
}

// startOrdinary runs an ordinary container under runc with the same confinement.
func startOrdinary(t *testing.T, r *harness.Runtime, id string, seccomp bool) string {
	t.Helper()
	dir, spec := harness.Bundle(t, "sleep", "1000")
	confine(spec, seccomp)
	harness.WriteSpec(t, dir, spec)
	r.Must(t, "run", "-d", "-b", dir, id)
	return dir
}

func copyInto(t *testing.T, bundle, src, rel string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	harness.WriteRootfsFile(t, bundle, rel, b, 0o755)
}

// stop deletes a container and checks that nothing of it is left.
func stop(t *testing.T, r *harness.Runtime, id, bundle string) {
	t.Helper()
	r.Run(t, "delete", "-f", id)
	harness.AssertNothingLeft(t, r, id, bundle)
}

// confinement is what /proc/self/status and /proc/self/cgroup say about a process, with the
// container's id replaced by "ID" so that two containers compare.
func confinement(out, id string) map[string]string {
	m := map[string]string{}
	var cgroups []string
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && slices.Contains(statusFields, k) {
			m[k] = strings.Join(strings.Fields(v), " ")
			continue
		}
		// /proc/self/cgroup: "N:controllers:/path".
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && regexp.MustCompile(`^[0-9]+$`).MatchString(f[0]) {
			cgroups = append(cgroups, f[1]+":"+strings.ReplaceAll(f[2], id, "ID"))
		}
	}
	sort.Strings(cgroups)
	if len(cgroups) > 0 {
		m["cgroup"] = strings.Join(cgroups, " ")
	}
	return m
}

// diffConfinement lists the fields in which got differs from want.
func diffConfinement(got, want map[string]string) []string {
	var d []string
	keys := append(slices.Clone(statusFields), "cgroup")
	for _, k := range keys {
		if got[k] != want[k] {
			d = append(d, k+": got "+q(got[k])+", want "+q(want[k]))
		}
	}
	return d
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// execCase is one exec spec, given to rune and runc alike.
type execCase struct {
	name  string
	flags func(t *testing.T, args []string) []string // exec flags before the container id
	// subCgroup names a memory sub-cgroup the case runs in (created in both containers first).
	subCgroup string
}

func execCases() []execCase {
	none := func(*testing.T, []string) []string { return nil }
	return []execCase{
		{name: "default", flags: none},
		{name: "cap", flags: func(*testing.T, []string) []string { return []string{"--cap", "CAP_NET_ADMIN"} }},
		{name: "process-without-caps", flags: func(t *testing.T, args []string) []string {
			p := specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{}, Effective: []string{}, Permitted: []string{}, Inheritable: []string{}, Ambient: []string{},
			}}
			b, _ := json.Marshal(&p)
			path := filepath.Join(t.TempDir(), "process.json")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--process", path}
		}},
		{name: "user", flags: func(*testing.T, []string) []string { return []string{"-u", "1000:1001", "-g", "2000"} }},
		{name: "no-new-privs", flags: func(*testing.T, []string) []string { return []string{"--no-new-privs"} }},
		{name: "sub-cgroup", flags: func(*testing.T, []string) []string { return []string{"--cgroup", "memory:sub"} }, subCgroup: "sub"},
	}
}

// execArgs is the exec command line: flags, the id, then args unless --process carries them.
func execArgs(flags []string, id string, args []string) []string {
	out := append([]string{"exec"}, flags...)
	out = append(out, id)
	if !slices.Contains(flags, "--process") {
		out = append(out, args...)
	}
	return out
}

// makeSubCgroup creates name in the memory cgroup of container id's PID 1.
func makeSubCgroup(t *testing.T, r *harness.Runtime, id, name string) {
	t.Helper()
	pid := int(r.State(t, id)["pid"].(float64))
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
			if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup/memory", f[2], name), 0o755); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no memory cgroup for %s in %s", id, b)
}

var probeFiles = []string{"/proc/self/status", "/proc/self/cgroup"}

// TestExecConfinementMatchesRunc (pod author): every exec spec (--cap, --process without
// capabilities, -u with extra groups, --no-new-privs, --cgroup, the container's seccomp profile)
// gives the builtin:native and builtin:wasm enclave process exactly the confinement runc exec
// gives the same spec in an ordinary container, field by field. Before the fix the enclave process
// had PID 1's (CapBnd/CapEff/NoNewPrivs/cgroup of PID 1 whatever the exec asked), and with the
// chmod-blocking profile exec failed outright (PID 1 could not chmod its agent socket).
func TestExecConfinementMatchesRunc(t *testing.T) {
	runc := harness.Runc(t)
	runc.Cleanup(t)
	rune := enclaveRune(t)
	want := map[string]map[string]string{}
	wantID := map[string]string{}
	for _, sc := range []bool{false, true} {
		id := "runc-execconf"
		if sc {
			id += "-seccomp"
		}
		dir := startOrdinary(t, runc, id, sc)
		cases := execCases()
		if sc {
			cases = cases[:1]
		}
		for _, c := range cases {
			if c.subCgroup != "" {
				makeSubCgroup(t, runc, id, c.subCgroup)
			}
			args := append([]string{"sh", "-c", `id; exec cat "$@"`, "sh"}, probeFiles...)
			res := runc.Run(t, execArgs(c.flags(t, args), id, args)...)
			if res.Code != 0 {
				t.Fatalf("runc exec %s: %d %s", c.name, res.Code, res.Stderr)
			}
			key := c.name
			if sc {
				key = "seccomp"
			}
			want[key] = confinement(res.Stdout, id)
			wantID[key] = strings.SplitN(res.Stdout, "\n", 2)[0]
		}
		if sc {
			res := runc.Run(t, "exec", id, "sh", "-c", "touch /tmp/f; chmod 600 /tmp/f; echo chmod=$?")
			want["chmod"] = map[string]string{"out": res.Stdout}
		}
		stop(t, runc, id, dir)
	}
	if want["seccomp"]["Seccomp"] != "2" || want["default"]["Seccomp"] != "0" || want["user"]["Uid"] != "1000 1000 1000 1000" {
		t.Fatalf("runc's reference runs are not what this test assumes: %v", want)
	}

	for _, k := range []enclaveKind{nativeKind, wasmKind} {
		t.Run(k.name, func(t *testing.T) {
			for _, sc := range []bool{false, true} {
				id := "execconf-" + k.name
				if sc {
					id += "-seccomp"
				}
				dir := startEnclave(t, rune, k, id, sc)
				cases := execCases()
				if sc {
					cases = cases[:1]
				}
				for _, c := range cases {
					if c.subCgroup != "" {
						makeSubCgroup(t, rune, id, c.subCgroup)
					}
					args := append(slices.Clone(k.cat), probeFiles...)
					if k.name == "native" {
						args = append([]string{"sh", "-c", `id; exec cat "$@"`, "sh"}, probeFiles...)
					}
					key := c.name
					if sc {
						key = "seccomp"
					}
					res := rune.Run(t, execArgs(c.flags(t, args), id, args)...)
					if res.Code != 0 {
						t.Errorf("%s: rune exec: %d %s", key, res.Code, res.Stderr)
						continue
					}
					got := confinement(res.Stdout, id)
					if d := diffConfinement(got, want[key]); len(d) > 0 {
						t.Errorf("%s: the enclave process's confinement differs from runc exec's:\n  %s", key, strings.Join(d, "\n  "))
					}
					if k.name == "native" {
						if line := strings.SplitN(res.Stdout, "\n", 2)[0]; line != wantID[key] {
							t.Errorf("%s: id says %q, runc exec's %q", key, line, wantID[key])
						}
					}
				}
				if sc && k.name == "native" {
					res := rune.Run(t, "exec", id, "sh", "-c", "touch /tmp/f; chmod 600 /tmp/f; echo chmod=$?")
					if res.Stdout != want["chmod"]["out"] {
						t.Errorf("chmod under the container's seccomp profile: %q, runc exec: %q", res.Stdout, want["chmod"]["out"])
					}
				}
				stop(t, rune, id, dir)
			}
		})
	}
}

// TestExecConfinementPAL (pod author): a PAL runs exec'd processes inside its enclave, which lives
// in PID 1, so their confinement is PID 1's. An exec that asks for exactly that runs (and matches
// runc exec of the same spec); one that asks for anything else (another user, fewer or more
// capabilities, no_new_privs, a sub-cgroup) is refused with the reason instead of silently running
// with PID 1's. Before the fix all of them ran as PID 1: root, Docker's capabilities.
func TestExecConfinementPAL(t *testing.T) {
	runc := harness.Runc(t)
	runc.Cleanup(t)
	rune := enclaveRune(t)
	args := append([]string{"cat"}, probeFiles...)

	rdir := startOrdinary(t, runc, "runc-execconf-pal", false)
	res := runc.Must(t, "exec", "runc-execconf-pal", "cat", probeFiles[0], probeFiles[1])
	want := confinement(res.Stdout, "runc-execconf-pal")
	stop(t, runc, "runc-execconf-pal", rdir)

	id := "execconf-pal"
	dir := startEnclave(t, rune, palKind, id, false)
	res = rune.Run(t, append([]string{"exec", id}, args...)...)
	if res.Code != 0 {
		t.Fatalf("PAL exec with the container's own confinement: %d %s", res.Code, res.Stderr)
	}
	if d := diffConfinement(confinement(res.Stdout, id), want); len(d) > 0 {
		t.Errorf("PAL exec with the container's own confinement differs from runc exec's:\n  %s", strings.Join(d, "\n  "))
	}
	for _, c := range execCases()[1:] {
		if c.subCgroup != "" {
			makeSubCgroup(t, rune, id, c.subCgroup)
		}
		res := rune.Run(t, execArgs(c.flags(t, args), id, args)...)
		if res.Code == 0 || strings.Contains(res.Stdout, "CapEff") || !strings.Contains(res.Stderr, "runs exec'd processes with the enclave's own confinement") {
			t.Errorf("%s: PAL exec asking for another confinement than the enclave's: %d\nstdout: %s\nstderr: %s", c.name, res.Code, res.Stdout, res.Stderr)
		}
	}
	stop(t, rune, id, dir)
}

// TestAgentSocketExecFromContainer (unprivileged process in an enclave container): a process that
// made itself uid 1000 with an empty bounding set and no_new_privs connects to
// /dev/.rune/agent.sock and asks PID 1 (root, Docker's capabilities) for `cat /proc/self/status`.
// Expected: refused, because the agent socket in the container serves evidence only (an exec comes
// with a connection rune opened on the host socket, which the container cannot reach); PID 1's
// descriptors are out of its reach too. Before the fix PID 1 ran the process with PID 1's bounding
// set and without no_new_privs (native), as root with Docker's capabilities (PAL).
// builtin:wasm has no such caller: every process in its containers is a wasm guest, and WASI
// preview 1 cannot connect to a unix socket.
func TestAgentSocketExecFromContainer(t *testing.T) {
	rune := enclaveRune(t)
	for _, k := range []enclaveKind{nativeKind, palKind} {
		t.Run(k.name, func(t *testing.T) {
			id := "agent-" + k.name
			dir := startEnclave(t, rune, k, id, false)
			res := rune.Run(t, "exec", id, "/app/agentclient", "--drop", "cat", "/proc/self/status")
			if res.Code != 0 {
				t.Fatalf("attacker: %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
			}
			caller, rest, _ := strings.Cut(res.Stdout, "=== agent\n")
			agentOut, result, _ := strings.Cut(rest, "=== result: ")
			result, pid1, _ := strings.Cut(result, "\n")
			callerConf := confinement(caller, id)
			if callerConf["Uid"] != "1000 1000 1000 1000" || callerConf["CapBnd"] != "0000000000000000" || callerConf["NoNewPrivs"] != "1" {
				t.Fatalf("the attacker is not confined as this test assumes: %v\n%s", callerConf, res.Stdout)
			}
			if strings.HasPrefix(result, "exit ") {
				d := diffConfinement(confinement(agentOut, id), callerConf)
				t.Errorf("the agent ran a process for an unprivileged caller in the container (%s); it differs from the caller in:\n  %s", result, strings.Join(d, "\n  "))
			} else if result != `refused: operation "exec" is not served on this socket` {
				t.Errorf("agent exec from the container: %q, want refused as not served on the agent socket\n%s", result, res.Stdout)
			}
			if strings.Contains(pid1, "connected") {
				t.Errorf("the attacker reached a socket through PID 1's descriptors: %s", pid1)
			}
			stop(t, rune, id, dir)
		})
	}
}

// TestKillSignalZero: `kill <id> 0` checks that the container runs, as runc's does, for an enclave
// container too (it used to be refused as an invalid signal).
func TestKillSignalZero(t *testing.T) {
	runc := harness.Runc(t)
	runc.Cleanup(t)
	rune := enclaveRune(t)
	rdir := startOrdinary(t, runc, "runc-kill0", false)
	want := runc.Run(t, "kill", "runc-kill0", "0")
	edir := startEnclave(t, rune, nativeKind, "kill0", false)
	got := rune.Run(t, "kill", "kill0", "0")
	if got.Code != want.Code || want.Code != 0 {
		t.Errorf("kill 0 of a running container: rune %d %s, runc %d %s", got.Code, got.Stderr, want.Code, want.Stderr)
	}
	if st := rune.State(t, "kill0"); st["status"] != "running" {
		t.Errorf("kill 0 disturbed the enclave container: %v", st["status"])
	}
	stop(t, runc, "runc-kill0", rdir)
	stop(t, rune, "kill0", edir)
}

// TestExecInNonRootEnclave: exec works in an enclave container whose process runs as uid 1000
// without capabilities, for every kind of runtime, and the exec'd process is that user. (PID 1 as
// uid 1000 cannot create its agent socket in the root-owned /dev/.rune, which exec used to need.)
func TestExecInNonRootEnclave(t *testing.T) {
	rune := enclaveRune(t)
	for _, k := range []enclaveKind{nativeKind, wasmKind, palKind} {
		t.Run(k.name, func(t *testing.T) {
			id := "nonroot-" + k.name
			dir, spec := harness.Bundle(t, k.entry...)
			spec.Process.User = specs.User{UID: 1000, GID: 1000}
			spec.Process.Capabilities = &specs.LinuxCapabilities{}
			spec.Process.Env = append(spec.Process.Env, "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH="+k.runtime(t))
			harness.WriteSpec(t, dir, spec)
			copyInto(t, dir, harness.BuildGo(t, "./tests/security/testdata/execprobe", "wasip1", "wasm"), "app/probe.wasm")
			rune.Must(t, "run", "-d", "-b", dir, id)
			res := rune.Run(t, append(append([]string{"exec", id}, k.cat...), "/proc/self/status")...)
			if got := confinement(res.Stdout, id); res.Code != 0 || got["Uid"] != "1000 1000 1000 1000" || got["CapEff"] != "0000000000000000" {
				t.Errorf("exec in a uid-1000 enclave: %d %v %s", res.Code, got, res.Stderr)
			}
			// The workload's own evidence (native: PID 1's agent socket, which PID 1, running as
			// uid 1000, could not create while /dev/.rune was root's; wasm: the host import).
			if k.name != "pal" {
				goos, goarch, prog := "linux", "amd64", "/app/prog"
				if k.name == "wasm" {
					goos, goarch, prog = "wasip1", "wasm", "/app/prog.wasm"
				}
				copyInto(t, dir, harness.BuildGo(t, "./tests/integration/testdata/enclaveprog", goos, goarch), strings.TrimPrefix(prog, "/"))
				if res := rune.Run(t, "exec", id, prog, "evidence", "non-root"); res.Code != 0 || strings.TrimSpace(res.Stdout) == "" {
					t.Errorf("evidence in a uid-1000 enclave: %d %q %s", res.Code, res.Stdout, res.Stderr)
				}
			}
			stop(t, rune, id, dir)
		})
	}
}

// TestExecWorkloadEvidence: an exec'd workload still gets the enclave's evidence over its own
// report data (native: the agent socket; wasm: the inclavare.get_evidence import, which the exec'd
// runelet forwards to PID 1), verifying to the sim platform and binding the report data.
func TestExecWorkloadEvidence(t *testing.T) {
	rune := enclaveRune(t)
	res := rune.Must(t, "sim-platform-cert")
	blk, _ := pem.Decode([]byte(res.Stdout))
	if blk == nil {
		t.Fatalf("sim-platform-cert printed no PEM: %q", res.Stdout)
	}
	platform, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []enclaveKind{nativeKind, wasmKind} {
		t.Run(k.name, func(t *testing.T) {
			id := "evidence-" + k.name
			dir := startEnclave(t, rune, k, id, false)
			goos, goarch, prog := "linux", "amd64", "/app/prog"
			if k.name == "wasm" {
				goos, goarch, prog = "wasip1", "wasm", "/app/prog.wasm"
			}
			copyInto(t, dir, harness.BuildGo(t, "./tests/integration/testdata/enclaveprog", goos, goarch), strings.TrimPrefix(prog, "/"))
			res := rune.Run(t, "exec", id, prog, "evidence", "exec:"+k.name)
			raw, err := hex.DecodeString(strings.TrimSpace(res.Stdout))
			if res.Code != 0 || err != nil {
				t.Fatalf("exec'd workload's evidence: %d %q %s", res.Code, res.Stdout, res.Stderr)
			}
			result, err := (&sim.Verifier{}).Verify(context.Background(), raw, attestation.Options{SimRoots: []*x509.Certificate{platform}})
			if err != nil {
				t.Fatalf("evidence does not verify: %v", err)
			}
			var want [64]byte
			copy(want[:], "exec:"+k.name)
			if string(result.ReportData) != string(want[:]) {
				t.Errorf("report data %q, want %q", result.ReportData, want)
			}
			stop(t, rune, id, dir)
		})
	}
}

// TestExecSignalReachesEnclaveProcess: a signal to `rune exec` (which relays it to the exec'd
// runelet, as containerd's shim signals the exec's pid) ends the enclave process: the wasm instance
// the exec'd runelet hosts, and the PAL's process in PID 1 (pal_kill); exec exits with 128+SIGTERM.
func TestExecSignalReachesEnclaveProcess(t *testing.T) {
	rune := enclaveRune(t)
	for _, k := range []enclaveKind{wasmKind, palKind} {
		t.Run(k.name, func(t *testing.T) {
			id := "signal-" + k.name
			dir := startEnclave(t, rune, k, id, false)
			args := []string{"/app/probe.wasm", "sleep"}
			if k.name == "pal" {
				args = []string{"sh", "-c", "echo sleeping; exec sleep 1000"}
			}
			cmd := exec.Command(rune.Path, append([]string{"--root", rune.Root, "exec", id}, args...)...)
			cmd.Env = append(os.Environ(), rune.Env...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "sleeping\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("exec'd process did not start: %q %v", line, err)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
				t.Errorf("exec after SIGTERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
			}
			if st := rune.State(t, id); st["status"] != "running" {
				t.Errorf("the signal to the exec disturbed the container: %v", st["status"])
			}
			stop(t, rune, id, dir)
		})
	}
}
