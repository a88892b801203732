package inclavared

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Connection accounting. A verifier connection is first pending (accepted; TLS handshake and first
// request not yet complete), then serving (it holds one of MaxConns slots) until it closes.
//
//   - Pending connections never hold a serving slot, so idle or half-open clients cannot starve
//     verifiers that complete their handshake. They are bounded by MaxPending (a new connection
//     beyond it displaces the oldest pending one) and by HandshakeTimeout.
//   - A pending connection whose first request arrives takes a free slot, else the slot of the
//     serving connection that has waited longest for its next request (closing it), else it waits
//     until a request in progress finishes, within its handshake deadline. A verifier that holds a
//     connection open between requests can therefore lose it when the daemon is full.
//   - Every peer (a client IP, an IPv6 /64, or the UID of a unix socket client) holds at most
//     MaxConnsPerPeer connections, pending or serving; more are closed at accept.

var (
	errPeerLimit = errors.New("too many connections from this peer")
	errDisplaced = errors.New("closed to make room for another connection")
	errBusy      = errors.New("every connection slot is serving a request")
)

type connState int

const (
	statePending connState = iota // handshake or first request in progress, or waiting for a slot
	stateBusy                     // serving a request
	stateIdle                     // waiting for the next request
)

// tracked is one accepted connection.
type tracked struct {
	raw      net.Conn
	peer     string
	state    connState
	slot     bool   // holds one of the serving slots
	closed   bool   // displaced: closed by the table to make room, no longer counted
	order    uint64 // admission order (pending) or when it became idle (idle)
	deadline time.Time
}

// connTable admits connections and keeps the counts. Its zero value is not usable: see newConnTable.
type connTable struct {
	maxPending, maxServing, maxPerPeer int

	mu      sync.Mutex
	clock   uint64 // orders admissions and idle transitions
	all     map[*tracked]struct{}
	pending int
	serving int // slots held
	perPeer map[string]int
	freed   chan struct{} // closed (and replaced) when a slot is released or a waiter displaced
}

func newConnTable(maxPending, maxServing, maxPerPeer int) *connTable {
	return &connTable{maxPending: maxPending, maxServing: maxServing, maxPerPeer: maxPerPeer,
		all: map[*tracked]struct{}{}, perPeer: map[string]int{}, freed: make(chan struct{})}
}

// admit registers a new connection as pending, or refuses it when its peer holds too many. Over
// MaxPending, the oldest pending connection is closed.
func (t *connTable) admit(raw net.Conn, deadline time.Time) (*tracked, error) {
	peer := peerOf(raw)
	t.mu.Lock()
	if t.perPeer[peer] >= t.maxPerPeer {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w (%s holds %d)", errPeerLimit, peer, t.maxPerPeer)
	}
	t.clock++
	c := &tracked{raw: raw, peer: peer, state: statePending, order: t.clock, deadline: deadline}
	t.all[c] = struct{}{}
	t.perPeer[peer]++
	t.pending++
	var victim *tracked
	if t.pending > t.maxPending {
		victim = t.oldest(statePending)
		victim.closed = true
		t.pending--
		t.wake() // it may be waiting for a slot: let it see that it is gone
	}
	t.mu.Unlock()
	if victim != nil {
		victim.raw.Close()
	}
	return c, nil
}

// oldest returns the connection in state with the smallest order (there is one: the caller knows).
func (t *connTable) oldest(state connState) *tracked {
	var o *tracked
	for c := range t.all {
		if c.state == state && !c.closed && (o == nil || c.order < o.order) {
			o = c
		}
	}
	return o
}

// serve moves a pending connection whose first request arrived to serving: a free slot, or the
// slot of the longest idle connection (closed), or the first slot freed before c's deadline or
// stop.
func (t *connTable) serve(c *tracked, stop <-chan struct{}) error {
	var timeout <-chan time.Time
	for {
		t.mu.Lock()
		if c.closed {
			t.mu.Unlock()
			return errDisplaced
		}
		var victim *tracked
		if t.serving >= t.maxServing {
			if victim = t.oldest(stateIdle); victim != nil {
				victim.closed, victim.slot = true, false
				t.serving--
			}
		}
		if t.serving < t.maxServing {
			t.serving++
			t.pending--
			c.slot, c.state = true, stateBusy
			t.mu.Unlock()
			if victim != nil {
				victim.raw.Close()
			}
			return nil
		}
		freed := t.freed
		t.mu.Unlock()
		if timeout == nil {
			tm := time.NewTimer(time.Until(c.deadline))
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-freed:
		case <-timeout:
			return errBusy
		case <-stop:
			return errBusy
		}
	}
}

// idle marks a serving connection as waiting for its next request: its slot can now be taken.
func (t *connTable) idle(c *tracked) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clock++
	c.state, c.order = stateIdle, t.clock
}

// busy marks an idle connection whose request arrived as serving; false if it was displaced.
func (t *connTable) busy(c *tracked) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.closed {
		return false
	}
	c.state = stateBusy
	return true
}

// displaced tells whether the table closed c to make room.
func (t *connTable) displaced(c *tracked) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return c.closed
}

// release forgets a closed connection and frees what it held.
func (t *connTable) release(c *tracked) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.all[c]; !ok {
		return
	}
	delete(t.all, c)
	if c.state == statePending && !c.closed {
		t.pending--
	}
	if c.slot {
		c.slot = false
		t.serving--
		t.wake()
	}
	if t.perPeer[c.peer]--; t.perPeer[c.peer] <= 0 {
		delete(t.perPeer, c.peer)
	}
}

// wake releases every connection waiting in serve to look again. t.mu must be held.
func (t *connTable) wake() {
	close(t.freed)
	t.freed = make(chan struct{})
}

// counts returns the pending and serving connections.
func (t *connTable) counts() (pending, serving int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending, t.serving
}

func (t *connTable) forEach(f func(net.Conn)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.all {
		f(c.raw)
	}
}

// peerOf names the party behind c for the per-peer limit: the client's IPv4 address or IPv6 /64
// (one host usually holds a whole /64), or the UID of a unix socket client (SO_PEERCRED, which the
// kernel records at connect: the client cannot choose it). Connections whose peer cannot be told
// share one name, and so one limit.
func peerOf(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		if ip4 := a.IP.To4(); ip4 != nil {
			return "ip " + ip4.String()
		}
		return "ip " + a.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	if uc, ok := c.(*net.UnixConn); ok {
		if rc, err := uc.SyscallConn(); err == nil {
			var cred *unix.Ucred
			var credErr error
			if err := rc.Control(func(fd uintptr) {
				cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
			}); err == nil && credErr == nil {
				return fmt.Sprintf("uid %d", cred.Uid)
			}
		}
	}
	return "unknown peer"
}
