package runelet

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exec is the exec'd runelet: it asks PID 1 to run args in the enclave with this process's stdio,
// forwards the signals it receives, and returns the enclave process's exit status.
func Exec(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "init-runelet exec: no command")
		return 126
	}
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "/"
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	resp, c, err := call(AgentSocket, &Request{Op: OpExec, Args: args, Env: os.Environ(), Cwd: cwd}, time.Now().Add(time.Minute), os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "init-runelet exec: reach the enclave at %s: %v\n", AgentSocket, err)
		return 126
	}
	defer c.c.Close()
	if resp.Error != "" {
		fmt.Fprintln(os.Stderr, "init-runelet exec:", resp.Error)
		if strings.Contains(resp.Error, "not found") || strings.Contains(resp.Error, "no such file") {
			return 127
		}
		return 126
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
