package k8s

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one long-running program of the cluster (etcd, a control-plane component, the
// kubelet, containerd), started by the harness with its output appended to <dir>/<name>.log.
// A restart keeps the log, so a failure report shows what happened before and after.
type process struct {
	name    string
	argv    []string
	env     []string // added to the harness's environment
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

func newProcess(dir, name string, env []string, argv ...string) *process {
	return &process{name: name, argv: argv, env: env, logPath: filepath.Join(dir, name+".log")}
}

// start starts the program (again, after it stopped).
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.exited) {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", p.name, err)
	}
	fmt.Fprintf(logFile, "==== harness: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without its cleanup, the cluster goes with it. (Its own process
	// group, so that a terminal's ^C reaches the harness first, which tears down in order.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// pid is the running program's process id (0 when it never started).
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// running reports whether the program started and has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.exited)
}

// done is closed when the current run of the program exits.
func (p *process) done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs. A program that had to be killed is
// reported, since every program of the cluster stops on SIGTERM.
func (p *process) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	p.mu.Lock()
	proc, exited := p.cmd.Process, p.exited
	p.mu.Unlock()
	if err := proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", p.name, proc.Pid, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
	}
	if err := p.kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.name, proc.Pid, grace)
}

// kill SIGKILLs the program and waits until it is gone, as kill -9 would leave things.
func (p *process) kill() error {
	if !p.running() {
		return nil
	}
	p.mu.Lock()
	proc, exited := p.cmd.Process, p.exited
	p.mu.Unlock()
	if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.name, proc.Pid, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL for 30s", p.name, proc.Pid)
	}
}

// logTail is the end of the program's log, for failure reports.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
