package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/inclavare-containers/inclavare-go/manifest/internal/boundedread"
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
	if err := writeFileAtomic(bundle, FileName, data); err != nil {
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

// writeFileAtomic writes dir/name through a temporary file in dir that is synced and renamed,
// so a reader sees the old file or the whole new one, never a part.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	done = true
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
