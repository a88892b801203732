package inclavared

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/attestation/sim"
	"github.com/inclavare-containers/inclavare-go/attestation/sim/simtest"
	"github.com/inclavare-containers/inclavare-go/enclavetls"
	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
)

// simTEE is one sim platform and an enclave it endorsed.
type simTEE struct {
	platform    *sim.Platform
	key         *sim.EnclaveKey
	measurement string
}

func newSimTEE(t testing.TB, name string) *simTEE {
	t.Helper()
	p, key, m := simtest.Enclave(t, name, "inclavared-test")
	return &simTEE{platform: p, key: key, measurement: m}
}

func (s *simTEE) identity(t testing.TB) *enclavetls.Identity {
	t.Helper()
	id, err := enclavetls.NewIdentity(simEvidence(s.key), enclavetls.IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// verifier trusts the TEEs' platforms and accepts their measurements.
func verifier(t testing.TB, fresh bool, accept ...*simTEE) *enclavetls.Verifier {
	t.Helper()
	v := &enclavetls.Verifier{RequireFresh: fresh}
	var ms []string
	for _, s := range accept {
		v.Options.SimRoots = append(v.Options.SimRoots, s.platform.Certificate())
		ms = append(ms, fmt.Sprintf("%q", s.measurement))
	}
	p, err := policy.Parse([]byte(`{"tees":{"sim":{"measurements":{"measurement":[` + strings.Join(ms, ",") + `]},"allow_unknown_tcb":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	v.Policy = p
	return v
}

// upstream is a test confidential service: GETENCLAVEINFO and echo over Enclave-TLS. requests
// counts requests it received (after a successful handshake).
type upstream struct {
	addr     string
	requests atomic.Int64
}

func startUpstream(t *testing.T, tee *simTEE, clients *enclavetls.Verifier) *upstream {
	t.Helper()
	srv, err := enclavetls.NewServer(enclavetls.Config{Identity: tee.identity(t), Verifier: clients})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	u := &upstream{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				conn := srv.Server(c)
				if conn.Handshake() != nil {
					return
				}
				codec := wire.NewCodec(conn)
				for {
					var req wire.Request
					if codec.Read(&req) != nil {
						return
					}
					u.requests.Add(1)
					switch req.Type {
					case wire.TypeGetEnclaveInfo:
						codec.Write(&wire.Response{MsgType: wire.MsgTypeEnclaveInfo, Version: wire.ProtocolVersion, Message: "hello from the test service"})
					case wire.TypeEcho:
						codec.Write(&wire.Response{Type: wire.TypeEcho, Data: req.Data})
					default:
						codec.Write(&wire.Response{Type: wire.TypeError, Error: "unknown request"})
					}
				}
			}()
		}
	}()
	return u
}

type daemonSetup struct {
	daemonTEE, upstreamTEE *simTEE
	upstream               *upstream
	network, addr          string
	d                      *Daemon
	cancel                 context.CancelFunc
	done                   chan error
}

// startDaemon runs a daemon (sim identity) in front of an upstream. upstreamPolicy decides which
// upstream measurement it accepts; mutate adjusts the config.
func startDaemon(t *testing.T, network string, mutate func(*Config, *daemonSetup)) *daemonSetup {
	t.Helper()
	s := &daemonSetup{daemonTEE: newSimTEE(t, "inclavared"), upstreamTEE: newSimTEE(t, "service")}
	s.upstream = startUpstream(t, s.upstreamTEE, verifier(t, true, s.daemonTEE))
	cfg := Config{
		Identity:               s.daemonTEE.identity(t),
		AllowUnattestedClients: true, // most tests play shelter, which is not attested
		UpstreamNetwork:        "tcp",
		UpstreamAddress:        s.upstream.addr,
		UpstreamVerifier:       verifier(t, true, s.upstreamTEE),
	}
	if mutate != nil {
		mutate(&cfg, s)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	var l net.Listener
	if network == "unix" {
		s.network, s.addr = "unix", filepath.Join(t.TempDir(), "inclavared.sock")
		l, err = net.Listen("unix", s.addr)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		s.network = "tcp"
		if l != nil {
			s.addr = l.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- d.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// dial connects as shelter does: fresh evidence from inclavared required.
func (s *daemonSetup) dial(t testing.TB) (*enclavetls.Conn, *wire.Codec) {
	t.Helper()
	cl, err := enclavetls.NewClient(enclavetls.Config{Verifier: verifier(t, true, s.daemonTEE)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := cl.DialContext(context.Background(), s.network, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	return conn, wire.NewCodec(conn)
}

func call(t testing.TB, conn net.Conn, c *wire.Codec, req any) *wire.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
	defer cancel()
	var resp wire.Response
	if err := wire.Call(ctx, conn, c, req, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func TestRequests(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			s := startDaemon(t, network, nil)
			conn, codec := s.dial(t)
			defer conn.Close()
			if p := conn.Peer(); p == nil || !p.Fresh || p.Result.Measurements["measurement"] != s.daemonTEE.measurement {
				t.Fatalf("inclavared peer %+v", p)
			}

			info := call(t, conn, codec, &wire.Request{Type: wire.TypeGetEnclaveInfo})
			if info.Error != "" || info.MsgType != wire.MsgTypeEnclaveInfo || info.Version != 1 || info.ID == "" ||
				info.MRENCLAVE != s.upstreamTEE.measurement || info.Message != "hello from the test service" || info.TEE != "sim" {
				t.Fatalf("GETENCLAVEINFO answer %+v", info)
			}

			nonce := []byte("shelter's nonce")
			att := call(t, conn, codec, &wire.Request{Type: wire.TypeAttest, Nonce: hex.EncodeToString(nonce)})
			if att.Error != "" || att.Type != wire.TypeAttestation {
				t.Fatalf("attest answer %+v", att)
			}
			cert, err := x509.ParseCertificate(att.UpstreamCertificate)
			if err != nil {
				t.Fatal(err)
			}
			opts := attestation.Options{SimRoots: []*x509.Certificate{s.upstreamTEE.platform.Certificate()}}
			p, err := enclavetls.VerifyCertificate(context.Background(), cert, opts, nonce)
			if err != nil || p.Result.Measurements["measurement"] != s.upstreamTEE.measurement {
				t.Fatalf("the upstream certificate does not verify with the verifier's nonce: %v", err)
			}
			if _, err := enclavetls.VerifyCertificate(context.Background(), cert, opts, []byte("another nonce")); err == nil {
				t.Fatal("upstream certificate verified with another nonce")
			}

			fwd := call(t, conn, codec, &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"abc"}`)})
			var echo wire.Response
			if fwd.Error != "" || json.Unmarshal(fwd.Response, &echo) != nil || echo.Data != "abc" {
				t.Fatalf("forward answer %+v", fwd)
			}
			// The forward went over the connection the verifier just attested (same certificate).
			if string(fwd.UpstreamCertificate) != string(att.UpstreamCertificate) {
				t.Error("forward used another upstream connection than the attested one")
			}

			for _, tc := range []struct {
				req  wire.Request
				want string
			}{
				{wire.Request{Type: "bogus"}, "unknown request type"},
				{wire.Request{Type: wire.TypeAttest, Nonce: "zz"}, "nonce must be"},
				{wire.Request{Type: wire.TypeAttest}, "nonce must be"},
				{wire.Request{Type: wire.TypeAttest, Nonce: strings.Repeat("00", wire.MaxNonceSize+1)}, "nonce must be"},
				{wire.Request{Type: wire.TypeForward}, "JSON object"},
				{wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`[1]`)}, "JSON object"},
			} {
				if r := call(t, conn, codec, &tc.req); r.Type != wire.TypeError || !strings.Contains(r.Error, tc.want) {
					t.Errorf("%+v: answer %+v, want error %q", tc.req, r, tc.want)
				}
			}
			// Still usable after errors.
			if r := call(t, conn, codec, &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.Error != "" {
				t.Fatal(r.Error)
			}
		})
	}
}

// TestOriginalClient speaks as the original Inclavare clients did: one bare JSON object, no
// newline, then read the answer.
func TestOriginalClient(t *testing.T) {
	s := startDaemon(t, "tcp", nil)
	conn, _ := s.dial(t)
	defer conn.Close()
	if _, err := conn.Write([]byte(`{"type":"GETENCLAVEINFO"}`)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "msgtype", "version", "mrenclave", "message"} {
		if _, ok := m[k]; !ok {
			t.Errorf("answer lacks %q: %s", k, line)
		}
	}
	if m["msgtype"] != "ENCLAVEINFO" || m["version"] != float64(1) || m["mrenclave"] != s.upstreamTEE.measurement {
		t.Errorf("answer %s", line)
	}
}

// TestNeverForwardsToUnattestedUpstream: an upstream that fails attestation or policy never
// receives a request, and the verifier gets an error.
func TestNeverForwardsToUnattestedUpstream(t *testing.T) {
	plainKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name   string
		mutate func(*Config, *daemonSetup)
		want   string
	}{
		{"measurement not in the upstream policy", func(c *Config, s *daemonSetup) {
			c.UpstreamVerifier = verifier(t, true, s.daemonTEE) // trusts the platform, wrong measurement
			c.UpstreamVerifier.Options.SimRoots = append(c.UpstreamVerifier.Options.SimRoots, s.upstreamTEE.platform.Certificate())
		}, "policy"},
		{"untrusted upstream platform", func(c *Config, s *daemonSetup) {
			c.UpstreamVerifier = verifier(t, true, newSimTEE(t, "elsewhere"))
		}, "not among"},
		{"upstream refuses inclavared", func(c *Config, s *daemonSetup) {
			other := newSimTEE(t, "other daemon")
			c.Identity = other.identity(t) // the upstream only accepts the original daemon TEE
			s.daemonTEE = other
		}, "bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDaemon(t, "tcp", tc.mutate)
			conn, codec := s.dial(t)
			defer conn.Close()
			for _, req := range []*wire.Request{
				{Type: wire.TypeGetEnclaveInfo},
				{Type: wire.TypeAttest, Nonce: "00"},
				{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"secret"}`)},
			} {
				r := call(t, conn, codec, req)
				if r.Type != wire.TypeError || !strings.Contains(r.Error, tc.want) || r.UpstreamCertificate != nil || r.Response != nil {
					t.Errorf("%s: answer %+v, want an error containing %q", req.Type, r, tc.want)
				}
			}
			if n := s.upstream.requests.Load(); n != 0 {
				t.Fatalf("the upstream received %d requests", n)
			}
		})
	}
	t.Run("plain TLS upstream", func(t *testing.T) {
		leafTmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, leafTmpl, leafTmpl, &plainKey.PublicKey, plainKey)
		if err != nil {
			t.Fatal(err)
		}
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: plainKey}}})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var got atomic.Int64
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if n, _ := c.Read(make([]byte, 1)); n > 0 {
						got.Add(1)
					}
				}()
			}
		}()
		s := startDaemon(t, "tcp", func(c *Config, _ *daemonSetup) { c.UpstreamAddress = l.Addr().String() })
		conn, codec := s.dial(t)
		defer conn.Close()
		r := call(t, conn, codec, &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"secret"}`)})
		if r.Type != wire.TypeError || !strings.Contains(r.Error, enclavetls.ErrNoEvidence.Error()) {
			t.Fatalf("answer %+v", r)
		}
		if got.Load() != 0 {
			t.Fatal("the plain upstream received data")
		}
	})
}

// TestClientVerifier makes inclavared attest verifiers too: an unattested one gets nothing.
func TestClientVerifier(t *testing.T) {
	clientTEE := newSimTEE(t, "attested verifier")
	s := startDaemon(t, "tcp", func(c *Config, _ *daemonSetup) {
		c.ClientVerifier, c.AllowUnattestedClients = verifier(t, true, clientTEE), false
	})
	cl, err := enclavetls.NewClient(enclavetls.Config{Verifier: verifier(t, true, s.daemonTEE)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := cl.DialContext(context.Background(), "tcp", s.addr)
	if err == nil {
		// TLS 1.3: the client may finish before the server rejects its (missing) certificate.
		_, err = wire.NewCodec(conn).Write(&wire.Request{Type: wire.TypeGetEnclaveInfo}), nil
		var resp wire.Response
		err = wire.NewCodec(conn).Read(&resp)
		conn.Close()
	}
	if err == nil {
		t.Fatal("an unattested verifier was served")
	}
	cl, err = enclavetls.NewClient(enclavetls.Config{Identity: clientTEE.identity(t), Verifier: verifier(t, true, s.daemonTEE)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err = cl.DialContext(context.Background(), "tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if r := call(t, conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.Error != "" {
		t.Fatal(r.Error)
	}
}

// TestConcurrentVerifiers runs 50 verifiers at once against a daemon that serves at most 8 at a
// time: every one is served. (They all come from 127.0.0.1: the per-peer limit is raised.)
func TestConcurrentVerifiers(t *testing.T) {
	const n = 50
	s := startDaemon(t, "tcp", func(c *Config, _ *daemonSetup) { c.MaxConns, c.MaxConnsPerPeer = 8, n })
	var wg sync.WaitGroup
	errs := make(chan error, n)
	cl, err := enclavetls.NewClient(enclavetls.Config{Verifier: verifier(t, true, s.daemonTEE)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard only
			defer cancel()
			conn, err := cl.DialContext(ctx, "tcp", s.addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			codec := wire.NewCodec(conn)
			data := fmt.Sprintf("verifier %d", i)
			var resp wire.Response
			if err := wire.Call(ctx, conn, codec, &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(fmt.Sprintf(`{"type":"echo","data":%q}`, data))}, &resp); err != nil {
				errs <- err
				return
			}
			var echo wire.Response
			if resp.Error != "" || json.Unmarshal(resp.Response, &echo) != nil || echo.Data != data {
				errs <- fmt.Errorf("verifier %d: answer %+v", i, resp)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Each verifier's upstream connection is confirmed with one GETENCLAVEINFO, then forwards.
	if got := s.upstream.requests.Load(); got != 2*n {
		t.Errorf("upstream saw %d requests, want %d", got, 2*n)
	}
}

func TestShutdown(t *testing.T) {
	s := startDaemon(t, "unix", nil)
	conn, codec := s.dial(t)
	defer conn.Close()
	if r := call(t, conn, codec, &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.Error != "" {
		t.Fatal(r.Error)
	}
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	s.done <- nil // for the cleanup
	if _, err := os.Stat(s.addr); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still there after shutdown: %v", err)
	}
	// The idle verifier's connection was closed.
	var resp wire.Response
	if err := codec.Read(&resp); err == nil {
		t.Fatalf("read after shutdown: %+v", resp)
	}
}

func TestNewRejects(t *testing.T) {
	tee := newSimTEE(t, "x")
	ok := func(mutate func(*Config)) Config {
		c := Config{Identity: tee.identity(t), UpstreamNetwork: "tcp", UpstreamAddress: "127.0.0.1:1",
			UpstreamVerifier: verifier(t, true, tee), AllowUnattestedClients: true}
		mutate(&c)
		return c
	}
	if _, err := New(ok(func(*Config) {})); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no upstream verifier", ok(func(c *Config) { c.UpstreamVerifier = nil }), "upstream policy is required"},
		{"bad network", ok(func(c *Config) { c.UpstreamNetwork = "udp" }), "want tcp or unix"},
		{"no identity", ok(func(c *Config) { c.Identity = nil }), "no identity"},
		{"client verifier and unattested clients", ok(func(c *Config) { c.ClientVerifier = verifier(t, true, tee) }), "exclude each other"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"tcp://127.0.0.1:8080", "tcp", "127.0.0.1:8080"},
		{"tcp://[::1]:1", "tcp", "[::1]:1"},
		{"unix:///run/inclavared.sock", "unix", "/run/inclavared.sock"},
		{"tcp://127.0.0.1", "", ""},
		{"unix://relative.sock", "", ""},
		{"127.0.0.1:80", "", ""},
		{"http://x:1", "", ""},
	} {
		n, a, err := wire.ParseAddress(tc.in)
		if n != tc.network || a != tc.addr || (err != nil) != (tc.network == "") {
			t.Errorf("%q: %q %q %v", tc.in, n, a, err)
		}
	}
}

func TestCodecLimits(t *testing.T) {
	big := `{"type":"echo","data":"` + strings.Repeat("a", 2*wire.MaxMessageSize+10) + `"}`
	c := wire.NewCodec(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(big), io.Discard})
	var req wire.Request
	if err := c.Read(&req); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized message: %v", err)
	}
	c = wire.NewCodec(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(`{"type":"a"}{"type":"b"}` + "\n" + `{"type":"c"}`), io.Discard})
	for _, want := range []string{"a", "b", "c"} {
		if err := c.Read(&req); err != nil || req.Type != want {
			t.Fatalf("%q: %+v %v", want, req, err)
		}
	}
	if err := c.Read(&req); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestEvidenceSource(t *testing.T) {
	dir := t.TempDir()
	platformKey := filepath.Join(dir, "sim", "platform-key.pem")
	ev, desc, err := EvidenceSource(EvidenceConfig{Kind: AttesterSim, SimPlatformKey: platformKey})
	if err != nil {
		t.Fatal(err)
	}
	self, err := SelfMeasurement()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(desc, self) {
		t.Errorf("description %q does not name the measurement", desc)
	}
	rd := [64]byte{1, 2, 3}
	b, err := ev(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sim.LoadPlatformCertificate(platformKey)
	if err != nil {
		t.Fatal(err)
	}
	res, err := attestation.Verify(context.Background(), b, attestation.Options{SimRoots: []*x509.Certificate{cert}})
	if err != nil || res.Measurements["measurement"] != self || res.Details["runtime"] != SimRuntimeName || string(res.ReportData[:3]) != "\x01\x02\x03" {
		t.Fatalf("%+v %v", res, err)
	}

	tee := newSimTEE(t, "key file")
	kb, err := tee.key.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "enclave-key.pem")
	if err := os.WriteFile(keyFile, kb, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, desc, err := EvidenceSource(EvidenceConfig{Kind: AttesterSim, SimEnclaveKey: keyFile}); err != nil || !strings.Contains(desc, tee.measurement) {
		t.Fatalf("%q %v", desc, err)
	}
	for name, cfg := range map[string]EvidenceConfig{
		"sim without key":   {Kind: AttesterSim},
		"sim with both":     {Kind: AttesterSim, SimPlatformKey: platformKey, SimEnclaveKey: keyFile},
		"missing key file":  {Kind: AttesterSim, SimEnclaveKey: filepath.Join(dir, "nope")},
		"not a key file":    {Kind: AttesterSim, SimEnclaveKey: platformKey},
		"unknown attester":  {Kind: "tpm"},
		"tdx without guest": {Kind: AttesterTDX},
	} {
		if _, _, err := EvidenceSource(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
