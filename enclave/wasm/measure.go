package wasm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"

	"github.com/inclavare-containers/inclavare-go/sealed"
)

// measurementDomain starts every encoded measurement, so that a digest from this spec can never
// be confused with the hash of some other structure. docs/measurement.md is the normative spec.
const measurementDomain = "inclavare-enclave-measurement/v1"

// Launch is what, besides the module bytes, determines how a wasm workload starts.
type Launch struct {
	// Args is argv exactly as the guest receives it, argv[0] included.
	Args []string
	// Env holds KEY=VALUE entries as the process configuration lists them. The guest receives
	// each key once, at its first position with its last value (GuestEnv); that list is measured,
	// in order.
	Env []string
	// Dir is the working directory; "" means "/".
	Dir string
	// MemoryLimit is the cap on each linear memory in bytes; 0 means the wasm maximum (4 GiB).
	MemoryLimit uint64
	// Secrets are the measured broker settings (enclave.KBS.Measured); none: the field is absent.
	Secrets []string
	// Layers are the measured encrypted layers (enclave.LayerMeasured); none: the field is absent.
	Layers []string
	// CodeInLayer, when set, is the module's path under a layer's target: it is measured in place
	// of the module's digest, which the layers' digests pin.
	CodeInLayer string
}

// Measure returns the hex SHA-256 measurement of module started with launch, as defined in
// docs/measurement.md. It runs nothing, so rune or the shim can compute it on the host and a
// verifier can recompute it from the image and the container config. The module's digest is
// sealed.CodeDigest: for a module a carrier sealed with a wrapped content key, its plaintext's.
func Measure(module []byte, launch Launch) string {
	return measureSum(sealed.CodeDigest(module), launch)
}

// measureSum is Measure for a module whose code digest is moduleSum.
func measureSum(moduleSum [sha256.Size]byte, launch Launch) string {
	dir := launch.Dir
	if dir == "" {
		dir = "/"
	}
	limit := launch.MemoryLimit
	if limit == 0 {
		limit = maxPages * pageSize
	}
	var e measurementEncoder
	e.str(measurementDomain)
	e.field("runtime").str("wasm")
	if launch.CodeInLayer != "" {
		e.field("module-in-layer").str(launch.CodeInLayer)
	} else {
		e.field("module-sha256").str(string(moduleSum[:]))
	}
	e.field("argv").list(launch.Args)
	e.field("env").list(GuestEnv(launch.Env))
	e.field("dir").str(dir)
	e.field("memory-limit").u64(limit)
	if len(launch.Secrets) > 0 {
		e.field("secrets").list(launch.Secrets)
	}
	if len(launch.Layers) > 0 {
		e.field("layers").list(launch.Layers)
	}
	sum := sha256.Sum256(e.buf)
	return hex.EncodeToString(sum[:])
}

// measurementEncoder builds the canonical, length-prefixed byte string that is hashed.
type measurementEncoder struct{ buf []byte }

func (e *measurementEncoder) field(name string) *measurementEncoder { return e.str(name) }

func (e *measurementEncoder) str(s string) *measurementEncoder {
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(s)))
	e.buf = append(e.buf, s...)
	return e
}

func (e *measurementEncoder) list(items []string) *measurementEncoder {
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(items)))
	for _, s := range items {
		e.str(s)
	}
	return e
}

func (e *measurementEncoder) u64(v uint64) *measurementEncoder {
	e.buf = binary.BigEndian.AppendUint64(e.buf, v)
	return e
}

// GuestEnv is the environment a guest receives for env: each key once, at the position of its
// first entry, with the value of its last (WASI passes an environment without repeated keys).
func GuestEnv(env []string) []string {
	out := make([]string, 0, len(env))
	index := make(map[string]int, len(env))
	for _, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		if i, ok := index[key]; ok {
			out[i] = kv
			continue
		}
		index[key] = len(out)
		out = append(out, kv)
	}
	return out
}
