package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// serve answers each connection to a fresh socket with respond's response; respond nil never
// answers (a PID 1 stuck in pal_init).
func serve(t *testing.T, respond func(*Request) *Response) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "runelet.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				cc := NewConn(c)
				defer cc.Close()
				var req Request
				files, err := cc.Recv(&req)
				CloseFiles(files)
				if err != nil || respond == nil {
					time.Sleep(time.Hour)
					return
				}
				_ = cc.Send(respond(&req))
			}()
		}
	}()
	return sock
}

func TestClient(t *testing.T) {
	sock := serve(t, func(r *Request) *Response {
		switch r.Op {
		case OpReady:
			return &Response{Measurement: "m"}
		case OpAttest:
			return &Response{Evidence: r.Nonce}
		}
		return &Response{Error: "operation " + r.Op + " refused"}
	})
	ctx := context.Background()
	if resp, err := Ready(ctx, sock); err != nil || resp.Measurement != "m" {
		t.Errorf("Ready: %+v, %v", resp, err)
	}
	if resp, err := Attest(ctx, sock, []byte("nonce")); err != nil || string(resp.Evidence) != "nonce" {
		t.Errorf("Attest: %+v, %v", resp, err)
	}
	// The runelet's refusal comes back with the response.
	if resp, err := Start(ctx, sock); err == nil || resp == nil || !strings.Contains(err.Error(), "operation start refused") {
		t.Errorf("Start: %+v, %v", resp, err)
	}
	if _, err := Evidence(ctx, filepath.Join(t.TempDir(), "none.sock"), make([]byte, 64)); err == nil || !strings.Contains(err.Error(), "reach the enclave") {
		t.Errorf("no socket: %v", err)
	}
}

// TestClientContext: the context bounds every call: its deadline is the connection's (a PID 1
// that never answers fails with os.ErrDeadlineExceeded, which rune create reports as a hung
// initialisation), and cancelling it ends the call.
func TestClientContext(t *testing.T) {
	sock := serve(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Ready(ctx, sock); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Ready past its deadline: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	if _, err := Attest(ctx, sock, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Attest cancelled: %v", err)
	}
	// Ready waits for a socket that is not there yet, until its deadline.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := Ready(ctx, filepath.Join(t.TempDir(), "later.sock")); err == nil {
		t.Error("Ready on a socket that never appears succeeded")
	}
}

// TestErrorKindsCrossTheSocket: a failure PID 1 sends keeps its kind (and phase) on the client's
// side, so that the client branches with errors.Is, not on the words.
func TestErrorKindsCrossTheSocket(t *testing.T) {
	sock := serve(t, func(r *Request) *Response {
		switch r.Op {
		case OpStart:
			return ErrorResponse(fmt.Errorf("start: %w", enclave.WithKind(enclave.KindNotFound, errors.New(`entrypoint "x": executable file not found in $PATH`))))
		case OpAttest:
			return ErrorResponse(enclave.WithKind(enclave.KindHardwareAbsent, errors.New("no attester")))
		}
		return ErrorResponse(enclave.TimeoutIn(InitPhasePALInit, errors.New("slow")))
	})
	ctx := context.Background()
	if _, err := Start(ctx, sock); !errors.Is(err, enclave.ErrNotFound) || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("Start: %v", err)
	}
	if _, err := Attest(ctx, sock, nil); !errors.Is(err, enclave.ErrHardwareAbsent) || errors.Is(err, enclave.ErrNotFound) {
		t.Errorf("Attest: %v", err)
	}
	if _, err := Ready(ctx, sock); !errors.Is(err, &enclave.Error{Kind: enclave.KindTimeout, Phase: InitPhasePALInit}) {
		t.Errorf("Ready: %v", err)
	}
	// The prepare boundary carries kinds the same way.
	data, _ := json.Marshal(PrepareError(enclave.WithKind(enclave.KindLimit, errors.New("too large"))))
	var resp PrepareResponse
	if err := json.Unmarshal(data, &resp); err != nil || !errors.Is(resp.Err(), enclave.ErrLimit) {
		t.Errorf("prepare response %s: %v", data, resp.Err())
	}
}
