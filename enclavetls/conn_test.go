package enclavetls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// endpoint sets up one side of a handshake on c; peer reports what it verified (nil: nothing).
type endpoint func(t *testing.T, c net.Conn) (conn *tls.Conn, peer func() *Peer)

func enclaveServer(cfg Config) endpoint {
	return func(t *testing.T, c net.Conn) (*tls.Conn, func() *Peer) {
		s, err := NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn := s.Server(c)
		return conn.Conn, conn.Peer
	}
}

func enclaveClient(cfg Config) endpoint {
	return func(t *testing.T, c net.Conn) (*tls.Conn, func() *Peer) {
		cl, err := NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := cl.Client(c)
		if err != nil {
			t.Fatal(err)
		}
		return conn.Conn, conn.Peer
	}
}

// plainServer is an ordinary TLS 1.3 server presenting cert (a replayed RA-TLS certificate, or one
// without evidence).
func plainServer(cert *tls.Certificate) endpoint {
	return func(t *testing.T, c net.Conn) (*tls.Conn, func() *Peer) {
		return tls.Server(c, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}}), nil
	}
}

// plainClient presents cert to any server and accepts any server.
func plainClient(cert *tls.Certificate) endpoint {
	return func(t *testing.T, c net.Conn) (*tls.Conn, func() *Peer) {
		return tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }}), nil
	}
}

type outcome struct {
	serverErr, clientErr   error
	serverPeer, clientPeer *Peer
}

// tcpPair returns both ends of a loopback TCP connection (kernel-buffered: unlike net.Pipe, a side
// that writes while the other writes an alert does not deadlock).
func tcpPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return server, client
}

// handshake runs both sides over loopback TCP and exchanges one message when both succeed.
func handshake(t *testing.T, srv, cli endpoint) outcome {
	t.Helper()
	sc, cc := tcpPair(t)
	defer sc.Close()
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard, not a measurement
	defer cancel()
	s, speer := srv(t, sc)
	c, cpeer := cli(t, cc)
	var o outcome
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if o.serverErr = s.HandshakeContext(ctx); o.serverErr != nil {
			sc.Close()
			return
		}
		// TLS 1.3 servers finish before the client's certificate is checked on their side only
		// after reading the client's Finished; a read makes sure the client side completed too.
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil {
			o.serverErr = err
			sc.Close()
			return
		}
		_, o.serverErr = s.Write(buf)
	}()
	if o.clientErr = c.HandshakeContext(ctx); o.clientErr == nil {
		if _, err := c.Write([]byte("ping")); err != nil {
			o.clientErr = err
		} else {
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil {
				o.clientErr = err
			} else if string(buf) != "ping" {
				o.clientErr = errors.New("echo mismatch")
			}
		}
	}
	if o.clientErr != nil {
		cc.Close()
	}
	wg.Wait()
	if speer != nil {
		o.serverPeer = speer()
	}
	if cpeer != nil {
		o.clientPeer = cpeer()
	}
	return o
}

// badKeyBinding evidence binds zeros instead of the claims hash.
func (s *simTEE) badKeyBinding(_ context.Context, _ [attestation.ReportDataSize]byte) ([]byte, error) {
	return s.key.Evidence([64]byte{})
}

// corrupted evidence has a flipped bit in the report signature.
func (s *simTEE) corrupted(_ context.Context, rd [attestation.ReportDataSize]byte) ([]byte, error) {
	ev, err := s.key.Evidence(rd)
	if err != nil {
		return nil, err
	}
	ev = bytes.Clone(ev)
	ev[len(ev)-3] ^= 1
	return ev, nil
}

func TestHandshake(t *testing.T) {
	srvTEE := newSimTEE(t, "server enclave")
	cliTEE := newSimTEE(t, "client enclave")
	stranger := newSimTEE(t, "stranger")
	ctx := context.Background()

	idWith := func(ev EvidenceFunc) *Identity {
		id, err := NewIdentity(ev, IdentityOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	srvID, cliID := srvTEE.identity(t), cliTEE.identity(t)
	// A certificate captured earlier (with its key: the attacker model of replay is a leaked key).
	oldSrvCert, err := srvID.FreshCertificate(ctx, []byte("an old nonce"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cachedCliCert, err := cliID.Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plainKey := newKey(t)
	plainLeaf := selfSigned(t, plainKey, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	noEvidence := &tls.Certificate{Certificate: [][]byte{plainLeaf.Raw}, PrivateKey: plainKey}
	failing := idWith(func(context.Context, [64]byte) ([]byte, error) { return nil, errors.New("TEE unavailable") })

	accepts := func(fresh bool, s ...*simTEE) *Verifier { return verifierFor(t, fresh, s...) }

	for _, tc := range []struct {
		name              string
		srv, cli          endpoint
		serverErr, cliErr string // substrings of the verifying side's error; "" means success
		wantServerPeer    bool
		wantFresh         [2]bool // server peer fresh, client peer fresh
	}{
		{name: "one-way",
			srv: enclaveServer(Config{Identity: srvID}), cli: enclaveClient(Config{Verifier: accepts(false, srvTEE)})},
		{name: "one-way fresh",
			srv: enclaveServer(Config{Identity: srvID}), cli: enclaveClient(Config{Verifier: accepts(true, srvTEE)}),
			wantFresh: [2]bool{false, true}},
		{name: "mutual",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(false, cliTEE)}),
			cli: enclaveClient(Config{Identity: cliID, Verifier: accepts(false, srvTEE)}), wantServerPeer: true},
		{name: "mutual fresh",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(true, cliTEE)}),
			cli: enclaveClient(Config{Identity: cliID, Verifier: accepts(true, srvTEE)}), wantServerPeer: true,
			wantFresh: [2]bool{true, true}},
		{name: "mutual with ALPN",
			srv:            enclaveServer(Config{Identity: srvID, Verifier: accepts(true, cliTEE), NextProtos: []string{"inclavare/1"}}),
			cli:            enclaveClient(Config{Identity: cliID, Verifier: accepts(true, srvTEE), NextProtos: []string{"inclavare/1"}}),
			wantServerPeer: true, wantFresh: [2]bool{true, true}},

		// Server side wrong; the client must refuse.
		{name: "server policy violation",
			srv: enclaveServer(Config{Identity: srvID}), cli: enclaveClient(Config{Verifier: accepts(false, stranger)}),
			cliErr: "not among"},
		{name: "server measurement not allowed",
			srv:    enclaveServer(Config{Identity: srvID}),
			cli:    enclaveClient(Config{Verifier: &Verifier{Options: accepts(false, srvTEE).Options, Policy: simPolicy(t, stranger.measurement)}}),
			cliErr: "policy"},
		{name: "server wrong key binding",
			srv: enclaveServer(Config{Identity: idWith(srvTEE.badKeyBinding)}), cli: enclaveClient(Config{Verifier: accepts(false, srvTEE)}),
			cliErr: "report data"},
		{name: "server bad evidence",
			srv: enclaveServer(Config{Identity: idWith(srvTEE.corrupted)}), cli: enclaveClient(Config{Verifier: accepts(false, srvTEE)}),
			cliErr: "signature"},
		{name: "server without evidence",
			srv: plainServer(noEvidence), cli: enclaveClient(Config{Verifier: accepts(false, srvTEE)}),
			cliErr: ErrNoEvidence.Error()},
		{name: "server replays an old certificate",
			srv: plainServer(oldSrvCert), cli: enclaveClient(Config{Verifier: accepts(true, srvTEE)}),
			cliErr: "another nonce"},
		{name: "server replays a cached certificate",
			srv: plainServer(cachedCliCert), cli: enclaveClient(Config{Verifier: accepts(true, cliTEE)}),
			cliErr: "binds no nonce"},
		{name: "server evidence source fails",
			srv: enclaveServer(Config{Identity: failing}), cli: enclaveClient(Config{Verifier: accepts(false, srvTEE)}),
			serverErr: "TEE unavailable", cliErr: "internal error"},

		// Client side wrong; the server must refuse.
		{name: "client policy violation",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(false, stranger)}),
			cli: enclaveClient(Config{Identity: cliID, Verifier: accepts(false, srvTEE)}), serverErr: "not among"},
		{name: "client measurement not allowed",
			srv: enclaveServer(Config{Identity: srvID, Verifier: &Verifier{Options: accepts(false, cliTEE).Options, Policy: simPolicy(t, stranger.measurement)}}),
			cli: enclaveClient(Config{Identity: cliID, Verifier: accepts(false, srvTEE)}), serverErr: "policy"},
		{name: "client wrong key binding",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(false, cliTEE)}),
			cli: enclaveClient(Config{Identity: idWith(cliTEE.badKeyBinding), Verifier: accepts(false, srvTEE)}), serverErr: "report data"},
		{name: "client bad evidence",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(false, cliTEE)}),
			cli: enclaveClient(Config{Identity: idWith(cliTEE.corrupted), Verifier: accepts(false, srvTEE)}), serverErr: "signature"},
		{name: "client without identity",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(false, cliTEE)}),
			cli: enclaveClient(Config{Verifier: accepts(false, srvTEE)}), serverErr: "certificate"},
		{name: "client without evidence",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(false, cliTEE)}),
			cli: plainClient(noEvidence), serverErr: ErrNoEvidence.Error()},
		{name: "client replays a cached certificate",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(true, cliTEE)}),
			cli: plainClient(cachedCliCert), serverErr: "binds no nonce"},
		{name: "client replays a certificate made for another challenge",
			srv: enclaveServer(Config{Identity: srvID, Verifier: accepts(true, cliTEE)}),
			cli: plainClient(mustFresh(t, cliID, []byte("old challenge"))), serverErr: "another nonce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := handshake(t, tc.srv, tc.cli)
			if tc.serverErr == "" && tc.cliErr == "" {
				if o.serverErr != nil || o.clientErr != nil {
					t.Fatalf("server: %v; client: %v", o.serverErr, o.clientErr)
				}
				if o.clientPeer == nil || o.clientPeer.Result.Measurements["measurement"] != srvTEE.measurement || !o.clientPeer.PolicyChecked {
					t.Fatalf("client peer %+v", o.clientPeer)
				}
				if (o.serverPeer != nil) != tc.wantServerPeer {
					t.Fatalf("server peer %+v, want one: %v", o.serverPeer, tc.wantServerPeer)
				}
				if o.serverPeer != nil && o.serverPeer.Result.Measurements["measurement"] != cliTEE.measurement {
					t.Fatalf("server peer %+v", o.serverPeer.Result)
				}
				if o.serverPeer != nil && o.serverPeer.Fresh != tc.wantFresh[0] || o.clientPeer.Fresh != tc.wantFresh[1] {
					t.Fatalf("freshness: server peer %v, client peer %v, want %v", o.serverPeer != nil && o.serverPeer.Fresh, o.clientPeer.Fresh, tc.wantFresh)
				}
				return
			}
			if o.serverErr == nil || o.clientErr == nil {
				t.Fatalf("a side completed: server %v; client %v", o.serverErr, o.clientErr)
			}
			if tc.serverErr != "" && !strings.Contains(o.serverErr.Error(), tc.serverErr) {
				t.Errorf("server error %q, want it to contain %q", o.serverErr, tc.serverErr)
			}
			if tc.cliErr != "" && !strings.Contains(o.clientErr.Error(), tc.cliErr) {
				t.Errorf("client error %q, want it to contain %q", o.clientErr, tc.cliErr)
			}
			// The side that refused must not report a peer (the other side may have verified its own).
			if tc.serverErr != "" && o.serverPeer != nil || tc.cliErr != "" && o.clientPeer != nil {
				t.Error("a refused handshake reported a peer")
			}
		})
	}
}

func mustFresh(t *testing.T, id *Identity, nonce []byte) *tls.Certificate {
	t.Helper()
	c, err := id.FreshCertificate(context.Background(), nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertificateCache checks that without freshness one evidence serves many connections, and
// that a nonce makes a certificate of its own.
func TestCertificateCache(t *testing.T) {
	tee := newSimTEE(t, "cache")
	calls := 0
	var mu sync.Mutex
	id, err := NewIdentity(func(ctx context.Context, rd [64]byte) ([]byte, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return tee.evidence(ctx, rd)
	}, IdentityOptions{Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	id.now = func() time.Time { return now }
	a, _ := id.Certificate(context.Background())
	b, _ := id.Certificate(context.Background())
	if a != b || calls != 1 {
		t.Fatalf("cache: %d evidence calls", calls)
	}
	now = now.Add(31 * time.Minute) // past half the validity
	c, _ := id.Certificate(context.Background())
	if c == a || calls != 2 {
		t.Fatalf("not renewed after half its validity: %d evidence calls", calls)
	}
	for i := 0; i < 3; i++ {
		o := handshake(t, enclaveServer(Config{Identity: id}), enclaveClient(Config{Verifier: verifierFor(t, true, tee)}))
		if o.clientErr != nil {
			t.Fatal(o.clientErr)
		}
	}
	if calls != 5 {
		t.Fatalf("fresh handshakes made %d evidence calls, want 3 more", calls-2)
	}
}

func TestNewIdentityRejects(t *testing.T) {
	ev := func(context.Context, [64]byte) ([]byte, error) { return nil, nil }
	for name, tc := range map[string]struct {
		ev   EvidenceFunc
		opts IdentityOptions
	}{
		"no evidence source": {nil, IdentityOptions{}},
		"reserved claim":     {ev, IdentityOptions{Claims: map[string][]byte{ClaimNonce: nil}}},
		"empty claim name":   {ev, IdentityOptions{Claims: map[string][]byte{"": nil}}},
		"negative validity":  {ev, IdentityOptions{Validity: -time.Second}},
	} {
		if _, err := NewIdentity(tc.ev, tc.opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewServer(Config{}); err == nil {
		t.Error("server without identity accepted")
	}
	if _, err := NewClient(Config{}); err == nil {
		t.Error("client without verifier accepted")
	}
}

func TestCustomClaims(t *testing.T) {
	tee := newSimTEE(t, "claims")
	id, err := NewIdentity(tee.evidence, IdentityOptions{Claims: map[string][]byte{"service": []byte("echo")}})
	if err != nil {
		t.Fatal(err)
	}
	o := handshake(t, enclaveServer(Config{Identity: id}), enclaveClient(Config{Verifier: verifierFor(t, false, tee)}))
	if o.clientErr != nil {
		t.Fatal(o.clientErr)
	}
	if string(o.clientPeer.Claims["service"]) != "echo" {
		t.Fatalf("claims %q", o.clientPeer.Claims)
	}
}

func TestNonceFromALPN(t *testing.T) {
	for _, tc := range []struct {
		protos []string
		want   string
		err    bool
	}{
		{nil, "", false},
		{[]string{"h2"}, "", false},
		{[]string{"h2", nonceProtocol([]byte("abc"))}, "abc", false},
		{[]string{nonceProtocol([]byte("a")), nonceProtocol([]byte("b"))}, "", true},
		{[]string{NonceProtocolPrefix + "!!"}, "", true},
		{[]string{NonceProtocolPrefix}, "", true},
		{[]string{nonceProtocol(make([]byte, maxNonceSize+1))}, "", true},
	} {
		n, err := nonceFromALPN(tc.protos)
		if (err != nil) != tc.err || string(n) != tc.want {
			t.Errorf("%q: %q %v", tc.protos, n, err)
		}
	}
}

// TestTLSConfigAndListener uses the crypto/tls-only configuration and the listener over loopback
// TCP.
func TestTLSConfigAndListener(t *testing.T) {
	tee := newSimTEE(t, "listener")
	srv, err := NewServer(Config{Identity: tee.identity(t)})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := NewClient(Config{Verifier: verifierFor(t, true, tee)})
	if err != nil {
		t.Fatal(err)
	}
	for name, wrap := range map[string]func(net.Listener) net.Listener{
		"Listener":  srv.Listener,
		"TLSConfig": func(l net.Listener) net.Listener { return tls.NewListener(l, srv.TLSConfig()) },
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := wrap(raw)
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c)
			}()
			conn, err := cl.DialContext(context.Background(), "tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if p := conn.Peer(); p == nil || !p.Fresh {
				t.Fatalf("peer %+v", p)
			}
			if _, err := conn.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'x' {
				t.Fatalf("%q %v", b, err)
			}
		})
	}
}

// TestClientWithNonce passes a caller's nonce (a relay's verifier's) to the server's evidence.
func TestClientWithNonce(t *testing.T) {
	tee := newSimTEE(t, "relay target")
	srv, err := NewServer(Config{Identity: tee.identity(t)})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := NewClient(Config{Verifier: verifierFor(t, false, tee)})
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("chosen by a remote verifier")
	sc, cc := tcpPair(t)
	defer sc.Close()
	defer cc.Close()
	go srv.Server(sc).Handshake()
	conn, err := cl.ClientWithNonce(cc, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	p := conn.Peer()
	if !p.Fresh || string(p.Claims[ClaimNonce]) != string(nonce) {
		t.Fatalf("peer %+v", p)
	}
	// Anyone holding the certificate can check the binding again, offline.
	if _, err := VerifyCertificate(context.Background(), p.Certificate, verifierFor(t, false, tee).Options, nonce); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{{}, make([]byte, maxNonceSize+1)} {
		if _, err := cl.ClientWithNonce(cc, bad); err == nil {
			t.Errorf("nonce of %d bytes accepted", len(bad))
		}
	}
}
