package collateral

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Config says where collateral comes from: the flags --collateral-from, --kds-url,
// --collateral-ca, --collateral-cache and --offline of shelter, inclavared and verdictd.
type Config struct {
	// IntelURL is "pcs" (Intel PCS), a PCCS's https base URL, or "" (no Intel fetching).
	IntelURL string
	// KDSURL is "kds" (AMD KDS), a mirror's https base URL, or "" (no AMD fetching).
	KDSURL string
	// CA, when set, is what the services' TLS certificates must chain to (a PCCS's own CA).
	CA *x509.CertPool
	// CacheDir keeps fetched documents until they expire; with Offline nothing else is used.
	CacheDir string
	Offline  bool
	// APIKey is Intel PCS's subscription key (pckcert only); take it from the environment.
	APIKey string
}

// New returns the source cfg describes, nil when it describes none.
func New(cfg Config) (attestation.CollateralSource, error) {
	if cfg.IntelURL == "" && cfg.KDSURL == "" && cfg.CacheDir == "" {
		if cfg.Offline || cfg.CA != nil {
			return nil, fmt.Errorf("offline and a collateral CA need a collateral service or cache")
		}
		return nil, nil
	}
	f := Fetcher{Offline: cfg.Offline}
	if cfg.CacheDir != "" {
		f.Cache = &Cache{Dir: cfg.CacheDir}
	}
	if cfg.CA != nil {
		f.Client = &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.CA, MinVersion: tls.VersionTLS12}}}
	}
	intel, err := baseURL(cfg.IntelURL, "pcs", PCSURL)
	if err != nil {
		return nil, err
	}
	amd, err := baseURL(cfg.KDSURL, "kds", KDSURL)
	if err != nil {
		return nil, err
	}
	var s Sources
	// Offline with only a cache still answers from the cache for both vendors.
	if intel != "" || cfg.CacheDir != "" {
		if intel == "" {
			f.Offline = true
		}
		s = append(s, &Intel{BaseURL: intel, APIKey: cfg.APIKey, Fetcher: f})
	}
	if amd != "" || cfg.CacheDir != "" {
		fa := f
		if amd == "" {
			fa.Offline = true
		}
		s = append(s, &AMD{BaseURL: amd, Fetcher: fa})
	}
	return s, nil
}

func baseURL(v, short, long string) (string, error) {
	switch v {
	case "":
		return "", nil
	case short:
		return long, nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("collateral service %q: want %s or an https:// URL", v, short)
	}
	return v, nil
}

// Sources asks each source in turn and returns all they found.
type Sources []attestation.CollateralSource

// Collateral implements attestation.CollateralSource.
func (s Sources) Collateral(ctx context.Context, tee attestation.TEE, evidence []byte, opts attestation.Options) ([][]byte, error) {
	var out [][]byte
	for _, src := range s {
		files, err := src.Collateral(ctx, tee, evidence, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	return out, nil
}
