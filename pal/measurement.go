package pal

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// MeasurementDomain opens every PAL measurement, so that it can never be
// mistaken for a digest of something else. docs/measurement-pal.md defines
// the encoding.
const MeasurementDomain = "inclavare-go/pal/measurement/v1"

// Measurement is the hex SHA-256 identifying this PAL running p with the
// configuration Init received: the digest of the library file as loaded, the
// pal_init args and log level, and p's path and argv. It is the best rune
// can say about a third-party runtime; it does not see inside the enclave.
func (l *Library) Measurement(p enclave.Process) (string, error) {
	l.mu.Lock()
	state, args, level := l.state, l.args, l.logLevel
	l.mu.Unlock()
	if state == stateLoaded {
		return "", errors.New("PAL measurement: enclave runtime not initialized: the launch configuration comes from Init")
	}
	return measure(l.digest, args, level, p)
}

// Measure computes, without loading it, the measurement the PAL at path
// would have for cfg and p (what Library.Measurement returns after Load and
// Init(cfg)), so that reference values can be computed off the node.
func Measure(path string, cfg enclave.Config, p enclave.Process) (string, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("PAL measurement: %w", err)
	}
	f, err := os.Open(resolved)
	if err != nil {
		return "", fmt.Errorf("PAL measurement: %w", err)
	}
	defer f.Close()
	if _, err := identify(f); err != nil {
		return "", fmt.Errorf("PAL measurement %q: %w", path, err)
	}
	digest, err := digestFile(f)
	if err != nil {
		return "", fmt.Errorf("PAL measurement %q: %w", path, err)
	}
	return measure(digest, InitArgs(cfg.Args), effectiveLogLevel(cfg.LogLevel), p)
}

func measure(libDigest [sha256.Size]byte, args, logLevel string, p enclave.Process) (string, error) {
	if p.Path == "" {
		return "", errors.New("PAL measurement: empty program path")
	}
	argv := p.Args
	if len(argv) == 0 {
		argv = []string{p.Path}
	}
	h := sha256.New()
	field(h, []byte(MeasurementDomain))
	field(h, libDigest[:])
	field(h, []byte(args))
	field(h, []byte(logLevel))
	field(h, []byte(p.Path))
	count(h, len(argv))
	for _, a := range argv {
		field(h, []byte(a))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// field writes a length-prefixed byte string: u64 little-endian length, bytes.
func field(h hash.Hash, b []byte) {
	count(h, len(b))
	h.Write(b)
}

func count(h hash.Hash, n int) {
	var le [8]byte
	binary.LittleEndian.PutUint64(le[:], uint64(n))
	h.Write(le[:])
}
