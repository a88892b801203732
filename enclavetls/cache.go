package enclavetls

import (
	"bytes"
	"container/list"
	"crypto/x509"
	"encoding/binary"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/memo"
)

// DefaultCacheSize is how many verified certificates a Verifier remembers when CacheSize is zero.
const DefaultCacheSize = 1024

// MaxVerdictAge is the longest a Verifier reuses a verdict without verifying the certificate
// again, however long the certificate and what its evidence rests on stay valid. It bounds the
// harm of a TEE verifier that reports too late a Result.ValidUntil, and keeps the cache to the
// peers that are connecting now; at one verification per peer per ten minutes its cost is nil.
const MaxVerdictAge = 10 * time.Minute

// maxCacheBytes bounds the DER bytes of the certificates a cache holds (hardware certificates
// with collateral are tens of KiB).
const maxCacheBytes = 16 << 20

// verdictCache remembers certificates whose evidence verified and whose peer a Verifier
// accepted, for as long as that verdict holds; least recently used first out. It belongs to one
// Verifier: nothing is shared between verifiers, so one tenant's roots or policy never decide
// for another's. See the package documentation, "Verdict cache".
type verdictCache struct {
	mu      sync.Mutex
	max     int
	bytes   int
	entries map[[32]byte]*list.Element
	lru     list.List // of *verdict, most recently used first
}

// verdict is one remembered certificate: VerifyCertificate's Peer (before policy), when the
// verdict holds (from inclusive, until exclusive) and the collateral source it was reached with.
type verdict struct {
	key         [32]byte
	peer        *Peer
	size        int
	from, until time.Time
	source      any // sourceIdentity
}

func newVerdictCache(size int) *verdictCache {
	return &verdictCache{max: size, entries: map[[32]byte]*list.Element{}}
}

// get returns a copy of the verdict stored under k if it holds at now (from <= now < until) and
// was reached with the same collateral source, with cert as its certificate; an entry that no
// longer holds is dropped. The copy's collateral is judged at now: its CheckedAt is now, so that
// a policy's max_collateral_age measures the collateral's age at this use, as a verification
// now would (every dated input of the verdict still holds before until).
func (c *verdictCache) get(k [32]byte, now time.Time, cert *x509.Certificate, source any) *Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil
	}
	v := e.Value.(*verdict)
	if now.Before(v.from) || !now.Before(v.until) || v.source != source {
		c.removeLocked(e)
		return nil
	}
	c.lru.MoveToFront(e)
	p := v.peer.clone(cert)
	if p.Result != nil && p.Result.Collateral != nil {
		p.Result.Collateral.CheckedAt = now
	}
	return p
}

// put remembers p (a copy of it) under k from now until until (exclusive), reached with source.
func (c *verdictCache) put(k [32]byte, p *Peer, now, until time.Time, source any) {
	size := len(p.Certificate.Raw)
	if size > maxCacheBytes/16 {
		return
	}
	v := &verdict{key: k, peer: p.clone(p.Certificate), size: size, from: now, until: until, source: source}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.removeLocked(e)
	}
	c.entries[k] = c.lru.PushFront(v)
	c.bytes += size
	for len(c.entries) > c.max || c.bytes > maxCacheBytes {
		c.removeLocked(c.lru.Back())
	}
}

func (c *verdictCache) removeLocked(e *list.Element) {
	v := c.lru.Remove(e).(*verdict)
	delete(c.entries, v.key)
	c.bytes -= v.size
}

// verdictKey names everything a certificate's verdict depends on besides the time: the
// certificate's full DER, the nonce it had to bind (none, for a verdict the cache may serve),
// and the options the TEE verifiers ran with (trust anchors, the verifier's own collateral and
// the peer collateral it was given, strictness). The policy and Check are not in it: they run
// again on every use of a verdict.
func verdictKey(opts *attestation.Options, der, nonce []byte) [32]byte {
	parts := [][]byte{[]byte("enclave-tls verdict v1"), der, nonce}
	addList := func(name string, n int, item func(int) []byte) {
		var count [8]byte
		binary.BigEndian.PutUint64(count[:], uint64(n))
		parts = append(parts, []byte(name), count[:])
		for i := range n {
			parts = append(parts, item(i))
		}
	}
	for _, roots := range []struct {
		name  string
		certs []*x509.Certificate
	}{{"sim", opts.SimRoots}, {"intel", opts.IntelRoots}, {"amd", opts.AMDRoots}} {
		addList(roots.name, len(roots.certs), func(i int) []byte {
			if roots.certs[i] == nil {
				return nil
			}
			return roots.certs[i].Raw
		})
	}
	addList("collateral", len(opts.Collateral), func(i int) []byte { return opts.Collateral[i] })
	addList("peer-collateral", len(opts.PeerCollateral), func(i int) []byte { return opts.PeerCollateral[i] })
	if opts.AllowTrailingData {
		parts = append(parts, []byte("allow-trailing-data"))
	}
	return memo.Key(parts...)
}

// verdictUntil is when a verdict reached at now stops holding (it is reused only strictly
// before): the earliest of the certificate's notAfter, what the TEE verifier says
// (Result.ValidUntil: the first expiry of the certificates and collateral it used) and
// MaxVerdictAge. ok is false for a verdict that must not be reused: the TEE verifier did not say
// how long it holds.
func verdictUntil(p *Peer, now time.Time) (until time.Time, ok bool) {
	res := p.Result
	if res == nil || res.ValidUntil.IsZero() {
		return time.Time{}, false
	}
	until = now.Add(MaxVerdictAge)
	for _, t := range []time.Time{p.Certificate.NotAfter, res.ValidUntil} {
		if t.Before(until) {
			until = t
		}
	}
	return until, until.After(now)
}

// sourceRef names a collateral source by reference: its type and where it lives.
type sourceRef struct {
	typ reflect.Type
	ptr uintptr
	len int
}

// sourceIdentity returns a comparable value that names src (nil for none), so that a verdict
// reached with one collateral source is never served to a verification with another; ok is
// false for a source that cannot be named (a function, or a value that is not comparable), whose
// verdicts are then not remembered. A source is named by reference (pointer, map, slice) or by
// value: the same *collateral.Intel, the same collateral.Sources list.
func sourceIdentity(src attestation.CollateralSource) (id any, ok bool) {
	if src == nil {
		return nil, true
	}
	v := reflect.ValueOf(src)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.UnsafePointer:
		return sourceRef{typ: v.Type(), ptr: v.Pointer()}, true
	case reflect.Slice:
		return sourceRef{typ: v.Type(), ptr: v.Pointer(), len: v.Len()}, true
	case reflect.Func:
		// Closures share their code pointer: two of them cannot be told apart.
		return nil, false
	}
	if v.Comparable() {
		return src, true
	}
	return nil, false
}

// clone copies p for one user, with cert as its certificate: a caller that changes the Peer it
// got (its result's maps, its claims) changes nothing another connection sees.
func (p *Peer) clone(cert *x509.Certificate) *Peer {
	q := *p
	q.Certificate = cert
	q.PolicyChecked = false
	q.Fresh = false
	if p.Claims != nil {
		q.Claims = make(map[string][]byte, len(p.Claims))
		for k, v := range p.Claims {
			q.Claims[k] = bytes.Clone(v)
		}
	}
	if p.Result != nil {
		r := *p.Result
		r.Advisories = slices.Clone(r.Advisories)
		r.Measurements = maps.Clone(r.Measurements)
		r.ReportData = bytes.Clone(r.ReportData)
		r.Details = maps.Clone(r.Details)
		if r.ProductID != nil {
			id := *r.ProductID
			r.ProductID = &id
		}
		if r.SVN != nil {
			svn := *r.SVN
			r.SVN = &svn
		}
		if r.Collateral != nil {
			col := *r.Collateral
			col.CRLs = slices.Clone(col.CRLs)
			r.Collateral = &col
		}
		q.Result = &r
	}
	return &q
}
