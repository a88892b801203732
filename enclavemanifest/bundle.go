package enclavemanifest

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest/internal/boundedread"
	"github.com/inclavare-containers/inclavare-go/internal/atomicfile"
)

// BundlePath is where a bundle's manifest lives: <bundle>/enclave-manifest.json.
func BundlePath(bundle string) string { return filepath.Join(bundle, FileName) }

// WriteToBundle stores a manifest in bundle atomically (a temporary file renamed into place),
// readable by its owner only: the manifest lists the workload's environment. data must be a
// well-formed manifest; nothing else is ever written there.
func WriteToBundle(bundle string, data []byte) error {
	if _, err := ParseUnverified(data); err != nil {
		return fmt.Errorf("write enclave manifest: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(bundle, FileName), data, 0o600); err != nil {
		return fmt.Errorf("write enclave manifest: %w", err)
	}
	return nil
}

// ReadFromBundle reads <bundle>/enclave-manifest.json. It does not follow a symbolic link
// there, refuses anything but a regular file, and reads at most MaxSize bytes. When the
// file does not exist, the error satisfies errors.Is(err, os.ErrNotExist).
func ReadFromBundle(bundle string) ([]byte, error) {
	p := BundlePath(bundle)
	data, err := boundedread.FileNoFollow(p, MaxSize)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("read enclave manifest: %s is a symbolic link", p)
	}
	if err != nil {
		return nil, fmt.Errorf("read enclave manifest: %w", err)
	}
	return data, nil
}
