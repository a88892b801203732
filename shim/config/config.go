// Package config reads and validates the node's Inclavare Containers configuration,
// /etc/inclavare-containers/config.toml (documented key by key in shim/README.md):
// containerd-shim-rune-v2 reads all of it, rune reads it for its [enclave] section (LoadEnclave).
//
// Decoding is strict: an unknown key, a value of the wrong type or a value outside its
// allowed set is an error naming the key, so a typo can never silently fall back to a
// default. Parse never touches the file system; CheckFiles reads the files the
// configuration names (keys, certificates). This package must never contact a signing
// service or start a process: it only describes what the shim will do.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/sirupsen/logrus"
)

const (
	// DefaultPath is where the shim looks for its configuration when nothing else is given.
	DefaultPath = "/etc/inclavare-containers/config.toml"
	// EnvPath names an environment variable of the shim (inherited from containerd) that
	// overrides DefaultPath; tests use it to give a private configuration.
	EnvPath = "INCLAVARE_SHIM_CONFIG"
	// DefaultRuneRoot is rune's --root; the shim appends the containerd namespace, as the
	// runc shim does with /run/containerd/runc.
	DefaultRuneRoot = "/run/containerd/rune"
	// DefaultCarrierCacheDir holds converted enclave images.
	DefaultCarrierCacheDir = "/var/cache/inclavare-containers/carriers"
	// EnvRunePath names an environment variable of rune that overrides DefaultPath for rune
	// (tests use it to give rune a private configuration).
	EnvRunePath = "RUNE_CONFIG"
	// DefaultSigningTimeout bounds one request to a signing service.
	DefaultSigningTimeout = 30 * time.Second
	// maxSigningTimeout keeps a misconfigured timeout from hanging a create for hours.
	maxSigningTimeout = 10 * time.Minute
	// maxFileSize caps the configuration file: it is small by nature, and a huge or
	// endless file (a device, a FIFO) must not stall the shim.
	maxFileSize = 1 << 20
)

// Config is the whole configuration file.
type Config struct {
	// LogLevel is the shim's log level; empty keeps containerd's choice (debug when
	// containerd runs the shim with -debug, else info).
	LogLevel string   `toml:"log_level"`
	Rune     Rune     `toml:"rune"`
	Signing  Signing  `toml:"signing"`
	Carriers Carriers `toml:"carriers"`
	Enclave  Enclave  `toml:"enclave"`
}

// Enclave is what rune allows enclave containers to use from the host.
type Enclave struct {
	// PALDirs are the directories from which an enclave container may load a PAL library
	// (ENCLAVE_RUNTIME_PATH): a PAL path outside them is refused. Absent: DefaultPALDirs;
	// an empty list allows no PAL at all (built-in runtimes only).
	PALDirs []string `toml:"pal_dirs"`
}

// Rune says which rune binary the shim drives and how.
type Rune struct {
	// Path is the rune binary (absolute). Empty: rune next to the shim binary, then PATH.
	Path string `toml:"path"`
	// Root is rune's state root (absolute); the shim appends the namespace.
	Root string `toml:"root"`
	// SystemdCgroup makes rune use systemd cgroup paths (rune --systemd-cgroup).
	SystemdCgroup bool `toml:"systemd_cgroup"`
	// ManifestTrust is the PEM file of keys rune trusts for the enclave manifests of
	// converted containers (rune --manifest-trust). Empty: rune's own default.
	ManifestTrust string `toml:"manifest_trust"`
}

// Signing says how carriers sign the enclave manifests they produce: with a local key,
// through an authenticated signing service, or (development only, when asked for by
// name) with a throwaway key; exactly one of them.
type Signing struct {
	// KeyFile is a PEM private key (PKCS#1, PKCS#8 or SEC 1).
	KeyFile string `toml:"key_file"`
	// Service is a remote signer reached over mutually authenticated TLS.
	Service *SigningService `toml:"service"`
	// Ephemeral signs with a key made up for each conversion. Its manifests prove only
	// that nothing was damaged, not who converted the image; rune accepts them only
	// because the shim then tells it to (rune --manifest-allow-ephemeral).
	Ephemeral bool `toml:"ephemeral"`
}

// SigningService is a signing service reached over HTTPS with a client certificate.
type SigningService struct {
	URL        string   `toml:"url"`
	ClientCert string   `toml:"client_cert"`
	ClientKey  string   `toml:"client_key"`
	CACert     string   `toml:"ca_cert"`
	Timeout    Duration `toml:"timeout"`
}

// Carriers configures image conversion (ordinary image → enclave image). The shim
// environment variable RUNE_CARRIER picks one of the enabled carriers per shim.
type Carriers struct {
	Enabled  []string `toml:"enabled"`
	CacheDir string   `toml:"cache_dir"`
	// KeyProvider is the ocicrypt key provider (gRPC, ocicrypt's keyprovider protocol; the
	// tenant's verdictd) that wraps the fresh content key of an entrypoint a carrier seals
	// (RUNE_CARRIER_SEAL): "unix:///abs/path" or "host:port". Empty: sealing is refused. Only
	// the node's administrator names it; a pod never does.
	KeyProvider string `toml:"keyprovider"`
}

// DefaultPALDirs are where PALs are installed: Occlum's build output and this project's own
// directory for PALs.
var DefaultPALDirs = []string{"/opt/occlum/build/lib", "/usr/lib/inclavare-containers/pal"}

// maxPALDirs bounds pal_dirs: each is resolved at every create of a PAL container.
const maxPALDirs = 64

// Duration is a time.Duration written as a Go duration string ("30s", "2m").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. \"30s\"): %q", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Default is the configuration used when no file exists at DefaultPath.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Rune.Root == "" {
		c.Rune.Root = DefaultRuneRoot
	}
	if c.Carriers.CacheDir == "" {
		c.Carriers.CacheDir = DefaultCarrierCacheDir
	}
	if c.Enclave.PALDirs == nil {
		c.Enclave.PALDirs = append([]string(nil), DefaultPALDirs...)
	}
	if c.Signing.Service != nil && c.Signing.Service.Timeout == 0 {
		c.Signing.Service.Timeout = Duration(DefaultSigningTimeout)
	}
}

// Parse decodes a configuration document strictly, fills in defaults and checks every
// value that can be checked without the file system. Errors name the offending key.
func Parse(data []byte) (*Config, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("configuration is %d bytes, more than the %d allowed", len(data), maxFileSize)
	}
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, describeDecodeError(err)
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// describeDecodeError turns go-toml's errors into one line per problem that names the key
// and its position.
func describeDecodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var msgs []string
		for _, e := range strict.Errors {
			row, col := e.Position()
			msgs = append(msgs, fmt.Sprintf("unknown key %q (line %d, column %d)", strings.Join(e.Key(), "."), row, col))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	var dec *toml.DecodeError
	if errors.As(err, &dec) {
		row, col := dec.Position()
		if key := dec.Key(); len(key) > 0 {
			return fmt.Errorf("key %q (line %d, column %d): %s", strings.Join(key, "."), row, col, dec.Error())
		}
		return fmt.Errorf("line %d, column %d: %s", row, col, dec.Error())
	}
	return fmt.Errorf("decode: %w", err)
}

// isCarrierName reports whether name has the syntax of a carrier name (the value of
// RUNE_CARRIER): ^[a-z0-9][a-z0-9_-]{0,62}$. A loop, not a regexp: rune links this package, and
// a package-level regexp is compiled at every rune invocation.
func isCarrierName(name string) bool {
	if name == "" || len(name) > 63 || name[0] == '_' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func (c *Config) validate() error {
	var errs []error
	if c.LogLevel != "" {
		if _, err := logrus.ParseLevel(c.LogLevel); err != nil || c.LogLevel != strings.ToLower(c.LogLevel) {
			errs = append(errs, fmt.Errorf("log_level %q: want one of trace, debug, info, warn, error, fatal, panic", c.LogLevel))
		}
	}
	if c.Rune.Path != "" {
		errs = append(errs, checkAbsolute("rune.path", c.Rune.Path))
	}
	errs = append(errs, checkAbsolute("rune.root", c.Rune.Root))
	if c.Rune.ManifestTrust != "" {
		errs = append(errs, checkAbsolute("rune.manifest_trust", c.Rune.ManifestTrust))
	}
	errs = append(errs, c.Signing.validate())
	errs = append(errs, checkAbsolute("carriers.cache_dir", c.Carriers.CacheDir))
	seen := make(map[string]bool)
	for _, name := range c.Carriers.Enabled {
		switch {
		case !isCarrierName(name):
			errs = append(errs, fmt.Errorf("carriers.enabled: %q is not a carrier name (lower-case letters, digits, - and _)", name))
		case seen[name]:
			errs = append(errs, fmt.Errorf("carriers.enabled: %q listed twice", name))
		}
		seen[name] = true
	}
	if c.Carriers.KeyProvider != "" {
		errs = append(errs, checkKeyProvider(c.Carriers.KeyProvider))
	}
	errs = append(errs, c.Enclave.validate())
	// A converted image runs as an enclave whose identity is its signer: without a
	// signer there is nothing to convert to.
	if len(c.Carriers.Enabled) > 0 && !c.Signing.Configured() {
		errs = append(errs, errors.New("carriers.enabled needs [signing] key_file or [signing.service] (or, for development only, ephemeral = true)"))
	}
	return errors.Join(errs...)
}

func (e Enclave) validate() error {
	if len(e.PALDirs) > maxPALDirs {
		return fmt.Errorf("enclave.pal_dirs: %d directories, at most %d", len(e.PALDirs), maxPALDirs)
	}
	var errs []error
	seen := make(map[string]bool)
	for _, d := range e.PALDirs {
		switch err := checkAbsolute("enclave.pal_dirs", d); {
		case err != nil:
			errs = append(errs, err)
		case d == "/":
			errs = append(errs, errors.New("enclave.pal_dirs: \"/\" would allow every library of the host; name the directories that hold PALs"))
		case seen[d]:
			errs = append(errs, fmt.Errorf("enclave.pal_dirs: %q listed twice", d))
		}
		seen[d] = true
	}
	return errors.Join(errs...)
}

// Configured reports whether a signer is configured.
func (s Signing) Configured() bool { return s.KeyFile != "" || s.Service != nil || s.Ephemeral }

func (s Signing) validate() error {
	if s.KeyFile != "" && s.Service != nil {
		return errors.New("signing: key_file and [signing.service] are mutually exclusive")
	}
	if s.Ephemeral && (s.KeyFile != "" || s.Service != nil) {
		return errors.New("signing: ephemeral = true excludes key_file and [signing.service] (an ephemeral key would never be used)")
	}
	if s.KeyFile != "" {
		return checkAbsolute("signing.key_file", s.KeyFile)
	}
	if s.Service == nil {
		return nil
	}
	svc := s.Service
	var errs []error
	u, err := url.Parse(svc.URL)
	switch {
	case svc.URL == "":
		errs = append(errs, errors.New("signing.service.url is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("signing.service.url: %w", err))
	case u.Scheme != "https":
		errs = append(errs, fmt.Errorf("signing.service.url %q: only https is allowed (the signer must be authenticated)", svc.URL))
	case u.Host == "" || u.Hostname() == "":
		errs = append(errs, fmt.Errorf("signing.service.url %q has no host", svc.URL))
	case u.User != nil:
		errs = append(errs, fmt.Errorf("signing.service.url must not carry credentials; use client_cert and client_key"))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("signing.service.url %q must not have a query or fragment", svc.URL))
	}
	// The service must know who asks for a signature: a client certificate is required.
	for _, f := range []struct{ key, val string }{{"signing.service.client_cert", svc.ClientCert}, {"signing.service.client_key", svc.ClientKey}} {
		if f.val == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.key))
		} else {
			errs = append(errs, checkAbsolute(f.key, f.val))
		}
	}
	if svc.CACert != "" {
		errs = append(errs, checkAbsolute("signing.service.ca_cert", svc.CACert))
	}
	if t := time.Duration(svc.Timeout); t <= 0 || t > maxSigningTimeout {
		errs = append(errs, fmt.Errorf("signing.service.timeout %v: want more than 0 and at most %v", t, maxSigningTimeout))
	}
	return errors.Join(errs...)
}

// checkKeyProvider accepts the gRPC targets ocicrypt dials: "unix:///abs/path" or "host:port".
func checkKeyProvider(addr string) error {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return checkAbsolute("carriers.keyprovider (unix://)", p)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(addr, "/ ") {
		return fmt.Errorf("carriers.keyprovider %q: want unix:///absolute/path or host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("carriers.keyprovider %q: port %q is not 1 to 65535", addr, port)
	}
	return nil
}

func checkAbsolute(key, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s %q: must be an absolute path", key, path)
	}
	if filepath.Clean(path) != path {
		return fmt.Errorf("%s %q: must be a clean path (no //, /./, /../ or trailing /)", key, path)
	}
	return nil
}

// CheckCarriers fails when an enabled carrier is not among those this shim build
// provides, so a configuration never names a conversion that would not happen.
func (c *Config) CheckCarriers(available []string) error {
	have := make(map[string]bool, len(available))
	for _, a := range available {
		have[a] = true
	}
	sorted := append([]string(nil), available...)
	sort.Strings(sorted)
	list := strings.Join(sorted, ", ")
	if list == "" {
		list = "none"
	}
	var errs []error
	for _, name := range c.Carriers.Enabled {
		if !have[name] {
			errs = append(errs, fmt.Errorf("carriers.enabled: carrier %q is not available in this shim (available: %s)", name, list))
		}
	}
	return errors.Join(errs...)
}

// Source says where a configuration came from, for log messages and errors.
type Source struct {
	// Path is the file read; empty when Body is used.
	Path string
	// Body is an in-line document (containerd's runtime options ConfigBody).
	Body []byte
	// Required: a missing file is an error. Only DefaultPath may be absent (then the
	// defaults apply): a path somebody named must exist.
	Required bool
}

func (s Source) String() string {
	if s.Path == "" {
		return "runtime options ConfigBody"
	}
	return s.Path
}

// Locate picks the configuration: a path from the runtime options, else a body from
// the runtime options, else $INCLAVARE_SHIM_CONFIG, else DefaultPath.
func Locate(optionPath string, optionBody []byte, getenv func(string) string) Source {
	switch {
	case optionPath != "":
		return Source{Path: optionPath, Required: true}
	case len(optionBody) > 0:
		return Source{Body: optionBody}
	}
	if p := getenv(EnvPath); p != "" {
		return Source{Path: p, Required: true}
	}
	return Source{Path: DefaultPath}
}

// Load reads the configuration from src, parses it and checks the files it names.
func Load(src Source) (*Config, error) {
	data := src.Body
	if src.Path != "" {
		var err error
		data, err = readFile(src.Path)
		if errors.Is(err, os.ErrNotExist) && !src.Required {
			return Default(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("read shim configuration: %w", err)
		}
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("shim configuration %s: %w", src, err)
	}
	if err := c.CheckFiles(); err != nil {
		return nil, fmt.Errorf("shim configuration %s: %w", src, err)
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO would block until a writer appears.
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxFileSize+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// LoadEnclave reads the configuration as rune uses it, for enclave containers: the file named
// by $RUNE_CONFIG (must exist), else by $INCLAVARE_SHIM_CONFIG (the shim's own override, which
// rune inherits when the shim runs it; must exist), else DefaultPath (absent: the defaults).
// The whole file is decoded and validated as strictly as the shim does it, but the files it
// names are not looked at: those are the shim's. It returns the path it read.
func LoadEnclave(getenv func(string) string) (*Enclave, string, error) {
	src := Source{Path: DefaultPath}
	for _, env := range []string{EnvRunePath, EnvPath} {
		if p := getenv(env); p != "" {
			src = Source{Path: p, Required: true}
			break
		}
	}
	data, err := readFile(src.Path)
	if errors.Is(err, os.ErrNotExist) && !src.Required {
		return &Default().Enclave, src.Path, nil
	}
	if err != nil {
		return nil, src.Path, fmt.Errorf("read configuration: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, src.Path, fmt.Errorf("configuration %s: %w", src, err)
	}
	return &c.Enclave, src.Path, nil
}
