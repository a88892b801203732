package native

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// execHelperEnv makes the test binary, re-run, call Exec with the process named in its value.
const execHelperEnv = "NATIVE_EXEC_TEST_HELPER"

// TestMain lets a re-run of the test binary be the process that Exec replaces.
func TestMain(m *testing.M) {
	if v, ok := os.LookupEnv(execHelperEnv); ok {
		os.Exit(execHelper(v))
	}
	os.Exit(m.Run())
}

func execHelper(path string) int {
	rt := New()
	if err := rt.Init(context.Background(), enclave.Config{Type: "sim", RuntimePath: "builtin:native", Rootfs: "/"}); err != nil {
		fmt.Println("init:", err)
		return 3
	}
	err := rt.Exec(enclave.Process{Path: path, Args: []string{"sh", "-c", `echo "pid=$$ cwd=$(pwd) arg=$1 X=$X"`, "sh", "a b"}, Env: []string{"X=1 2"}, Dir: "/tmp"})
	fmt.Println("exec failed:", err)
	return 4
}

// TestExec: Exec replaces the calling process (same pid) with exactly the argv, environment and
// working directory it was given; a missing program is an error and the caller keeps running.
func TestExec(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{execHelperEnv + "=/bin/sh"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	want := "pid=" + strconv.Itoa(cmd.Process.Pid) + " cwd=/tmp arg=a b X=1 2\n"
	if string(out) != want {
		t.Fatalf("exec'd process printed %q, want %q", out, want)
	}

	cmd = exec.Command(os.Args[0])
	cmd.Env = []string{execHelperEnv + "=/nonexistent/prog"}
	out, _ = cmd.Output()
	if cmd.ProcessState.ExitCode() != 4 || !strings.Contains(string(out), "no such file") {
		t.Fatalf("missing program: exit %d, %q", cmd.ProcessState.ExitCode(), out)
	}
}

// TestExecNeedsRootfsSlash: Exec does not chroot, so it refuses a runtime whose rootfs is not "/".
func TestExecNeedsRootfsSlash(t *testing.T) {
	rt := newRuntime(t, newRootfs(t))
	err := rt.Exec(enclave.Process{Path: "/bin/sh"})
	if err == nil || !strings.Contains(err.Error(), "needs the rootfs to be /") {
		t.Fatalf("Exec with rootfs %s: %v", rt.rootfs, err)
	}
}
