package runelet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"golang.org/x/sys/unix"
)

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
	cfg, err := agent.ReadExecConfig()
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
	if !cfg.Settings.Runtime().IsPAL() {
		return execBuiltin(open, cfg, args, os.Environ(), cwd)
	}
	return execInPID1(cfg.AgentFD, args, os.Environ(), cwd)
}

// execFailure is the exit status for an exec that could not start its process: 127 when the
// program does not exist (enclave.KindNotFound, as PID 1 reports it across the agent protocol
// too), as a shell reports it, else 126.
func execFailure(err error) int {
	if k, _ := enclave.KindOf(err); k == enclave.KindNotFound {
		return 127
	}
	return 126
}

// execBuiltin runs args in a fresh instance of the container's built-in runtime, in this process.
func execBuiltin(open RuntimeOpener, cfg *agent.ExecConfig, args, env []string, cwd string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "init-runelet exec:", err)
		return execFailure(err)
	}
	s := cfg.Settings
	rtName := s.Runtime()
	rt, err := open(&agent.Config{Settings: s})
	if err != nil {
		return fail(err)
	}
	ecfg := enclave.Config{Type: s.Type, RuntimePath: s.RuntimePath, Args: s.Args, LogLevel: s.LogLevel, Rootfs: "/"}
	if fi, err := os.Stat(agent.CacheDir); err == nil && fi.IsDir() {
		// rune mounts the modules it compiled on the host here, read-only.
		ecfg.CacheDir = agent.CacheDir
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
		h.SetResourceFunc(func(ctx context.Context, id string) ([]byte, error) {
			resp, err := agent.Resource(ctx, agent.ContainerSocket, id)
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
		h.SetEvidenceFunc(func(ctx context.Context, rd [64]byte) ([]byte, error) {
			resp, err := agent.Evidence(ctx, agent.ContainerSocket, rd[:])
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
		return fail(fmt.Errorf("exec %s in %s: %w", proc.Path, rtName, err))
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
	c := agent.NewConn(uc)
	defer c.Close()
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	var resp agent.Response
	err = c.SendAsSelf(&agent.Request{Op: agent.OpExec, Args: args, Env: env, Cwd: cwd}, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		var extra []*os.File
		extra, err = c.Recv(&resp)
		agent.CloseFiles(extra)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet exec: reach the enclave:", err)
		return 126
	}
	_ = c.SetDeadline(time.Time{})
	if err := resp.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "init-runelet exec:", err)
		return execFailure(err)
	}
	done := make(chan *agent.Response, 1)
	go func() {
		var r agent.Response
		fs, err := c.Recv(&r)
		agent.CloseFiles(fs)
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
			_ = c.Send(&agent.Request{Op: agent.OpSignal, Signal: int(sig)})
		case r := <-done:
			if r.ExitCode == nil {
				fmt.Fprintln(os.Stderr, "init-runelet exec: lost the enclave:", r.Error)
				return 255
			}
			return *r.ExitCode
		}
	}
}
