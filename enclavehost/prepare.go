package enclavehost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/enclave/wasm/codecache"
	"github.com/inclavare-containers/inclavare-go/internal/bytesize"
	"golang.org/x/sys/unix"
)

// Environment variables that set PrepareLimits (rune reads its own environment; the shim's passes
// through).
const (
	EnvPrepareTimeout = "RUNE_PREPARE_TIMEOUT"     // Go duration, e.g. "3m"
	EnvPrepareMemory  = "RUNE_PREPARE_MEMORY"      // bytes, with an optional K, M or G suffix (binary)
	EnvPrepareCPU     = "RUNE_PREPARE_CPU_SECONDS" // seconds of CPU time
	EnvPreparePids    = "RUNE_PREPARE_PIDS"        // tasks (threads count)
	EnvMaxModuleSize  = agent.EnvMaxModuleSize     // bytes, suffixes as for the memory
)

// PrepareLimits bound `init-runelet prepare`, which runs as rune's user on the host, outside any
// container, on what the pod supplied. docs/enclave-containers.md documents the defaults.
type PrepareLimits struct {
	// Timeout is the wall-clock deadline of the whole prepare.
	Timeout time.Duration
	// Memory bounds the memory of prepare's cgroup; its address space (RLIMIT_AS) gets Memory plus
	// addressSpaceSlack, since Go and wazero reserve far more address space than they touch.
	Memory int64
	// CPUSeconds is RLIMIT_CPU: CPU time over all threads.
	CPUSeconds uint64
	// Pids bounds the tasks of prepare's cgroup (Go's threads count).
	Pids int64
	// MaxModuleSize caps a wasm module's size.
	MaxModuleSize int64
}

// addressSpaceSlack is the address space prepare gets beyond its memory limit: a Go program that
// compiles a small module with wazero already maps about 1.7 GiB.
const addressSpaceSlack = 4 << 30

// DefaultPrepareLimits are the limits when the environment sets none: enough for a module of the
// size cap (a large Go program builds to tens of MB of wasm; wazero validates and compiles about
// 7 MB a second here, using some 40 bytes of memory per byte of module).
func DefaultPrepareLimits() PrepareLimits {
	return PrepareLimits{
		Timeout:       3 * time.Minute,
		Memory:        6 << 30,
		CPUSeconds:    6 * 60,
		Pids:          256,
		MaxModuleSize: 128 << 20,
	}
}

// PrepareLimitsFromEnv returns the default limits with what the environment overrides.
func PrepareLimitsFromEnv() (PrepareLimits, error) {
	l := DefaultPrepareLimits()
	if v := os.Getenv(EnvPrepareTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return l, fmt.Errorf("%s=%q: want a positive duration such as 3m", EnvPrepareTimeout, v)
		}
		l.Timeout = d
	}
	for _, b := range []struct {
		env string
		dst *int64
	}{{EnvPrepareMemory, &l.Memory}, {EnvMaxModuleSize, &l.MaxModuleSize}} {
		if v := os.Getenv(b.env); v != "" {
			n, err := bytesize.Parse(v)
			if err != nil || n <= 0 {
				return l, fmt.Errorf("%s=%q: want a positive size such as 64M", b.env, v)
			}
			*b.dst = n
		}
	}
	if v := os.Getenv(EnvPrepareCPU); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return l, fmt.Errorf("%s=%q: want a positive number of seconds", EnvPrepareCPU, v)
		}
		l.CPUSeconds = n
	}
	if v := os.Getenv(EnvPreparePids); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 16 {
			return l, fmt.Errorf("%s=%q: want a number of tasks, at least 16", EnvPreparePids, v)
		}
		l.Pids = n
	}
	return l, nil
}

// Prepare runs `init-runelet prepare` with req under the limits the environment sets
// (PrepareLimitsFromEnv) and returns its answer. A prepare stopped by a limit fails with an error
// naming the phase it was in and the limit; one stopped because ctx ended, with ctx's error.
func Prepare(ctx context.Context, runelet string, req *agent.PrepareRequest) (*agent.PrepareResponse, error) {
	lim, err := PrepareLimitsFromEnv()
	if err != nil {
		return nil, err
	}
	if err := agent.CheckLaunchSize(req.Launch); err != nil {
		return nil, err
	}
	if req.MaxModuleSize == 0 {
		req.MaxModuleSize = lim.MaxModuleSize
	}
	resp, clean, err := runPrepare(ctx, runelet, req, lim)
	if !clean && req.CacheDir != "" {
		// A prepare that was killed may have left a half-filled cache entry; no one holds it now.
		codecache.Sweep(req.CacheDir)
	}
	return resp, err
}

// FindRunelet locates init-runelet: $RUNE_RUNELET, beside the running rune, then the libexec dir.
func FindRunelet() (string, error) {
	if p := os.Getenv("RUNE_RUNELET"); p != "" {
		return p, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "init-runelet")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	for _, p := range []string{"/usr/local/libexec/rune/init-runelet", "/usr/libexec/rune/init-runelet"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("init-runelet not found (tried %v; set RUNE_RUNELET)", tried)
}

// SimPlatformCertificate returns the PEM certificate of the sim platform key at keyPath ("" means
// the default), creating the key on first use.
func SimPlatformCertificate(ctx context.Context, runelet, keyPath string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, runelet, "sim-platform-cert", keyPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s sim-platform-cert: %v: %s", runelet, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// maxPrepareOutput bounds what rune keeps of prepare's stdout and stderr.
const maxPrepareOutput = 1 << 20

// runPrepare runs prepare under lim: its own cgroup (memory, pids) when the host lets rune make
// one, rlimits (address space, CPU time) in any case, a deadline, and death with rune. clean is
// false when prepare did not end by itself with an answer.
func runPrepare(ctx context.Context, runelet string, req *agent.PrepareRequest, lim PrepareLimits) (resp *agent.PrepareResponse, clean bool, err error) {
	phaseR, phaseW, err := os.Pipe()
	if err != nil {
		return nil, true, err
	}
	defer phaseR.Close()
	req.PhaseFD = 3
	in, err := json.Marshal(req)
	if err != nil {
		phaseW.Close()
		return nil, true, err
	}
	stdin, stdinW, err := os.Pipe()
	if err != nil {
		phaseW.Close()
		return nil, true, err
	}
	defer stdinW.Close()
	var stdout, stderr limitedBuffer
	cmd := exec.Command(runelet, "prepare")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	cmd.ExtraFiles = []*os.File{phaseW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cg := newPrepareCgroup(lim)
	defer cg.destroy()
	if err := cmd.Start(); err != nil {
		stdin.Close()
		phaseW.Close()
		return nil, true, fmt.Errorf("%s prepare: %w", runelet, err)
	}
	stdin.Close()
	phaseW.Close()
	// prepare reads its request before doing anything: it is bounded before it has any work.
	pid := cmd.Process.Pid
	as := uint64(lim.Memory) + addressSpaceSlack
	rlErr := errors.Join(
		unix.Prlimit(pid, unix.RLIMIT_AS, &unix.Rlimit{Cur: as, Max: as}, nil),
		unix.Prlimit(pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: lim.CPUSeconds, Max: lim.CPUSeconds}, nil),
		unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil),
	)
	if rlErr == nil {
		rlErr = cg.add(pid)
	}
	if rlErr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, false, fmt.Errorf("%s prepare: bound it: %w", runelet, rlErr)
	}
	phasesC := make(chan string, 1)
	go func() { phasesC <- lastLine(phaseR) }()
	go func() {
		_, _ = stdinW.Write(in)
		stdinW.Close()
	}()

	waitC := make(chan error, 1)
	go func() { waitC <- cmd.Wait() }()
	timer := time.NewTimer(lim.Timeout)
	defer timer.Stop()
	var runErr error
	timedOut, cancelled := false, false
	select {
	case runErr = <-waitC:
	case <-timer.C:
		timedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if timedOut || cancelled {
		// The whole process group: prepare starts no children, but nothing of it may outlive this.
		_ = unix.Kill(-pid, unix.SIGKILL)
		runErr = <-waitC
	}
	phase := <-phasesC
	if phase == "" {
		phase = agent.PhaseStart
	}
	what := fmt.Sprintf("init-runelet prepare (%s)", phase)
	if timedOut {
		return nil, false, enclave.TimeoutIn(phase, fmt.Errorf("%s did not finish within %s (%s)", what, lim.Timeout, EnvPrepareTimeout))
	}
	if cancelled {
		return nil, false, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var out agent.PrepareResponse
	if jerr := json.Unmarshal(stdout.Bytes(), &out); jerr == nil && runErr == nil {
		if err := out.Err(); err != nil {
			return nil, true, err
		}
		return &out, true, nil
	}
	if reason, limit := boundReason(cmd.ProcessState, cg, lim, stderr.String()); reason != "" {
		err := fmt.Errorf("%s %s", what, reason)
		if limit {
			err = enclave.WithKind(enclave.KindLimit, err)
		}
		return nil, false, err
	}
	if runErr != nil {
		return nil, false, fmt.Errorf("%s: %v: %s", what, runErr, firstLine(stderr.String()))
	}
	return nil, false, fmt.Errorf("%s: bad answer: %s", what, firstLine(stdout.String()))
}

// boundReason says which limit ended prepare (limit true), or what else killed it; "" when
// neither.
func boundReason(st *os.ProcessState, cg *prepareCgroup, lim PrepareLimits, stderr string) (reason string, byLimit bool) {
	if st == nil {
		return "", false
	}
	// rusage's user and system times are sampled: they can read a little under what the kernel
	// counted against RLIMIT_CPU.
	limit := time.Duration(lim.CPUSeconds) * time.Second
	used := st.UserTime() + st.SystemTime()
	used += max(limit/10, 100*time.Millisecond)
	ws, _ := st.Sys().(syscall.WaitStatus)
	switch {
	case cg.oomKilled():
		return fmt.Sprintf("ran out of its %s memory limit (%s)", bytesize.Format(lim.Memory), EnvPrepareMemory), true
	case ws.Signaled() && (ws.Signal() == syscall.SIGKILL || ws.Signal() == syscall.SIGXCPU) && used >= limit:
		return fmt.Sprintf("used up its %d s of CPU time (%s)", lim.CPUSeconds, EnvPrepareCPU), true
	case strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "cannot allocate memory"):
		return fmt.Sprintf("ran out of its %s address space limit (%s plus %s)", bytesize.Format(lim.Memory+addressSpaceSlack), EnvPrepareMemory, bytesize.Format(addressSpaceSlack)), true
	case strings.Contains(stderr, "pthread_create failed") || strings.Contains(stderr, "newosproc"):
		return fmt.Sprintf("hit its limit of %d tasks (%s)", lim.Pids, EnvPreparePids), true
	case ws.Signaled():
		return fmt.Sprintf("was killed by %s", unix.SignalName(ws.Signal())), false
	}
	return "", false
}

// lastLine reads r to its end and returns the last complete non-empty line.
func lastLine(r io.Reader) string {
	last := ""
	sc := bufio.NewScanner(io.LimitReader(r, maxPrepareOutput))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	_, _ = io.Copy(io.Discard, r)
	return last
}

// firstLine is the first line of s: a Go crash report's first line says what happened.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// limitedBuffer keeps the first maxPrepareOutput bytes written to it and drops the rest.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxPrepareOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
