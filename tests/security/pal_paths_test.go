package security

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/pal/paltest"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// enclaveBundle is a busybox bundle running args with the enclave settings env.
func enclaveBundle(t *testing.T, env []string, args ...string) string {
	t.Helper()
	dir, spec := harness.Bundle(t, args...)
	spec.Process.Env = append(spec.Process.Env, env...)
	harness.WriteSpec(t, dir, spec)
	return dir
}

// unquote undoes logrus's quoting of rune's error message.
func unquote(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\"`, `"`), `\\`, `\`)
}

// createFails runs rune create of bundle and checks that it fails with an error containing want,
// leaving nothing behind. It returns the error text.
func createFails(t *testing.T, r *harness.Runtime, bundle, id, want string) string {
	t.Helper()
	res := r.Run(t, "create", "-b", bundle, id)
	msg := unquote(res.Stderr)
	if res.Code != 1 || !strings.Contains(msg, want) {
		t.Errorf("create: exit %d, stderr %q; want exit 1 and %q", res.Code, res.Stderr, want)
	}
	if strings.Contains(res.Stderr, "panic:") {
		t.Errorf("rune crashed: %s", res.Stderr)
	}
	harness.AssertNothingLeft(t, r, id, bundle)
	return msg
}

// TestPALPathIsNoOracle — party: pod author, who chooses ENCLAVE_RUNTIME_PATH. Attack: name host
// files the container must not see (/etc/shadow, a directory, a library outside the PAL
// directories, a path that climbs out of a PAL directory, a link an operator left in one) and
// read what rune create answers: before the fix rune said "no such file", "is a directory" or
// "not an ELF", an oracle on any host path, and loaded any ELF library. Expected: every create
// fails with the same message (up to the path as given), which names only the path and the
// allowed directories, and leaves nothing behind.
func TestPALPathIsNoOracle(t *testing.T) {
	r := harness.Rune(t)
	r.Cleanup(t)
	harness.SimEnclave(t, r)
	dir := harness.PALDir(t, r)
	shadowLink := filepath.Join(dir, "shadow.so")
	if err := os.Symlink("/etc/shadow", shadowLink); err != nil {
		t.Fatal(err)
	}
	writable := harness.InstallPAL(t, dir, "libpal-gw.so", paltest.Options{Version: 3})
	if err := os.Chmod(writable, 0o775); err != nil {
		t.Fatal(err)
	}
	libc, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{
		"root-only host file":           "/etc/shadow",
		"missing host file":             "/etc/no-such-file.so",
		"host directory":                "/root",
		"device":                        "/dev/null",
		"host library":                  libc,
		"PAL outside the PAL dirs":      harness.BuildPAL(t, paltest.Options{Version: 3}),
		"climbing out of a PAL dir":     dir + "/../../etc/shadow",
		"link out of a PAL dir":         shadowLink,
		"group-writable PAL in PAL dir": writable,
		"missing file in a PAL dir":     filepath.Join(dir, "missing.so"),
	}
	var first string
	for name, path := range paths {
		t.Run(name, func(t *testing.T) {
			bundle := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + path}, "cat", "/etc/hostname")
			msg := createFails(t, r, bundle, "pal-oracle", "is not an allowed PAL")
			// What follows "level=error msg=": the path is the only part that may vary.
			_, msg, _ = strings.Cut(msg, "msg=")
			msg = strings.ReplaceAll(msg, strconv.Quote(path), "PATH")
			for _, leak := range []string{"no such file", "directory", "ELF file", "permission", "loop", "not a regular"} {
				if strings.Contains(msg, leak) {
					t.Errorf("refusal %q tells what is at the path (%q)", msg, leak)
				}
			}
			if first == "" {
				first = msg
			} else if msg != first {
				t.Errorf("refusal %q differs from another refusal %q", msg, first)
			}
		})
	}
}

// TestPALNeededNamesAPath — party: pod author, choosing among installed PALs one whose dynamic
// section names a path (a PAL the operator should not have installed, or one built to attack).
// Attack: DT_NEEDED "../../../etc/shadow" (or "/etc/shadow"): the host joined the name under the
// container's library directory and bind-mounted the host's /etc/shadow at /etc/shadow inside the
// container. Expected: create refuses the PAL (library names never contain '/'), nothing left.
func TestPALNeededNamesAPath(t *testing.T) {
	r := harness.Rune(t)
	r.Cleanup(t)
	harness.SimEnclave(t, r)
	dir := harness.PALDir(t, r)
	for i, needed := range []string{"../../../etc/shadow", "/etc/shadow"} {
		t.Run(needed, func(t *testing.T) {
			pal := harness.InstallPAL(t, dir, "libpal-needed"+strconv.Itoa(i)+".so", paltest.Options{Version: 3, Needed: []string{needed}})
			bundle := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal}, "cat", "/etc/shadow")
			createFails(t, r, bundle, "pal-needed", `needs library "`+needed+`": a library name must not contain '/'`)
		})
	}
}

// TestPALRunpathOutsidePALDirs — party: a local user of the node (or the pod author, with any
// directory they can write on the host). Attack: a PAL whose DT_RUNPATH names a world-writable
// directory where the user planted a library the PAL needs: the host would inject the user's
// library into the enclave container, running it in PID 1. Expected: DT_RUNPATH outside the PAL
// directories and system library directories is ignored, so the library is not found and create
// fails; a DT_RUNPATH of $ORIGIN/deps inside the PAL directory is honoured (the PAL runs).
func TestPALRunpathOutsidePALDirs(t *testing.T) {
	r := harness.Rune(t)
	r.Cleanup(t)
	harness.SimEnclave(t, r)
	dir := harness.PALDir(t, r)
	planted := t.TempDir()
	if err := os.Chmod(planted, 0o1777); err != nil {
		t.Fatal(err)
	}
	// The user's library: any ELF library with the name of the PAL's dependency.
	if _, err := paltest.Copy(harness.BuildStub(t, "libplanted.so"), planted, "libplanted.so"); err != nil {
		t.Fatal(err)
	}
	pal := harness.InstallPAL(t, dir, "libpal-runpath.so", paltest.Options{Version: 3, Needed: []string{"libplanted.so"}, Runpath: planted})
	bundle := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal}, "echo", "ran")
	createFails(t, r, bundle, "pal-runpath", "needs libplanted.so, which is not installed on this host")

	// The same layout inside the PAL directory, root's: honoured.
	deps := filepath.Join(dir, "deps")
	if err := os.Mkdir(deps, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := paltest.Copy(harness.BuildStub(t, "libdep.so"), deps, "libdep.so"); err != nil {
		t.Fatal(err)
	}
	pal = harness.InstallPAL(t, dir, "libpal-origin.so", paltest.Options{Version: 3, Needed: []string{"libdep.so"}, Runpath: "$ORIGIN/deps"})
	bundle = enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal}, "echo", "ran")
	res := r.Run(t, "run", "-b", bundle, "pal-origin")
	if res.Code != 0 || res.Stdout != "ran\n" {
		t.Errorf("PAL with DT_RUNPATH $ORIGIN/deps: exit %d, stdout %q, stderr %s", res.Code, res.Stdout, res.Stderr)
	}
	harness.AssertNothingLeft(t, r, "pal-origin", bundle)
}

// TestConfigReadOnlyForPALs: rune reads the node configuration only to create a container that
// names a PAL, so that ordinary and built-in-runtime containers cost nothing more, and reads it as
// strictly as the shim (an unknown key fails the create, naming the file and the key).
func TestConfigReadOnlyForPALs(t *testing.T) {
	r := harness.Rune(t)
	r.Cleanup(t)
	harness.SimEnclave(t, r)
	dir := harness.PALDir(t, r)
	pal := harness.InstallPAL(t, dir, "libpal.so", paltest.Options{Version: 3})
	bad := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(bad, []byte("[enclave]\npal_dir = [\""+dir+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Env = append(r.Env, "RUNE_CONFIG="+bad)

	for name, env := range map[string][]string{"ordinary": nil, "builtin:native": {"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:native"}} {
		bundle := enclaveBundle(t, env, "echo", "ran")
		res := r.Run(t, "run", "-b", bundle, "cfg")
		if res.Code != 0 || res.Stdout != "ran\n" {
			t.Errorf("%s container with an invalid configuration: exit %d, stdout %q, stderr %s", name, res.Code, res.Stdout, res.Stderr)
		}
		harness.AssertNothingLeft(t, r, "cfg", bundle)
	}
	bundle := enclaveBundle(t, []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal}, "echo", "ran")
	createFails(t, r, bundle, "cfg", "configuration "+bad+`: unknown key "enclave.pal_dir"`)
}
