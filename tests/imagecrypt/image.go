package imagecrypt

import (
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// BusyboxArchive writes an oci-archive of one uncompressed layer, the host's busybox-static root
// file system with files added, and returns its path and the layer's digest (its diff ID).
// (It is here, not in package harness, because tests/clients' tests import harness.)
func BusyboxArchive(t testing.TB, files map[string][]byte) (string, digest.Digest) {
	t.Helper()
	bb, err := clients.BusyboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := clients.BusyboxRootfsTar(bb)
	if err != nil {
		t.Fatal(err)
	}
	if layer, err = clients.WithFiles(layer, files); err != nil {
		t.Fatal(err)
	}
	archive, err := clients.OCIArchive(layer, "latest")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, digest.FromBytes(layer)
}
