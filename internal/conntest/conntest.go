// Package conntest holds, for tests that play a network attacker, the connections the attacker
// keeps open, and counts per group those the server under test closed. For tests only.
package conntest

import (
	"net"
	"sync"
)

// Held is a set of attacker connections, each watched for the server closing it.
type Held struct {
	mu     sync.Mutex
	conns  []net.Conn
	closed map[string]int // per group
	wg     sync.WaitGroup
}

// Watch keeps c open and counts it as closed in group when the server closes it (a read returns
// an error; the server is expected to send these clients nothing else).
func (h *Held) Watch(group string, c net.Conn) {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	if h.closed == nil {
		h.closed = map[string]int{}
	}
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		h.mu.Lock()
		h.closed[group]++
		h.mu.Unlock()
	}()
}

// ClosedIn is how many of group's connections the server closed so far.
func (h *Held) ClosedIn(group string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed[group]
}

// CloseAll closes every held connection and waits for the watchers.
func (h *Held) CloseAll() {
	h.mu.Lock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
	h.mu.Unlock()
	h.wg.Wait()
}
