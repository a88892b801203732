package runelet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"golang.org/x/sys/unix"
)

// EnvExec names the environment variable through which rune tells an exec'd runelet how to run
// its process (an ExecConfig, as JSON). The runelet removes it before anything else runs.
const EnvExec = "_RUNELET_EXEC"

// ExecConfig is what rune tells an exec'd runelet.
type ExecConfig struct {
	// Settings are the container's enclave settings, as rune recorded them at create.
	Settings enclave.Settings `json:"settings"`
	// AgentFD is, for a PAL, the descriptor of a connection to PID 1's host socket that rune opened
	// for this exec (DialExec): the only way to ask PID 1 for a process, which the container's own
	// agent socket does not serve.
	AgentFD int `json:"agent_fd,omitempty"`
}

// ExecEnv is the environment entry that hands cfg to an exec'd runelet.
func ExecEnv(cfg *ExecConfig) (string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return EnvExec + "=" + string(b), nil
}

// DialExec opens a connection to PID 1's host socket for one exec in a PAL's enclave, to be
// inherited by the exec'd runelet (ExecConfig.AgentFD). PID 1 takes the exec request only from a
// process of the container, and runs it only if that process's confinement is the enclave's.
func DialExec(socket string) (*os.File, error) {
	c, err := dial(socket)
	if err != nil {
		return nil, fmt.Errorf("reach the enclave at %s: %w", socket, err)
	}
	defer c.Close()
	return c.File()
}

// readExecConfig reads and removes EnvExec.
func readExecConfig() (*ExecConfig, error) {
	v, ok := os.LookupEnv(EnvExec)
	os.Unsetenv(EnvExec)
	if !ok {
		return nil, fmt.Errorf("init-runelet exec runs only as the process rune exec starts (%s is not set)", EnvExec)
	}
	var cfg ExecConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvExec, err)
	}
	return &cfg, nil
}

// inPlaceRuntime is a runtime whose exec'd process replaces the exec'd runelet (builtin:native):
// the process then is the very process libcontainer confined for the exec.
type inPlaceRuntime interface {
	// Exec runs p in place of the calling process; it returns only on failure.
	Exec(p enclave.Process) error
}

// Exec is the exec'd runelet, which libcontainer started with exactly the exec spec's confinement
// (user, groups, capabilities, no_new_privs, seccomp, cgroup). A built-in runtime runs args under
// that confinement itself: builtin:native by becoming the process, builtin:wasm by hosting the
// module in this process. A PAL's enclave lives in PID 1, so for a PAL the runelet asks PID 1,
// over the connection rune handed it, to run args there, forwards the signals it receives, and
// returns the enclave process's exit status.
func Exec(open RuntimeOpener, args []string) int {
	cfg, err := readExecConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet exec:", err)
		return 126
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "init-runelet exec: no command")
		return 126
	}
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "/"
	}
	if _, builtin := cfg.Settings.Builtin(); builtin {
		return execBuiltin(open, cfg, args, os.Environ(), cwd)
	}
	return execInPID1(cfg.AgentFD, args, os.Environ(), cwd)
}

// execFailure is the exit status for an exec that could not start its process: 127 when the
// program does not exist, as a shell reports it, else 126.
func execFailure(msg string) int {
	if strings.Contains(msg, "not found") || strings.Contains(msg, "no such file") {
		return 127
	}
	return 126
}

// execBuiltin runs args in a fresh instance of the container's built-in runtime, in this process.
func execBuiltin(open RuntimeOpener, cfg *ExecConfig, args, env []string, cwd string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "init-runelet exec:", err)
		return execFailure(err.Error())
	}
	s := cfg.Settings
	name, _ := s.Builtin()
	rt, err := open(&Config{Settings: s})
	if err != nil {
		return fail(err)
	}
	ecfg := enclave.Config{Type: s.Type, RuntimePath: s.RuntimePath, Args: s.Args, LogLevel: s.LogLevel, Rootfs: "/"}
	if fi, err := os.Stat(CacheDir); err == nil && fi.IsDir() {
		// rune mounts the modules it compiled on the host here, read-only.
		ecfg.CacheDir = CacheDir
	}
	if err := rt.Init(context.Background(), ecfg); err != nil {
		return fail(err)
	}
	proc, err := newProcess(args, env, cwd)
	if err != nil {
		rt.Destroy()
		return fail(err)
	}
	// The workload's broker resources (and a sealed workload's key) come through PID 1, which
	// holds the broker session.
	if h, ok := rt.(ResourceHook); ok {
		h.SetResourceFunc(func(_ context.Context, id string) ([]byte, error) {
			resp, err := Resource(AgentSocket, id)
			if err != nil {
				return nil, err
			}
			return resp.Resource, nil
		})
	}
	if x, ok := rt.(inPlaceRuntime); ok {
		err := x.Exec(proc)
		rt.Destroy()
		return fail(err)
	}
	// The workload's evidence comes from the enclave's key, which only PID 1 holds.
	if h, ok := rt.(EvidenceHook); ok {
		h.SetEvidenceFunc(func(_ context.Context, rd [64]byte) ([]byte, error) {
			resp, err := Evidence(AgentSocket, rd[:])
			if err != nil {
				return nil, err
			}
			return resp.Evidence, nil
		})
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	running, err := rt.Spawn(context.Background(), proc)
	if err != nil {
		rt.Destroy()
		return fail(fmt.Errorf("exec %s in builtin:%s: %w", proc.Path, name, err))
	}
	done := make(chan int, 1)
	go func() {
		code, err := running.Wait()
		if err != nil {
			fmt.Fprintln(os.Stderr, "init-runelet exec:", err)
		}
		done <- code
	}()
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if ignoredSignal(sig) {
				continue
			}
			_ = running.Signal(sig)
		case code := <-done:
			rt.Destroy()
			return code
		}
	}
}

// execInPID1 asks PID 1 to run args in the PAL's enclave over the connection rune opened for this
// exec, and relays signals to the process until it ends.
func execInPID1(fd int, args, env []string, cwd string) int {
	if fd < 3 {
		fmt.Fprintln(os.Stderr, "init-runelet exec: rune handed no connection to the enclave")
		return 126
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "runelet-exec")
	fc, err := net.FileConn(f)
	f.Close()
	uc, ok := fc.(*net.UnixConn)
	if err != nil || !ok {
		fmt.Fprintf(os.Stderr, "init-runelet exec: descriptor %d is not a connection to the enclave: %v\n", fd, err)
		return 126
	}
	c := newConn(uc)
	defer c.c.Close()
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	_ = c.c.SetDeadline(time.Now().Add(time.Minute))
	var resp Response
	err = c.sendAsSelf(&Request{Op: OpExec, Args: args, Env: env, Cwd: cwd}, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		var extra []*os.File
		extra, err = c.recv(&resp)
		closeAll(extra)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet exec: reach the enclave:", err)
		return 126
	}
	_ = c.c.SetDeadline(time.Time{})
	if resp.Error != "" {
		fmt.Fprintln(os.Stderr, "init-runelet exec:", resp.Error)
		return execFailure(resp.Error)
	}
	done := make(chan *Response, 1)
	go func() {
		var r Response
		fs, err := c.recv(&r)
		closeAll(fs)
		if err != nil {
			r.Error = err.Error()
		}
		done <- &r
	}()
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if ignoredSignal(sig) {
				continue
			}
			_ = c.send(&Request{Op: OpSignal, Signal: int(sig)})
		case r := <-done:
			if r.ExitCode == nil {
				fmt.Fprintln(os.Stderr, "init-runelet exec: lost the enclave:", r.Error)
				return 255
			}
			return *r.ExitCode
		}
	}
}

// Ready waits until the enclave behind the host socket is initialised, returning its measurement or
// the enclave runtime's own error.
func Ready(socket string, timeout time.Duration) (*Response, error) {
	deadline := time.Now().Add(timeout)
	for {
		resp, c, err := call(socket, &Request{Op: OpReady}, deadline)
		if err == nil {
			c.c.Close()
			if resp.Error != "" {
				return nil, errors.New(resp.Error)
			}
			return resp, nil
		}
		// The listener exists before PID 1 runs, so only a dead PID 1 refuses or drops the call.
		if errors.Is(err, unix.ECONNREFUSED) || time.Now().After(deadline) {
			return nil, err
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Start tells PID 1 to run the entrypoint in the enclave.
func Start(socket string) (*Response, error) {
	return oneShot(socket, &Request{Op: OpStart})
}

// Attest asks the enclave for evidence binding nonce.
func Attest(socket string, nonce []byte) (*Response, error) {
	return oneShot(socket, &Request{Op: OpAttest, Nonce: nonce})
}

// Resource asks the enclave for a resource of its key broker ("<repository>/<type>/<tag>"), as a
// workload does through the container's agent socket.
func Resource(socket, id string) (*Response, error) {
	return oneShot(socket, &Request{Op: OpResource, Resource: id})
}

// Evidence asks the enclave for evidence over reportData (exactly 64 bytes), as a workload does
// through AgentSocket.
func Evidence(socket string, reportData []byte) (*Response, error) {
	return oneShot(socket, &Request{Op: OpEvidence, ReportData: reportData})
}

func oneShot(socket string, req *Request) (*Response, error) {
	resp, c, err := call(socket, req, time.Now().Add(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("reach the enclave at %s: %w", socket, err)
	}
	c.c.Close()
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
