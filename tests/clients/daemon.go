package clients

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Result is what a finished client command produced.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
}

// Run runs a command to completion within timeout. A non-zero exit status is
// not an error (it is in Result.ExitCode); failing to start, being killed by
// a signal, or running out of time is.
func Run(ctx context.Context, timeout time.Duration, stdin []byte, name string, args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// A client that left a child holding its pipes must not hang Wait.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s %s: timed out after %v: %s", name, strings.Join(args, " "), timeout, res)
	}
	var exitErr *exec.ExitError
	if err != nil && !(errors.As(err, &exitErr) && res.ExitCode >= 0) {
		return res, fmt.Errorf("%s %s: %w (%s)", name, strings.Join(args, " "), err, res)
	}
	return res, nil
}

// Daemon is a long-running process (dockerd, containerd) started by a suite,
// with everything it owns below Dir.
type Daemon struct {
	Name    string
	Dir     string
	LogPath string
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	exited  chan struct{}
	waitErr error
}

// StartDaemon starts argv with its output in <dir>/<name>.log. The daemon is
// bounded by lifetime: when it runs out, the daemon is terminated.
func StartDaemon(name, dir string, lifetime time.Duration, argv ...string) (*Daemon, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lifetime)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	// If the test binary dies without cleaning up, take the daemon with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cancel()
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Name: name, Dir: dir, LogPath: logPath, cmd: cmd, cancel: cancel, exited: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		logFile.Close()
		close(d.exited)
	}()
	return d, nil
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// WaitReady polls probe until it succeeds, the daemon exits, or timeout
// passes.
func (d *Daemon) WaitReady(timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited before answering (%v); log:\n%s", d.Name, d.waitErr, d.LogTail(30))
		default:
		}
		if last = probe(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %v: %v; log:\n%s", d.Name, timeout, last, d.LogTail(30))
		case <-d.exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM to the daemon's PID, waits up to grace, then SIGKILLs it.
func (d *Daemon) Stop(grace time.Duration) error {
	defer d.cancel()
	select {
	case <-d.exited:
		return nil
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", d.Name, d.PID(), err)
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(grace):
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", d.Name, d.PID(), err)
	}
	select {
	case <-d.exited:
		return fmt.Errorf("%s ignored SIGTERM for %v and was killed", d.Name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", d.Name, d.PID())
	}
}

// LogTail returns the last n lines of the daemon's log.
func (d *Daemon) LogTail(n int) string {
	data, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// KillProcessesUnder SIGKILLs every process whose command line mentions a
// path below dir (shims started by a daemon living in dir keep its socket path in their
// arguments) and returns their PIDs. dir must be a private temporary
// directory, so nothing else can match.
func KillProcessesUnder(dir string) ([]int, error) {
	if len(dir) < len("/tmp/x") || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("refusing to match processes on short path %q", dir)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	self := os.Getpid()
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		// dir+"/" so that /tmp/x-12 does not match /tmp/x-123's processes.
		if err != nil || !bytes.Contains(cmdline, []byte(dir+"/")) {
			continue
		}
		if err := unix.Kill(pid, unix.SIGKILL); err == nil {
			killed = append(killed, pid)
		}
	}
	return killed, nil
}

// UnmountUnder lazily unmounts every mount point at or below dir, deepest
// first, so the directory can be removed.
func UnmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// WaitFor polls cond every 100ms until it returns true or timeout passes;
// it reports the last condition error on timeout.
func WaitFor(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("waiting for %s: gave up after %v: %w", what, timeout, last)
			}
			return fmt.Errorf("waiting for %s: gave up after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuffer collects a running command's output for polling while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Background is a client command running while the test does other things
// (a foreground `ctr run` that another client signals).
type Background struct {
	cmd            *exec.Cmd
	cancel         context.CancelFunc
	stdout, stderr lockedBuffer
	done           chan struct{}
	res            Result
	err            error
}

// StartBackground starts a command bounded by timeout.
func StartBackground(timeout time.Duration, name string, args ...string) (*Background, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	b := &Background{cancel: cancel, done: make(chan struct{})}
	b.cmd = exec.CommandContext(ctx, name, args...)
	b.cmd.WaitDelay = 5 * time.Second
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		err := b.cmd.Wait()
		b.res = Result{Stdout: b.stdout.String(), Stderr: b.stderr.String(), ExitCode: b.cmd.ProcessState.ExitCode()}
		var exitErr *exec.ExitError
		switch {
		case ctx.Err() != nil:
			b.err = fmt.Errorf("%s %s: timed out after %v: %s", name, strings.Join(args, " "), timeout, b.res)
		case err != nil && !(errors.As(err, &exitErr) && b.res.ExitCode >= 0):
			b.err = fmt.Errorf("%s %s: %w (%s)", name, strings.Join(args, " "), err, b.res)
		}
		cancel()
		close(b.done)
	}()
	return b, nil
}

// Stdout is the output so far.
func (b *Background) Stdout() string { return b.stdout.String() }

// Exited reports whether the command has finished.
func (b *Background) Exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// Wait waits for the command to finish (it is bounded by its timeout).
func (b *Background) Wait() (Result, error) {
	<-b.done
	return b.res, b.err
}

// Stop ends the command early (used in cleanup) and waits for it.
func (b *Background) Stop() {
	b.cancel()
	<-b.done
}

// RemoveCgroupTree removes the cgroup directory root and every cgroup below it, deepest first.
// rmdir fails on a cgroup that still has tasks, so nothing in use is removed: the error names it.
// A root that does not exist is no error.
func RemoveCgroupTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list cgroups below %s: %w", root, err)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
