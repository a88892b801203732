// Package collateral fetches the collateral a verifier holds itself: Intel's TCB info, QE
// identity, CRLs and PCK certificates from Intel PCS or a PCCS (and AMD's VCEK and chains from
// KDS), through an on-disk cache that honours each document's own validity, and offline from the
// cache alone. It implements attestation.CollateralSource.
//
// Nothing fetched is trusted here: it is passed to the TEE verifiers, which check every signature
// to their TEE's anchors. This package must never decide anything about evidence; a fetch that
// fails is an error naming the URL, never a silent downgrade to "no collateral".
package collateral

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/atomicfile"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// Cache keeps fetched responses on disk, one file per resource (its API path), until the response's own
// expiry (nextUpdate of a TCB info, QE identity or CRL; notAfter of a certificate), judged at the
// verification time. Entries are written atomically and read back strictly; a damaged entry is
// refetched (or, offline, an error).
type Cache struct {
	Dir string
}

// entry is one cached response.
type entry struct {
	URL     string    `json:"url"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
	// Chain is the issuer chain (PEM) the response's header carried, if any.
	Chain string `json:"chain,omitempty"`
	Body  []byte `json:"body"`
}

// ErrNotCached is wrapped when an offline lookup finds no current entry.
var ErrNotCached = errors.New("not in the collateral cache")

func (c *Cache) path(url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(c.Dir, hex.EncodeToString(sum[:])+".json")
}

// get returns the entry for url when it is current at now.
func (c *Cache) get(url string, now time.Time) (*entry, error) {
	if c == nil || c.Dir == "" {
		return nil, ErrNotCached
	}
	b, err := os.ReadFile(c.path(url))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotCached, url)
	}
	if err != nil {
		return nil, err
	}
	var e entry
	if err := strictjson.Decode(b, &e); err != nil || e.URL != url {
		return nil, fmt.Errorf("%w: damaged entry for %s", ErrNotCached, url)
	}
	if !now.Before(e.Expires) {
		return nil, fmt.Errorf("%w: the entry for %s expired at %s", ErrNotCached, url, e.Expires.UTC().Format(time.RFC3339))
	}
	return &e, nil
}

// put stores a response that stays usable until expires.
func (c *Cache) put(url string, body []byte, chainPEM string, expires, now time.Time) error {
	if c == nil || c.Dir == "" || !now.Before(expires) {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("collateral cache: %w", err)
	}
	e := entry{URL: url, Fetched: time.Now().UTC(), Expires: expires.UTC(), Chain: chainPEM, Body: body}
	b, err := json.Marshal(&e)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.path(url), b, 0o600); err != nil {
		return fmt.Errorf("collateral cache: %w", err)
	}
	return nil
}
