package security

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
	"github.com/inclavare-containers/inclavare-go/internal/conntest"

	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared"
	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// The inclavared relay (hole 6 and the inclavared part of hole 7 of the trust-holes issue), against
// the real inclavared, confidential-service and shelter binaries on loopback and unix sockets.
//
// The confidential service trusts inclavared's attestation as a proxy for inclavared's clients. So
// an inclavared that forwards for anyone hands the service to anyone (fixed: client attestation is
// the default, the opt-out is explicit and logged); an inclavared that any client can fill with idle
// connections denies the tenant's verifier its attestation (fixed: per-peer limits, a deadline for
// the handshake and first request, pending connections bounded apart from --max-conns, idle slots
// reclaimed); and a message with two readings lets a client show one request to a reviewer or a
// log and have another executed (fixed: strictjson for every message, nothing after a message).

// incHangGuard bounds every wait; it is no timing claim.
const incHangGuard = 30 * time.Second

// incRelay is a confidential service (sim enclave key) that attests its client, and what an
// inclavared in front of it needs.
type incRelay struct {
	dir                          string
	inclavared, service, shelter string   // binaries
	platformKey                  string   // the node's sim platform key
	simRoots                     []string // the node's and the service's platform certificates
	servicePolicy, relayPolicy   string   // reference values of the service and of inclavared
	svcSock                      string
	daemonPlatform               *sim.Platform
	relayMeasurement             string
}

func newIncRelay(t *testing.T) *incRelay {
	t.Helper()
	dir, err := os.MkdirTemp("", "incl") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Readable by the unprivileged user that plays a second local verifier.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &incRelay{dir: dir}
	for _, b := range []struct {
		dst *string
		pkg string
	}{{&r.inclavared, "./cmd/inclavared"}, {&r.service, "./examples/confidential-service"}, {&r.shelter, "./cmd/shelter"}} {
		built := harness.BuildGo(t, b.pkg, "linux", runtime.GOARCH)
		*b.dst = filepath.Join(dir, filepath.Base(built))
		data, err := os.ReadFile(built)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*b.dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The node's sim platform, made before either daemon starts so the service can trust it.
	r.platformKey = filepath.Join(dir, "platform-key.pem")
	if r.daemonPlatform, err = sim.LoadOrCreatePlatform(r.platformKey); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(r.inclavared, "--print-measurement").Output()
	if err != nil {
		t.Fatal(err)
	}
	r.relayMeasurement = strings.TrimSpace(string(out))
	r.relayPolicy = r.write(t, "relay-policy.json", []byte(incSimPolicy(r.relayMeasurement)))

	p, key, m := simtest.Enclave(t, "confidential service", "builtin:native")
	kb, err := key.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	svcKey := r.write(t, "svc-key.pem", kb)
	r.servicePolicy = r.write(t, "svc-policy.json", []byte(incSimPolicy(m)))
	// inclavared and shelter trust both platforms: the node's (inclavared) and the service's.
	r.simRoots = []string{r.write(t, "node-platform.pem", r.daemonPlatform.CertificatePEM()), r.write(t, "svc-platform.pem", p.CertificatePEM())}
	r.svcSock = filepath.Join(dir, "svc.sock")
	startIncProcess(t, "serving on", r.service, "--listen", "unix://"+r.svcSock, "--evidence", "sim-key-file", "--sim-key", svcKey,
		"--client-policy", r.relayPolicy, "--sim-root", r.simRoots[0])
	return r
}

func incSimPolicy(measurements ...string) string {
	b, _ := json.Marshal(measurements)
	return `{"tees":{"sim":{"measurements":{"measurement":` + string(b) + `},"allow_unknown_tcb":true}}}`
}

func (r *incRelay) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// args is an inclavared command line in front of the service.
func (r *incRelay) args(listen string, more ...string) []string {
	return append([]string{"--listen", listen, "--upstream", "unix://" + r.svcSock, "--upstream-policy", r.servicePolicy,
		"--sim-root", r.simRoots[0], "--sim-root", r.simRoots[1], "--sim-platform-key", r.platformKey, "--debug"}, more...)
}

// verifierClient is an Enclave-TLS client that requires fresh evidence of this inclavared, as
// shelter does, optionally attested itself.
func (r *incRelay) verifierClient(t *testing.T, id *enclavetls.Identity) *enclavetls.Client {
	t.Helper()
	p, err := policy.Parse([]byte(incSimPolicy(r.relayMeasurement)))
	if err != nil {
		t.Fatal(err)
	}
	v := &enclavetls.Verifier{Policy: p, RequireFresh: true}
	v.Options.SimRoots = append(v.Options.SimRoots, r.daemonPlatform.Certificate())
	cl, err := enclavetls.NewClient(enclavetls.Config{Identity: id, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// shelterCmd runs shelter remoteattestation against addr: exit 0 means inclavared and the service
// verified.
func (r *incRelay) shelterCmd(addr string) *exec.Cmd {
	return exec.Command(r.shelter, "remoteattestation", "--addr", addr, "--sim-root", r.simRoots[0], "--sim-root", r.simRoots[1],
		"--policy", r.servicePolicy, "--inclavared-policy", r.relayPolicy, "--timeout", "30s")
}

// incProcess is a started daemon binary and its log.
type incProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

func (p *incProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startIncProcess runs bin until the test ends and returns once it printed ready.
func startIncProcess(t *testing.T, ready, bin string, args ...string) *incProcess {
	t.Helper()
	p := &incProcess{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(bin), p.logText())
		}
	})
	lines := make(chan string)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if !seen && strings.Contains(sc.Text(), ready) {
				seen = true
				close(lines)
			}
		}
		if !seen {
			close(lines)
		}
	}()
	select {
	case <-lines:
	case <-time.After(incHangGuard):
	}
	if !strings.Contains(p.logText(), ready) {
		t.Fatalf("%s did not start:\n%s", filepath.Base(bin), p.logText())
	}
	return p
}

func (p *incProcess) openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func incExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func incWaitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(incHangGuard); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

// TestInclavaredUnattestedGetEvidenceOnly: before the fix, a node operator who started
// inclavared without --client-policy had it forward every network client's requests to the
// service under inclavared's attestation. Now a verifier that is not attested gets evidence only:
// shelter remoteattestation (attest) passes, but a forward request from the same kind of client is
// refused by inclavared itself, naming --client-policy, and never reaches the service.
func TestInclavaredUnattestedGetEvidenceOnly(t *testing.T) {
	r := newIncRelay(t)
	sock := filepath.Join(r.dir, "inclavared.sock")
	d := startIncProcess(t, "listening on", r.inclavared, r.args("unix://"+sock)...)
	if !strings.Contains(d.logText(), "evidence only, nothing forwarded") {
		t.Errorf("start-up line does not say what unattested verifiers get:\n%s", d.logText())
	}
	if out, err := r.shelterCmd("unix://" + sock).CombinedOutput(); err != nil || !strings.Contains(string(out), "remote attestation: PASS") {
		t.Fatalf("shelter (evidence only): %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), incHangGuard)
	defer cancel()
	conn, err := r.verifierClient(t, nil).DialContext(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var resp wire.Response
	forward := &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"for the attacker"}`)}
	if err := wire.Call(ctx, conn, wire.NewCodec(conn), forward, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Type != wire.TypeError || resp.Error != inclavared.ErrForwardNeedsAttestedClient || resp.Response != nil {
		t.Fatalf("forward for an unattested verifier: %+v", resp)
	}
}

// TestInclavaredRefusesUnattestedClient: a network attacker without evidence (any client, here
// shaped as shelter: an Enclave-TLS client that verifies inclavared but presents nothing) asks a
// default-configured inclavared (--client-policy) to forward to the service. The handshake ends in
// "certificate required": no answer, nothing forwarded. The real shelter binary, which presents no
// evidence either, fails the same way. A verifier attested against the client policy is served.
func TestInclavaredRefusesUnattestedClient(t *testing.T) {
	r := newIncRelay(t)
	verifierPlatform, verifierKey, verifierMeasurement := simtest.Enclave(t, "tenant verifier", "verifier")
	roots := r.write(t, "verifier-platform.pem", verifierPlatform.CertificatePEM())
	clientPolicy := r.write(t, "client-policy.json", []byte(incSimPolicy(verifierMeasurement)))
	sock := filepath.Join(r.dir, "inclavared.sock")
	d := startIncProcess(t, "listening on", r.inclavared, r.args("unix://"+sock, "--client-policy", clientPolicy, "--sim-root", roots)...)

	ctx, cancel := context.WithTimeout(context.Background(), incHangGuard)
	defer cancel()
	forward := &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"for the attacker"}`)}
	var resp wire.Response
	conn, err := r.verifierClient(t, nil).DialContext(ctx, "unix", sock)
	if err == nil { // TLS 1.3: the client may finish its side before the server refuses it
		err = wire.Call(ctx, conn, wire.NewCodec(conn), forward, &resp)
		conn.Close()
	}
	if err == nil || resp.Type != "" {
		t.Fatalf("unattested client: answer %+v, error %v; want the handshake refused", resp, err)
	}
	// The daemon says why (its --debug log): the client presented no certificate, hence no evidence.
	incWaitUntil(t, "the refusal logged", func() bool { return strings.Contains(d.logText(), "verifier handshake failed") })
	if log := d.logText(); !strings.Contains(log, "didn't provide a certificate") {
		t.Fatalf("refusal not explained:\n%s", log)
	}
	out, err := r.shelterCmd("unix://" + sock).CombinedOutput()
	// (Its error is the TLS alert or a broken pipe, whichever it meets first; the daemon's log
	// above says why.)
	if incExitCode(err) != 1 || !strings.Contains(string(out), "remote attestation: FAIL") {
		t.Fatalf("shelter (unattested) against a daemon that attests clients: %v\n%s", err, out)
	}

	id, err := enclavetls.NewIdentity(func(_ context.Context, rd [64]byte) ([]byte, error) { return verifierKey.Evidence(rd) }, enclavetls.IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err = r.verifierClient(t, id).DialContext(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp = wire.Response{}
	if err := wire.Call(ctx, conn, wire.NewCodec(conn), forward, &resp); err != nil || resp.Type != wire.TypeForwarded {
		t.Fatalf("attested verifier: %+v %v\n%s", resp, err, d.logText())
	}
}

// incHelloStart is a TLS record header announcing a 512-byte ClientHello and its first bytes.
var incHelloStart = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

func incDialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: incHangGuard}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// incLastCounts is the pending/serving count of the last connection inclavared closed (its --debug log).
func incLastCounts(log string) string {
	i := strings.LastIndex(log, `msg="verifier connection closed"`)
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(log[i:], "\n")
	return line[strings.Index(line, "pending="):]
}

// TestInclavaredIdleClients: a network attacker who reaches inclavared's TCP port (an inclavared
// that serves unattested verifiers, so the attacker can complete handshakes too) opens more idle
// connections than --max-conns from one address, half-open ones that stall inside the ClientHello,
// handshakes that never send a request, and connections that send one request and then hold on.
// Before the fix every accepted connection took one of --max-conns slots until its timeout, so the
// tenant's verifier waited in the listen backlog. Now the per-address limit closes the excess at
// accept, pending connections are bounded apart from --max-conns (the oldest gives way), and an idle
// connection gives its slot to a verifier whose request arrived: the real shelter binary passes
// remote attestation while the attackers hold their sockets, with timeouts (10 min) far beyond the
// test. Afterwards inclavared holds none of their connections or descriptors.
func TestInclavaredIdleClients(t *testing.T) {
	r := newIncRelay(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := startIncProcess(t, "listening on", r.inclavared, r.args("tcp://"+addr, "--allow-unattested-clients",
		"--max-conns", "2", "--max-pending", "4", "--max-conns-per-peer", "3",
		"--handshake-timeout", "10m", "--idle-timeout", "10m")...)
	// The opt-out is loud: a warning naming the risk at start, a line per unattested connection.
	incWaitUntil(t, "a start-up warning naming the risk", func() bool {
		return strings.Contains(d.logText(), "level=WARN msg=\""+inclavared.UnattestedClientsRisk)
	})
	if out, err := r.shelterCmd("tcp://" + addr).CombinedOutput(); err != nil {
		t.Fatalf("shelter before the attack: %v\n%s", err, out)
	}
	if !strings.Contains(d.logText(), "serving an unattested verifier") {
		t.Error("no per-connection line for an unattested verifier")
	}
	incWaitUntil(t, "the first verifier's connection closed", func() bool { return incLastCounts(d.logText()) == "pending=0 serving=0" })
	fds := d.openFDs(t)

	a := &conntest.Held{}
	defer a.CloseAll()
	for i := 0; i < 10; i++ {
		a.Watch("idle", incDialFrom(t, "127.0.0.2", addr))
	}
	incWaitUntil(t, "7 of 10 idle connections from one address refused", func() bool { return a.ClosedIn("idle") == 7 })
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		for i := 0; i < 3; i++ {
			c := incDialFrom(t, src, addr)
			if _, err := c.Write(incHelloStart); err != nil {
				t.Fatal(err)
			}
			a.Watch("half-open", c)
		}
	}
	client := r.verifierClient(t, nil)
	handshake := func(src string) *enclavetls.Conn {
		raw := incDialFrom(t, src, addr)
		_ = raw.SetDeadline(time.Now().Add(incHangGuard))
		conn, err := client.Client(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Handshake(); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	for _, src := range []string{"127.0.0.5", "127.0.0.6"} {
		for i := 0; i < 2; i++ {
			conn := handshake(src)
			var resp wire.Response
			if err := wire.Call(context.Background(), conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeGetEnclaveInfo}, &resp); err != nil || resp.Error != "" {
				t.Fatalf("attacker's request: %+v %v", resp, err)
			}
			_ = conn.SetDeadline(time.Time{})
			a.Watch("one request, then idle", conn)
		}
	}
	for i := 0; i < 2; i++ {
		conn := handshake("127.0.0.7")
		_ = conn.SetDeadline(time.Time{})
		a.Watch("handshake, no request", conn)
	}
	// Everything is full: 4 pending, 2 serving (the last log line counts the connection closed).
	incWaitUntil(t, "pending and serving connections full", func() bool {
		return strings.HasPrefix(incLastCounts(d.logText()), "pending=4 serving=2")
	})

	// The tenant's verifier: the shelter binary, from 127.0.0.1.
	out, err := r.shelterCmd("tcp://" + addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "remote attestation: PASS") {
		t.Fatalf("shelter during the attack: %v\n%s", err, out)
	}
	// The attackers still hold sockets (no timeout freed them).
	incWaitUntil(t, "shelter's connection closed", func() bool {
		return strings.Contains(d.logText(), `peer="ip 127.0.0.1" pending=3 serving=1`)
	})

	a.CloseAll()
	incWaitUntil(t, "inclavared holds no connection", func() bool { return incLastCounts(d.logText()) == "pending=0 serving=0" })
	incWaitUntil(t, "inclavared's descriptors back to the baseline", func() bool { return d.openFDs(t) <= fds })
}

// TestInclavaredPerUIDLimit: on a unix socket the limit is per client UID (SO_PEERCRED, set by the
// kernel). A local user who holds its UID's connections idle (here root, with
// --max-conns-per-peer 2) gets no more, its own verifier included; a verifier of another user (the
// shelter binary as nobody) is served meanwhile.
func TestInclavaredPerUIDLimit(t *testing.T) {
	harness.NeedRoot(t)
	r := newIncRelay(t)
	sock := filepath.Join(r.dir, "inclavared.sock")
	startIncProcess(t, "listening on", r.inclavared, r.args("unix://"+sock, "--allow-unattested-clients",
		"--max-conns-per-peer", "2", "--handshake-timeout", "10m")...)
	if err := os.Chmod(sock, 0o777); err != nil { // the operator lets its users reach the socket
		t.Fatal(err)
	}
	a := &conntest.Held{}
	defer a.CloseAll()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		a.Watch("idle", c)
	}
	incWaitUntil(t, "the third connection of one UID refused", func() bool { return a.ClosedIn("idle") == 1 })
	if out, err := r.shelterCmd("unix://" + sock).CombinedOutput(); err == nil {
		t.Fatalf("shelter of the UID that holds its quota was served:\n%s", out)
	}
	nobody := r.shelterCmd("unix://" + sock)
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := nobody.CombinedOutput(); err != nil || !strings.Contains(string(out), "remote attestation: PASS") {
		t.Fatalf("shelter as another user: %v\n%s", err, out)
	}
}

// TestInclavaredStrictProtocol: a client (network attacker or confused verifier) sends messages
// with two readings or none over a real Enclave-TLS connection. Before, the last duplicate won,
// case variants and unknown members were ignored, and trailing data was left for later: the
// daemon acted on a reading a reviewer or log would not see. Now each gets an error naming the
// problem from inclavared itself (never a forwarded answer) and the connection is closed.
func TestInclavaredStrictProtocol(t *testing.T) {
	r := newIncRelay(t)
	sock := filepath.Join(r.dir, "inclavared.sock")
	startIncProcess(t, "listening on", r.inclavared, r.args("unix://"+sock, "--allow-unattested-clients")...)
	ctx, cancel := context.WithTimeout(context.Background(), incHangGuard)
	defer cancel()
	client := r.verifierClient(t, nil)
	for _, tc := range []struct{ name, msg, want string }{
		{"duplicate key", `{"type":"attest","type":"GETENCLAVEINFO"}`, `member "type" appears twice`},
		{"case variant", `{"type":"attest","TYPE":"forward"}`, `differ only in case`},
		{"unknown field", `{"type":"GETENCLAVEINFO","as":"admin"}`, `unknown field "as"`},
		{"trailing garbage", `{"type":"GETENCLAVEINFO"}garbage`, `data after the message`},
		{"null", `{"type":"GETENCLAVEINFO","nonce":null}`, `null is not allowed`},
		{"null message", `null`, `must be a JSON object`},
		{"duplicate in the forwarded request", `{"type":"forward","request":{"type":"echo","data":"a","data":"b"}}`, `member "data" appears twice in request`},
	} {
		conn, err := client.DialContext(ctx, "unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(incHangGuard))
		if _, err := conn.Write([]byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		codec := wire.NewCodec(conn)
		var resp wire.Response
		if err := codec.Read(&resp); err != nil || resp.Type != wire.TypeError || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("%s: answer %+v %v, want an error containing %q", tc.name, resp, err, tc.want)
		}
		if err := codec.Read(&resp); err == nil {
			t.Errorf("%s: the connection stayed open", tc.name)
		}
		conn.Close()
	}
	// Control: the same requests well formed are served.
	conn, err := client.DialContext(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var resp wire.Response
	if err := wire.Call(ctx, conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeForward,
		Request: json.RawMessage(`{"type":"echo","data":"a"}`)}, &resp); err != nil || resp.Type != wire.TypeForwarded {
		t.Fatalf("well-formed forward: %+v %v", resp, err)
	}
}
