// Package memo remembers the results of pure verification checks for long-lived verifiers: a
// result is stored under the SHA-256 of every input that decides it (Key) and used again only
// inside the time window in which it holds (Window). Tables are bounded; a full table is emptied.
// It never decides anything itself: callers choose what is pure and what its window is.
package memo

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"time"
)

// maxEntries bounds each table.
const maxEntries = 4096

var (
	on     atomic.Bool
	mu     sync.Mutex
	tables []interface{ reset() }
)

func init() { on.Store(true) }

// SetEnabled turns every table on or off (on by default); off empties them, and every check is
// done every time (cold benchmarks, callers who want no state kept).
func SetEnabled(enabled bool) {
	on.Store(enabled)
	if !enabled {
		mu.Lock()
		defer mu.Unlock()
		for _, t := range tables {
			t.reset()
		}
	}
}

// Table maps keys to remembered results.
type Table[V any] struct {
	mu sync.Mutex
	m  map[[32]byte]V
}

// New returns an empty table that SetEnabled(false) empties.
func New[V any]() *Table[V] {
	t := &Table[V]{}
	mu.Lock()
	tables = append(tables, t)
	mu.Unlock()
	return t
}

// Get returns the result stored under k.
func (t *Table[V]) Get(k [32]byte) (V, bool) {
	var zero V
	if !on.Load() {
		return zero, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[k]
	return v, ok
}

// Put stores v under k.
func (t *Table[V]) Put(k [32]byte, v V) {
	if !on.Load() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxEntries {
		t.m = map[[32]byte]V{}
	}
	t.m[k] = v
}

func (t *Table[V]) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m = nil
}

// Window is when a remembered result holds.
type Window struct{ From, Until time.Time }

// Holds reports whether now lies in the window.
func (w Window) Holds(now time.Time) bool { return !now.Before(w.From) && !now.After(w.Until) }

// Narrow limits w to [from, until].
func (w Window) Narrow(from, until time.Time) Window {
	if from.After(w.From) {
		w.From = from
	}
	if until.Before(w.Until) {
		w.Until = until
	}
	return w
}

// ChainWindow is when every certificate of chain is valid.
func ChainWindow(chain []*x509.Certificate) Window {
	var w Window
	for i, c := range chain {
		if i == 0 || c.NotBefore.After(w.From) {
			w.From = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(w.Until) {
			w.Until = c.NotAfter
		}
	}
	return w
}

// Key hashes its parts, each prefixed by its length so that no two inputs collide by framing.
func Key(parts ...[]byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		l := uint64(len(p))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// CertsKey names a set of certificates (for example the trust anchors a result depends on).
func CertsKey(certs []*x509.Certificate) []byte {
	parts := make([][]byte, 0, len(certs))
	for _, c := range certs {
		parts = append(parts, c.Raw)
	}
	k := Key(parts...)
	return k[:]
}
