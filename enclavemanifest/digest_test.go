package enclavemanifest

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestCheckDigestAgreesWithGoDigest: checkDigest accepts exactly what go-digest's Parse accepts.
func TestCheckDigestAgreesWithGoDigest(t *testing.T) {
	hex := func(n int, c string) string { return strings.Repeat(c, n) }
	inputs := []string{
		"sha256:" + hex(64, "a"), "sha384:" + hex(96, "0"), "sha512:" + hex(128, "f"),
		"sha256:" + hex(63, "a"), "sha256:" + hex(65, "a"), "sha256:" + hex(64, "A"), "sha256:" + hex(64, "g"),
		"sha256:", ":" + hex(64, "a"), "sha256" + hex(64, "a"), "", "md5:" + hex(32, "a"),
		"SHA256:" + hex(64, "a"), "sha256:" + hex(63, "a") + " ", "sha256:" + hex(64, "a") + "\n",
		"sha384:" + hex(64, "a"), "sha512:" + hex(96, "a"), "sha256+b64u:" + hex(64, "a"),
	}
	for _, s := range inputs {
		_, want := digest.Parse(s)
		got := checkDigest(s)
		if (got == nil) != (want == nil) {
			t.Errorf("%q: checkDigest %v, go-digest %v", s, got, want)
		}
	}
}

func FuzzCheckDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("a", 64))
	f.Fuzz(func(t *testing.T, s string) {
		_, want := digest.Parse(s)
		if got := checkDigest(s); (got == nil) != (want == nil) {
			t.Fatalf("%q: checkDigest %v, go-digest %v", s, got, want)
		}
	})
}
