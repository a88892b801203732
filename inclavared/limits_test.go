package inclavared

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/inclavared/wire"
	"github.com/inclavare-containers/inclavare-go/internal/conntest"

	"github.com/inclavare-containers/inclavare-go/enclavetls"
)

// partialClientHello is the start of a TLS record that announces a 512-byte ClientHello: a server
// reading it waits for the rest, which a half-open client never sends.
var partialClientHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

// hangGuard bounds every wait in these tests; it is no timing claim.
const hangGuard = 30 * time.Second

// waitFor polls cond until it holds, failing after hangGuard.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(hangGuard); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

// dialFrom connects to addr from a loopback source address of its own (the whole 127/8 is local
// on Linux), so that tests can play distinct client IPs.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: hangGuard}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unattestedClient is shelter's side of the handshake on c (no evidence of its own).
func (s *daemonSetup) client(t testing.TB, c net.Conn) *enclavetls.Conn {
	t.Helper()
	cl, err := enclavetls.NewClient(enclavetls.Config{Verifier: verifier(t, true, s.daemonTEE)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := cl.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(hangGuard))
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Time{})
	return conn
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestIdleClientsDoNotStarve: the network attacker (anyone who reaches --listen) opens more idle
// TCP connections than --max-conns, half-open ones that stall in the ClientHello, ones that finish
// the handshake and send nothing, and ones that send one request and then hold the connection.
// Before, each accepted connection took one of MaxConns slots at accept, so a verifier waited in
// the listen backlog until the attackers' timeouts. Now the per-peer limit closes a peer's excess
// connections at accept, pending connections are bounded apart from MaxConns (the oldest gives
// way), and an idle connection gives its slot to a verifier whose request arrived: a real verifier
// is served while the attackers hold their sockets, with timeouts far beyond the test. When the
// attackers go, the daemon holds no connection, goroutine or descriptor of theirs.
func TestIdleClientsDoNotStarve(t *testing.T) {
	s := startDaemon(t, "tcp", func(c *Config, _ *daemonSetup) {
		c.MaxConns, c.MaxPending, c.MaxConnsPerPeer = 2, 4, 3
		c.HandshakeTimeout, c.IdleTimeout = 10*time.Minute, 10*time.Minute // no timeout helps during the test
	})
	pending := func(p, srv int) func() bool {
		return func() bool { gp, gs := s.d.Connections(); return gp == p && gs == srv }
	}
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	a := &conntest.Held{}
	defer a.CloseAll()

	// Ten idle connections from one address: three are held (the per-peer limit), seven closed.
	for i := 0; i < 10; i++ {
		a.Watch("idle", dialFrom(t, "127.0.0.2", s.addr))
	}
	waitFor(t, "7 idle connections refused", func() bool { return a.ClosedIn("idle") == 7 })
	waitFor(t, "3 pending", pending(3, 0))

	// Half-open clients from two more addresses: pending stays at MaxPending, the oldest go.
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		for i := 0; i < 3; i++ {
			c := dialFrom(t, src, s.addr)
			if _, err := c.Write(partialClientHello); err != nil {
				t.Fatal(err)
			}
			a.Watch("half-open", c)
		}
	}
	waitFor(t, "pending bounded", pending(4, 0))

	// One request each, then idle: they take both slots, and each new one the oldest's.
	for _, src := range []string{"127.0.0.6", "127.0.0.7"} {
		for i := 0; i < 2; i++ {
			conn := s.client(t, dialFrom(t, src, s.addr))
			if r := call(t, conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.Error != "" {
				t.Fatal(r.Error)
			}
			a.Watch("one request", conn)
		}
	}
	waitFor(t, "slots full", pending(3, 2))
	waitFor(t, "two idle connections gave their slots", func() bool { return a.ClosedIn("one request") == 2 })

	// Handshakes that never send a request: pending full again.
	for i := 0; i < 2; i++ {
		a.Watch("handshaken", s.client(t, dialFrom(t, "127.0.0.5", s.addr)))
	}
	waitFor(t, "everything full", pending(4, 2))

	// The real verifier is served.
	conn, codec := s.dial(t)
	r := call(t, conn, codec, &wire.Request{Type: wire.TypeForward, Request: json.RawMessage(`{"type":"echo","data":"real"}`)})
	var echo wire.Response
	if r.Error != "" || json.Unmarshal(r.Response, &echo) != nil || echo.Data != "real" {
		t.Fatalf("real verifier: %+v", r)
	}
	// ... while the attackers still hold sockets: one pending connection gave way to it, one idle
	// connection its slot.
	if p, srv := s.d.Connections(); p != 3 || srv != 2 {
		t.Errorf("after the verifier: %d pending, %d serving; want 3 and 2", p, srv)
	}
	conn.Close()

	a.CloseAll()
	waitFor(t, "no connection left", pending(0, 0))
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= goroutines })
	waitFor(t, "descriptors back to the baseline", func() bool { return openFDs(t) <= fds })
}

// TestDeadlines: clients that stall before the handshake, in it, before the first request, in the
// middle of it, or after a request are closed by the daemon (deadlines short so the test is quick;
// it asserts that they close, not when).
func TestDeadlines(t *testing.T) {
	s := startDaemon(t, "tcp", func(c *Config, _ *daemonSetup) {
		c.HandshakeTimeout, c.IdleTimeout = 200*time.Millisecond, 300*time.Millisecond
		c.MaxConnsPerPeer = 10
	})
	a := &conntest.Held{}
	defer a.CloseAll()
	a.Watch("idle", dialFrom(t, "127.0.0.1", s.addr))
	c := dialFrom(t, "127.0.0.1", s.addr)
	if _, err := c.Write(partialClientHello); err != nil {
		t.Fatal(err)
	}
	a.Watch("half-open", c)
	a.Watch("no request", s.client(t, dialFrom(t, "127.0.0.1", s.addr)))
	conn := s.client(t, dialFrom(t, "127.0.0.1", s.addr))
	if _, err := conn.Write([]byte(`{"type":`)); err != nil {
		t.Fatal(err)
	}
	a.Watch("partial request", conn)
	conn = s.client(t, dialFrom(t, "127.0.0.1", s.addr))
	if r := call(t, conn, wire.NewCodec(conn), &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.Error != "" {
		t.Fatal(r.Error)
	}
	a.Watch("idle after a request", conn)
	for _, g := range []string{"idle", "half-open", "no request", "partial request", "idle after a request"} {
		waitFor(t, g+" closed by the daemon", func() bool { return a.ClosedIn(g) == 1 })
	}
	waitFor(t, "no connection left", func() bool { p, srv := s.d.Connections(); return p == 0 && srv == 0 })
}

// TestPerPeerLimitUnix: on a unix socket the peer is the client's UID (SO_PEERCRED): one UID holds
// at most MaxConnsPerPeer connections, a verifier of that UID included, until one closes.
func TestPerPeerLimitUnix(t *testing.T) {
	s := startDaemon(t, "unix", func(c *Config, _ *daemonSetup) { c.MaxConnsPerPeer = 2 })
	a := &conntest.Held{}
	defer a.CloseAll()
	var held []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("unix", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		a.Watch("idle", c)
	}
	waitFor(t, "2 refused", func() bool { return a.ClosedIn("idle") == 2 })
	waitFor(t, "2 pending", func() bool { p, _ := s.d.Connections(); return p == 2 })

	cl, err := enclavetls.NewClient(enclavetls.Config{Verifier: verifier(t, true, s.daemonTEE)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if conn, err := cl.DialContext(ctx, "unix", s.addr); err == nil {
		conn.Close()
		t.Fatal("a third connection of the same UID was served")
	}
	for _, c := range held { // frees the UID's quota (refused ones are closed already)
		c.Close()
	}
	waitFor(t, "quota free", func() bool { p, _ := s.d.Connections(); return p == 0 })
	conn, codec := s.dial(t)
	defer conn.Close()
	if r := call(t, conn, codec, &wire.Request{Type: wire.TypeGetEnclaveInfo}); r.Error != "" {
		t.Fatal(r.Error)
	}
}

func TestPeerOf(t *testing.T) {
	pair := func(network, addr string, dial func(string) (net.Conn, error)) net.Conn {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Logf("%s %s: %v", network, addr, err)
			return nil
		}
		defer l.Close()
		c, err := dial(l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		return sc
	}
	c := pair("tcp", "127.0.0.1:0", func(a string) (net.Conn, error) {
		return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).Dial("tcp", a)
	})
	if got := peerOf(c); got != "ip 127.0.0.9" {
		t.Errorf("tcp4 peer %q", got)
	}
	if c := pair("tcp", "[::1]:0", func(a string) (net.Conn, error) { return net.Dial("tcp", a) }); c != nil {
		if got := peerOf(c); got != "ip ::/64" {
			t.Errorf("tcp6 peer %q", got)
		}
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	c = pair("unix", sock, func(a string) (net.Conn, error) { return net.Dial("unix", a) })
	if got, want := peerOf(c), fmt.Sprintf("uid %d", os.Getuid()); got != want {
		t.Errorf("unix peer %q, want %q", got, want)
	}
	if !strings.HasPrefix(peerOf(c), "uid ") {
		t.Error("unix peer without a uid")
	}
}

// TestConnTable drives the accounting directly: a slot frees for a waiter, a waiter displaced from
// the pending set stops waiting at once, a waiter whose deadline passed gets errBusy, and an idle
// connection gives its slot up.
func TestConnTable(t *testing.T) {
	tab := newConnTable(2, 1, 10)
	far := time.Now().Add(time.Hour)
	conn := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}
	admit := func(deadline time.Time) *tracked {
		c, err := tab.admit(conn(), deadline)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serveAsync := func(c *tracked) chan error {
		ch := make(chan error, 1)
		go func() { ch <- tab.serve(c, nil) }()
		return ch
	}
	c1 := admit(far)
	if err := tab.serve(c1, nil); err != nil {
		t.Fatal(err)
	}
	// c2 waits for the busy c1's slot, and gets it when c1 closes.
	c2 := admit(far)
	w2 := serveAsync(c2)
	waitFor(t, "c2 waiting", func() bool { p, s := tab.counts(); return p == 1 && s == 1 })
	tab.release(c1)
	if err := <-w2; err != nil {
		t.Fatalf("c2: %v", err)
	}
	// c3 waits; c4 and c5 arrive, MaxPending 2: c3, the oldest pending, is closed and stops
	// waiting without its (distant) deadline.
	c3 := admit(far)
	w3 := serveAsync(c3)
	admit(far)
	admit(far)
	select {
	case err := <-w3:
		if err != errDisplaced {
			t.Fatalf("c3: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("a displaced waiter kept waiting")
	}
	tab.release(c3)
	// A waiter whose deadline passed while every slot is busy gets errBusy.
	tab2 := newConnTable(4, 1, 10)
	b1, _ := tab2.admit(conn(), far)
	if err := tab2.serve(b1, nil); err != nil {
		t.Fatal(err)
	}
	late, _ := tab2.admit(conn(), time.Now())
	if err := tab2.serve(late, nil); err != errBusy {
		t.Fatalf("late waiter: %v", err)
	}
	// An idle connection gives its slot to a new one and is closed.
	tab2.idle(b1)
	n, _ := tab2.admit(conn(), far)
	if err := tab2.serve(n, nil); err != nil || !tab2.displaced(b1) || tab2.busy(b1) {
		t.Fatalf("idle slot not taken: %v", err)
	}
	tab2.release(b1)
	tab2.release(late)
	tab2.release(n)
	if p, s := tab2.counts(); p != 0 || s != 0 || len(tab2.perPeer) != 0 || len(tab2.all) != 0 {
		t.Fatalf("left: %d pending, %d serving, %v", p, s, tab2.perPeer)
	}
}
