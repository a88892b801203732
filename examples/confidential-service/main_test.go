package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
)

// enclave is a sim platform and an endorsed enclave key, written where the service can read it.
type enclave struct {
	platform    *sim.Platform
	key         *sim.EnclaveKey
	measurement string
	keyFile     string
	rootFile    string
}

func newEnclave(t *testing.T, name string) *enclave {
	t.Helper()
	p, key, m := simtest.Enclave(t, name, "builtin:native")
	e := &enclave{platform: p, key: key, measurement: m}
	b, err := e.key.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.keyFile, e.rootFile = filepath.Join(dir, "enclave-key.pem"), filepath.Join(dir, "platform.pem")
	if err := os.WriteFile(e.keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.rootFile, p.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *enclave) policyJSON() string {
	return `{"tees":{"sim":{"measurements":{"measurement":["` + e.measurement + `"]},"allow_unknown_tcb":true}}}`
}

func (e *enclave) verifier(t *testing.T) *enclavetls.Verifier {
	t.Helper()
	p, err := policy.Parse([]byte(e.policyJSON()))
	if err != nil {
		t.Fatal(err)
	}
	v := &enclavetls.Verifier{Policy: p, RequireFresh: true}
	v.Options.SimRoots = append(v.Options.SimRoots, e.platform.Certificate())
	return v
}

// start runs the service in-process with args and returns its address and a stop function that
// reports run's result.
func start(t *testing.T, args ...string) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("service did not start: %v", err)
	}
	stopped := false
	var result error
	stop = func() error {
		if !stopped {
			cancel()
			result, stopped = <-done, true
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return addr, stop
}

func ask(t *testing.T, conn *enclavetls.Conn, req *wire.Request) *wire.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
	defer cancel()
	var resp wire.Response
	if err := wire.Call(ctx, conn, wire.NewCodec(conn), req, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func dial(t *testing.T, cfg enclavetls.Config, network, addr string) (*enclavetls.Conn, error) {
	t.Helper()
	cl, err := enclavetls.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl.DialContext(context.Background(), network, addr)
}

func TestServeSimKeyFile(t *testing.T) {
	e := newEnclave(t, "confidential service")
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			listen := "tcp://127.0.0.1:0"
			if network == "unix" {
				listen = "unix://" + filepath.Join(t.TempDir(), "svc.sock")
			}
			addr, stop := start(t, "--listen", listen, "--evidence", "sim-key-file", "--sim-key", e.keyFile, "--message", "hi")
			conn, err := dial(t, enclavetls.Config{Verifier: e.verifier(t)}, network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if p := conn.Peer(); !p.Fresh || p.Result.Measurements["measurement"] != e.measurement {
				t.Fatalf("peer %+v", p)
			}
			if r := ask(t, conn, &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.MsgType != "ENCLAVEINFO" || r.Version != 1 || r.Message != "hi" {
				t.Fatalf("GETENCLAVEINFO answer %+v", r)
			}
			if r := ask(t, conn, &wire.Request{Type: wire.TypeEcho, Data: "ping ✓"}); r.Data != "ping ✓" {
				t.Fatalf("echo answer %+v", r)
			}
			if r := ask(t, conn, &wire.Request{Type: "nope"}); r.Type != wire.TypeError {
				t.Fatalf("unknown request answer %+v", r)
			}
			if err := stop(); err != nil {
				t.Fatalf("run: %v", err)
			}
			if network == "unix" {
				if _, err := os.Stat(addr); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("socket left behind: %v", err)
				}
			}
		})
	}
}

// fakeAgent serves the runelet agent protocol's evidence operation (4-byte big-endian length, then
// JSON) from a sim enclave key, as the runelet does inside an enclave container.
func fakeAgent(t *testing.T, key *sim.EnclaveKey) (socket string, calls *atomic.Int64) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	calls = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n uint32
				if binary.Read(c, binary.BigEndian, &n) != nil || n > 1<<20 {
					return
				}
				b := make([]byte, n)
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				var req agent.Request
				resp := agent.Response{TEE: "sim"}
				if err := json.Unmarshal(b, &req); err != nil || req.Op != agent.OpEvidence || len(req.ReportData) != 64 {
					resp.Error = fmt.Sprintf("bad request %+v", req)
				} else {
					calls.Add(1)
					resp.Evidence, err = key.Evidence([64]byte(req.ReportData))
					if err != nil {
						resp.Error = err.Error()
					}
				}
				out, _ := json.Marshal(resp)
				binary.Write(c, binary.BigEndian, uint32(len(out)))
				c.Write(out)
			}()
		}
	}()
	return socket, calls
}

func TestServeAgentEvidence(t *testing.T) {
	e := newEnclave(t, "agent-backed service")
	socket, calls := fakeAgent(t, e.key)
	addr, _ := start(t, "--listen", "tcp://127.0.0.1:0", "--evidence", "agent", "--agent-socket", socket)
	for i := 0; i < 2; i++ { // fresh evidence per connection: one agent call each, plus the first certificate
		conn, err := dial(t, enclavetls.Config{Verifier: e.verifier(t)}, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if r := ask(t, conn, &wire.Request{Type: wire.TypeEcho, Data: "x"}); r.Data != "x" {
			t.Fatalf("echo %+v", r)
		}
		conn.Close()
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("agent answered %d evidence requests, want 3", got)
	}
	// Without an agent the service refuses to start.
	err := run(context.Background(), []string{"--listen", "tcp://127.0.0.1:0", "--agent-socket", filepath.Join(t.TempDir(), "none")}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "enclave agent") {
		t.Fatalf("start without agent: %v", err)
	}
}

func TestClientPolicy(t *testing.T) {
	svc := newEnclave(t, "service")
	client := newEnclave(t, "inclavared")
	dir := t.TempDir()
	pol := filepath.Join(dir, "clients.json")
	if err := os.WriteFile(pol, []byte(client.policyJSON()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, _ := start(t, "--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file", "--sim-key", svc.keyFile,
		"--client-policy", pol, "--sim-root", client.rootFile)
	clientID, err := enclavetls.NewIdentity(func(_ context.Context, rd [64]byte) ([]byte, error) { return client.key.Evidence(rd) }, enclavetls.IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dial(t, enclavetls.Config{Identity: clientID, Verifier: svc.verifier(t)}, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if r := ask(t, conn, &wire.Request{Type: wire.TypeEcho, Data: "attested"}); r.Data != "attested" {
		t.Fatalf("echo %+v", r)
	}
	conn.Close()
	// An unattested client completes its side of the TLS 1.3 handshake but gets no answer.
	conn, err = dial(t, enclavetls.Config{Verifier: svc.verifier(t)}, "tcp", addr)
	if err == nil {
		var resp wire.Response
		err = wire.Call(context.Background(), conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeEcho, Data: "x"}, &resp)
		conn.Close()
	}
	if err == nil {
		t.Fatal("an unattested client was answered")
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnclave(t, "usage")
	for _, args := range [][]string{
		{},
		{"--listen", "127.0.0.1:1"},
		{"--listen", "tcp://127.0.0.1:0", "--evidence", "tpm"},
		{"--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file"},
		{"--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file", "--sim-key", e.keyFile, "--client-policy", e.keyFile},
		{"--listen", "tcp://127.0.0.1:0", "extra"},
		{"--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file", "--sim-key", e.keyFile, "--handshake-timeout", "0s"},
		{"--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file", "--sim-key", e.keyFile, "--idle-timeout", "-1s"},
		{"--bogus"},
	} {
		err := run(context.Background(), args, io.Discard, nil)
		if !errors.As(err, new(usageError)) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// TestBinarySIGTERM runs the built service on a unix socket and stops it with SIGTERM: exit 0,
// socket removed.
func TestBinarySIGTERM(t *testing.T) {
	e := newEnclave(t, "binary")
	bin := filepath.Join(t.TempDir(), "confidential-service")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	socket := filepath.Join(t.TempDir(), "svc.sock")
	cmd := exec.Command(bin, "--listen", "unix://"+socket, "--evidence", "sim-key-file", "--sim-key", e.keyFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make([]byte, 256)
	if n, err := stderr.Read(line); err != nil || !strings.Contains(string(line[:n]), "serving on") {
		t.Fatalf("no start-up line: %q %v", line[:n], err)
	}
	conn, err := dial(t, enclavetls.Config{Verifier: e.verifier(t)}, "unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	if r := ask(t, conn, &wire.Request{Type: wire.TypeEcho, Data: "bin"}); r.Data != "bin" {
		t.Fatalf("echo %+v", r)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	conn.Close()
}

// TestStrictMessages: the service reads inclavared's messages under the same strict rules (one
// reading or none): each malformed message gets an error naming the problem and the connection is
// closed.
func TestStrictMessages(t *testing.T) {
	e := newEnclave(t, "strict")
	addr, _ := start(t, "--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file", "--sim-key", e.keyFile)
	for _, tc := range []struct{ msg, want string }{
		{`{"type":"echo","type":"GETENCLAVEINFO"}`, `member "type" appears twice`},
		{`{"type":"echo","TYPE":"GETENCLAVEINFO"}`, `differ only in case`},
		{`{"type":"echo","data":"x","extra":1}`, `unknown field "extra"`},
		{`{"type":"echo","data":"x"}garbage`, `data after the message`},
		{`{"type":"echo","data":null}`, `null is not allowed`},
		{`null`, `must be a JSON object`},
	} {
		conn, err := dial(t, enclavetls.Config{Verifier: e.verifier(t)}, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard only
		if _, err := conn.Write([]byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		codec := wire.NewCodec(conn)
		var resp wire.Response
		if err := codec.Read(&resp); err != nil || resp.Type != wire.TypeError || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("%s: answer %+v %v, want an error containing %q", tc.msg, resp, err, tc.want)
		}
		if err := codec.Read(&resp); err == nil {
			t.Errorf("%s: connection open after a malformed message", tc.msg)
		}
		conn.Close()
	}
}

// TestDeadlines: a client that connects and sends nothing, one that handshakes and sends no
// request, and one idle after a request are closed by the service (short deadlines so the test is
// quick; it asserts that they close, not when).
func TestDeadlines(t *testing.T) {
	e := newEnclave(t, "deadlines")
	addr, _ := start(t, "--listen", "tcp://127.0.0.1:0", "--evidence", "sim-key-file", "--sim-key", e.keyFile,
		"--handshake-timeout", "200ms", "--idle-timeout", "300ms")
	closed := func(name string, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // hang guard only
		for {
			_, err := c.Read(make([]byte, 64))
			if err == nil {
				continue
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s: not closed by the service", name)
			}
			return
		}
	}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	closed("idle before the handshake", raw)
	conn, err := dial(t, enclavetls.Config{Verifier: e.verifier(t)}, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed("no request", conn)
	conn, err = dial(t, enclavetls.Config{Verifier: e.verifier(t)}, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if r := ask(t, conn, &wire.Request{Type: wire.TypeEcho, Data: "x"}); r.Data != "x" {
		t.Fatalf("echo %+v", r)
	}
	closed("idle after a request", conn)
}
