package enclavemanifest

import (
	"errors"
	"fmt"
	"strings"
)

// digestHexLen is the length of the hex encoding of each algorithm an OCI digest may name here:
// those of the OCI image spec that go-digest registers.
var digestHexLen = map[string]int{"sha256": 64, "sha384": 96, "sha512": 128}

// checkDigest checks an OCI content digest, "<algorithm>:<lower-case hex>", as go-digest's
// Parse does for its registered algorithms. Written here because rune links this package and
// go-digest's package init (regular expressions) cost every rune invocation 0.13 ms.
func checkDigest(s string) error {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok || alg == "" || enc == "" {
		return errors.New(`invalid digest format: want "<algorithm>:<hex>"`)
	}
	n, known := digestHexLen[alg]
	if !known {
		return fmt.Errorf("unsupported digest algorithm %q (sha256, sha384, sha512)", clip(alg))
	}
	if len(enc) != n {
		return fmt.Errorf("invalid %s digest length: %d hex digits, want %d", alg, len(enc), n)
	}
	for i := 0; i < len(enc); i++ {
		if c := enc[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("invalid %s digest: %q is not a lower-case hex digit", alg, c)
		}
	}
	return nil
}
