package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// op is one step of the lifecycle.
type op int

const (
	opCreate op = iota
	opStart
	opWait
	opDelete
	opCount
)

var opNames = [opCount]string{"create", "start", "wait", "delete"}

// cycle is one measured create → start → wait → delete.
type cycle struct {
	d [opCount]time.Duration
	// maxRSS is the runtime command's peak resident set in KiB (wait4's
	// ru_maxrss); zero for wait, which runs no runtime command.
	maxRSS [opCount]int64
}

func (c cycle) total() time.Duration {
	var t time.Duration
	for _, d := range c.d {
		t += d
	}
	return t
}

// runtimeUnderTest is one runtime binary and what was measured for it.
type runtimeUnderTest struct {
	label   string
	path    string
	samples []cycle
	// pidfdWaits counts cycles whose init was not reparented to this
	// subreaper (the runtime keeps a monitor as its parent), so wait
	// could not check the exit status.
	pidfdWaits int
	err        error // first failure; the runtime is skipped afterwards
}

// newRuntimes resolves runtime paths and labels them by basename, numbering
// repeats (runc, runc#2) so the same binary can be measured twice.
func newRuntimes(args []string) ([]*runtimeUnderTest, error) {
	seen := map[string]int{}
	var rts []*runtimeUnderTest
	for _, arg := range args {
		path, err := exec.LookPath(arg)
		if err != nil {
			return nil, fmt.Errorf("runtime %q: %w", arg, err)
		}
		if path, err = filepath.Abs(path); err != nil {
			return nil, fmt.Errorf("runtime %q: %w", arg, err)
		}
		base := filepath.Base(path)
		seen[base]++
		label := base
		if n := seen[base]; n > 1 {
			label = fmt.Sprintf("%s#%d", base, n)
		}
		rts = append(rts, &runtimeUnderTest{label: label, path: path})
	}
	return rts, nil
}

type bench struct {
	bundle   string
	workDir  string
	runtimes []*runtimeUnderTest
}

// run does warmup+iterations rounds; each round runs one cycle per runtime,
// starting with a different runtime every round.
func (b *bench) run(ctx context.Context, iterations, warmup int) error {
	n := len(b.runtimes)
	for round := 0; round < warmup+iterations; round++ {
		for k := 0; k < n; k++ {
			idx := (round + k) % n
			rt := b.runtimes[idx]
			if rt.err != nil {
				continue
			}
			id := fmt.Sprintf("lcbench-%d-%d-%d", os.Getpid(), idx, round)
			c, err := b.cycle(ctx, rt, id)
			if err != nil {
				b.forceDelete(rt, id)
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted: %w", ctx.Err())
				}
				rt.err = err
				fmt.Fprintf(os.Stderr, "lifecycle: %s failed in round %d, dropping it: %v\n", rt.label, round, err)
				continue
			}
			if round >= warmup {
				rt.samples = append(rt.samples, c)
			}
		}
		reapOrphans()
	}
	return nil
}

// cycle creates, starts, waits for and deletes container id with rt.
func (b *bench) cycle(ctx context.Context, rt *runtimeUnderTest, id string) (cycle, error) {
	var c cycle
	pidFile := filepath.Join(b.workDir, id+".pid")
	defer os.Remove(pidFile)

	var err error
	if c.d[opCreate], c.maxRSS[opCreate], err = b.runtimeCommand(ctx, rt, "create", "--bundle", b.bundle, "--pid-file", pidFile, id); err != nil {
		return c, err
	}
	pid, err := readPidFile(pidFile)
	if err != nil {
		return c, err
	}
	if c.d[opStart], c.maxRSS[opStart], err = b.runtimeCommand(ctx, rt, "start", id); err != nil {
		return c, err
	}
	t0 := time.Now()
	reaped, err := waitExit(ctx, pid)
	if !reaped {
		rt.pidfdWaits++
	}
	if err != nil {
		return c, fmt.Errorf("wait for container %s init %d: %w", id, pid, err)
	}
	c.d[opWait] = time.Since(t0)
	if c.d[opDelete], c.maxRSS[opDelete], err = b.runtimeCommand(ctx, rt, "delete", id); err != nil {
		return c, err
	}
	return c, nil
}

// runtimeCommand runs one runtime command and returns its wall time and peak
// RSS. Its stdio are files, never pipes: a created container inherits them,
// and a pipe would make Wait block until the container exits.
func (b *bench) runtimeCommand(ctx context.Context, rt *runtimeUnderTest, args ...string) (time.Duration, int64, error) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devNull.Close()
	stderr, err := os.CreateTemp(b.workDir, "stderr")
	if err != nil {
		return 0, 0, fmt.Errorf("create stderr file: %w", err)
	}
	defer os.Remove(stderr.Name())
	defer stderr.Close()

	cmd := exec.CommandContext(ctx, rt.path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, stderr
	cmd.Dir = b.workDir
	t0 := time.Now()
	err = cmd.Run()
	d := time.Since(t0)
	if err != nil {
		msg, _ := os.ReadFile(stderr.Name())
		return d, 0, fmt.Errorf("%s %s: %w: %s", rt.label, args[0], err, bytes.TrimSpace(msg))
	}
	var maxRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss
	}
	return d, maxRSS, nil
}

// forceDelete removes a container left behind by a failed cycle.
func (b *bench) forceDelete(rt *runtimeUnderTest, id string) {
	// A fresh context: cleanup must run even after an interrupt.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, rt.path, "delete", "--force", id).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "not exist") && !strings.Contains(string(out), "not found") {
		fmt.Fprintf(os.Stderr, "lifecycle: %s delete --force %s: %v: %s\n", rt.label, id, err, bytes.TrimSpace(out))
	}
}

// readPidFile parses the container init PID written by create --pid-file.
func readPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a PID", path, data)
	}
	return pid, nil
}

// waitExit waits until process pid exits. The init is normally this
// process's child (it is a subreaper), so wait4 reaps it and its status is
// checked: `true` must exit 0. If a runtime keeps its own monitor process as
// the init's parent, wait4 fails with ECHILD and a pidfd reports the exit
// (reaped is then false).
func waitExit(ctx context.Context, pid int) (reaped bool, err error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		switch {
		case err == nil:
			if ws.Exited() && ws.ExitStatus() == 0 {
				return true, nil
			}
			if ws.Signaled() {
				return true, fmt.Errorf("container process killed by %v", ws.Signal())
			}
			return true, fmt.Errorf("container process exited with status %d", ws.ExitStatus())
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return false, waitPidfd(ctx, pid)
		default:
			return true, fmt.Errorf("wait4: %w", err)
		}
	}
}

func waitPidfd(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // already gone and reaped by its parent
	}
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
	return ctx.Err()
}

// reapOrphans collects any other process reparented to this subreaper. It
// runs between rounds only, when no exec.Cmd is waiting for its own child.
func reapOrphans() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
			return
		}
	}
}
