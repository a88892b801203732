package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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

// ReadExecConfig reads and removes EnvExec (the exec'd runelet).
func ReadExecConfig() (*ExecConfig, error) {
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

// DialExec opens a connection to PID 1's host socket for one exec in a PAL's enclave, to be
// inherited by the exec'd runelet (ExecConfig.AgentFD). PID 1 takes the exec request only from a
// process of the container, and runs it only if that process's confinement is the enclave's.
func DialExec(socket string) (*os.File, error) {
	c, err := Dial(socket)
	if err != nil {
		return nil, fmt.Errorf("reach the enclave at %s: %w", socket, err)
	}
	defer c.Close()
	return c.File()
}

// DefaultCallTimeout bounds a call whose context has no deadline of its own.
const DefaultCallTimeout = time.Minute

// call sends req on a fresh connection to socket and reads one response. The context's deadline
// is the connection's; cancelling the context ends the call. The connection is for the caller to
// close, and for nothing else: the context may still end it.
func call(ctx context.Context, socket string, req *Request, files ...*os.File) (*Response, *Conn, error) {
	c, err := Dial(socket)
	if err != nil {
		return nil, nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	// A deadline in the past wakes every blocked read and write at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	cc := NewConn(c)
	if err := cc.Send(req, files...); err != nil {
		c.Close()
		return nil, nil, ctxErr(ctx, err)
	}
	var resp Response
	extra, err := cc.Recv(&resp)
	CloseFiles(extra)
	if err != nil {
		c.Close()
		return nil, nil, ctxErr(ctx, err)
	}
	return &resp, cc, nil
}

// ctxErr is err, or the context's own error when the context ended the call first (a deadline
// stays os.ErrDeadlineExceeded, which both say).
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(cerr, context.Canceled) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// Ready waits until the enclave behind the host socket is initialised, returning its measurement
// or the enclave runtime's own error. It waits until ctx's deadline at most: a call that ran out
// of time fails with os.ErrDeadlineExceeded.
func Ready(ctx context.Context, socket string) (*Response, error) {
	for {
		resp, c, err := call(ctx, socket, &Request{Op: OpReady})
		if err == nil {
			c.Close()
			if err := resp.Err(); err != nil {
				return nil, err
			}
			return resp, nil
		}
		// The listener exists before PID 1 runs, so only a dead PID 1 refuses or drops the call.
		if errors.Is(err, unix.ECONNREFUSED) || ctx.Err() != nil {
			return nil, err
		}
		if d, ok := ctx.Deadline(); ok && time.Now().After(d) {
			return nil, err
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Start tells PID 1 to run the entrypoint in the enclave.
func Start(ctx context.Context, socket string) (*Response, error) {
	return oneShot(ctx, socket, &Request{Op: OpStart})
}

// Attest asks the enclave for evidence binding nonce.
func Attest(ctx context.Context, socket string, nonce []byte) (*Response, error) {
	return oneShot(ctx, socket, &Request{Op: OpAttest, Nonce: nonce})
}

// Resource asks the enclave for a resource of its key broker ("<repository>/<type>/<tag>"), as a
// workload does through ContainerSocket.
func Resource(ctx context.Context, socket, id string) (*Response, error) {
	return oneShot(ctx, socket, &Request{Op: OpResource, Resource: id})
}

// Evidence asks the enclave for evidence over reportData (exactly 64 bytes), as a workload does
// through ContainerSocket.
func Evidence(ctx context.Context, socket string, reportData []byte) (*Response, error) {
	return oneShot(ctx, socket, &Request{Op: OpEvidence, ReportData: reportData})
}

// oneShot is one request and its response, within DefaultCallTimeout when ctx sets no deadline.
// A response that carries an error is returned with it.
func oneShot(ctx context.Context, socket string, req *Request) (*Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	resp, c, err := call(ctx, socket, req)
	if err != nil {
		return nil, fmt.Errorf("reach the enclave at %s: %w", socket, err)
	}
	c.Close()
	if err := resp.Err(); err != nil {
		return resp, err
	}
	return resp, nil
}
