package clients

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ctrTimeout bounds every single ctr command.
const ctrTimeout = 90 * time.Second

// Ctr runs ctr against one namespace of a private containerd.
type Ctr struct {
	Bin       string // ctr
	Sock      string // containerd's gRPC socket
	Namespace string
}

// Args prefixes args with the socket and namespace.
func (c Ctr) Args(args ...string) []string {
	return append([]string{"-a", c.Sock, "-n", c.Namespace}, args...)
}

// Exec runs a ctr command to completion; a non-zero exit is in the Result.
func (c Ctr) Exec(ctx context.Context, stdin []byte, args ...string) (Result, error) {
	return Run(ctx, ctrTimeout, stdin, c.Bin, c.Args(args...)...)
}

// CtrCmd runs a ctr command; only failing to run it at all is fatal.
func (c Ctr) CtrCmd(t testing.TB, args ...string) Result {
	t.Helper()
	res, err := c.Exec(context.Background(), nil, args...)
	if err != nil {
		t.Fatalf("ctr: %v", err)
	}
	return res
}

// MustCtr runs a ctr command that must succeed and returns its trimmed stdout.
func (c Ctr) MustCtr(t testing.TB, args ...string) string {
	t.Helper()
	res := c.CtrCmd(t, args...)
	if res.ExitCode != 0 {
		t.Fatalf("ctr %s: %s", strings.Join(args, " "), res)
	}
	return strings.TrimSpace(res.Stdout)
}

// Remove deletes the task (killing it) and the container; either may be gone already.
func (c Ctr) Remove(t testing.TB, id string) {
	ctx := context.Background()
	if res, err := c.Exec(ctx, nil, "task", "delete", "--force", id); err != nil || (res.ExitCode != 0 && !strings.Contains(res.Stderr, "not found")) {
		t.Errorf("cleanup ctr task delete --force %s: %v %s", id, err, res)
	}
	if res, err := c.Exec(ctx, nil, "container", "rm", id); err != nil || (res.ExitCode != 0 && !strings.Contains(res.Stderr, "not found")) {
		t.Errorf("cleanup ctr container rm %s: %v %s", id, err, res)
	}
}

// Task is one row of `ctr task ls`.
type Task struct {
	Pid    int
	Status string
}

// Task returns the row of task id, and whether it is listed.
func (c Ctr) Task(t testing.TB, id string) (Task, bool) {
	t.Helper()
	for _, line := range strings.Split(c.MustCtr(t, "task", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("ctr task ls: bad pid in %q", line)
			}
			return Task{Pid: pid, Status: f[2]}, true
		}
	}
	return Task{}, false
}

// WaitTaskStatus waits until task id is listed with status want.
func (c Ctr) WaitTaskStatus(t testing.TB, id, want string) Task {
	t.Helper()
	var got Task
	err := WaitFor(60*time.Second, fmt.Sprintf("task %s to be %s", id, want), func() (bool, error) {
		var ok bool
		got, ok = c.Task(t, id)
		return ok && got.Status == want, fmt.Errorf("last seen %+v (listed: %v)", got, ok)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// WaitFileLine waits until the file at path holds the line want.
func WaitFileLine(t testing.TB, path, want string) {
	t.Helper()
	err := WaitFor(60*time.Second, fmt.Sprintf("%q in %s", want, path), func() (bool, error) {
		data, err := os.ReadFile(path)
		return err == nil && HasLine(string(data), want), err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// HasLine reports whether out holds the line want (a trailing CR ignored).
func HasLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimRight(l, "\r") == want {
			return true
		}
	}
	return false
}
