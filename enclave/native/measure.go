package native

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"github.com/inclavare-containers/inclavare-go/sealed"
)

// measurementDomain starts every encoded measurement; docs/measurement.md is the normative spec
// (shared with builtin:wasm, which differs in the runtime name and its own fields).
const measurementDomain = "inclavare-enclave-measurement/v1"

// Launch is what, besides the executable's bytes, determines how a native workload starts.
type Launch struct {
	// Args is argv exactly as execve receives it, argv[0] included.
	Args []string
	// Env holds the environment exactly as execve receives it, in order, repeated keys included.
	Env []string
	// Dir is the working directory; "" means "/".
	Dir string
	// Secrets are the measured broker settings (enclave.KBS.Measured); none: the field is absent.
	Secrets []string
	// Layers are the measured encrypted layers (enclave.LayerMeasured); none: the field is absent.
	Layers []string
	// CodeInLayer, when set, is the executable's path under a layer's target: it is measured in
	// place of the executable's digest, which the layers' digests pin.
	CodeInLayer string
}

// Measure returns the hex SHA-256 measurement of the executable exe started with launch, as
// defined in docs/measurement.md. It runs nothing, so rune or the shim can compute it on the host.
// The executable's digest is sealed.CodeDigest: for an executable a carrier sealed with a
// wrapped content key, its plaintext's.
func Measure(exe []byte, launch Launch) string {
	return measureSum(sealed.CodeDigest(exe), launch)
}

// measureSum is Measure for an executable whose SHA-256 is exeSum.
func measureSum(exeSum [sha256.Size]byte, launch Launch) string {
	dir := launch.Dir
	if dir == "" {
		dir = "/"
	}
	var buf []byte
	str := func(s string) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
		buf = append(buf, s...)
	}
	list := func(items []string) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(items)))
		for _, s := range items {
			str(s)
		}
	}
	str(measurementDomain)
	str("runtime")
	str("native")
	if launch.CodeInLayer != "" {
		str("executable-in-layer")
		str(launch.CodeInLayer)
	} else {
		str("executable-sha256")
		str(string(exeSum[:]))
	}
	str("argv")
	list(launch.Args)
	str("env")
	list(launch.Env)
	str("dir")
	str(dir)
	if len(launch.Secrets) > 0 {
		str("secrets")
		list(launch.Secrets)
	}
	if len(launch.Layers) > 0 {
		str("layers")
		list(launch.Layers)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}
