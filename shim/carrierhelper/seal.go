package carrierhelper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	ociconfig "github.com/containers/ocicrypt/config"
	kpconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	ocikp "github.com/containers/ocicrypt/keywrap/keyprovider"
	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/internal/openat2"
	"github.com/inclavare-containers/inclavare-go/internal/resourceid"
	"github.com/inclavare-containers/inclavare-go/sealed"
	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
)

// keyProviderName is the provider's name in ocicrypt's protocol: verdictd's key provider reads
// the key id from the encryption parameters under its own name (verdictd.KeyProviderName, not
// linked here: the helper links no tenant code).
const keyProviderName = "verdictd"

// wrapTimeout bounds one WrapKey call: ocicrypt's gRPC client has no deadline of its own.
const wrapTimeout = 30 * time.Second

// sealRequest is what RUNE_CARRIER_SEAL asks for: the entrypoint sealed for the KEK keyID.
type sealRequest struct {
	keyID string
}

// sealRequested reads RUNE_CARRIER_SEAL and refuses, before anything is touched, a request that
// could never give a container that starts: no key provider configured, no key broker in the
// container's settings (its enclave could never fetch the KEK), a key id the broker cannot name.
func sealRequested(env []string, s *enclave.Settings, keyProvider string) (*sealRequest, error) {
	id, ok, err := carrierclient.SealRequestedIn(env)
	if err != nil || !ok {
		return nil, err
	}
	if err := resourceid.Check(id); err != nil {
		return nil, fmt.Errorf("%s: %w", carrierclient.EnvCarrierSeal, err)
	}
	if keyProvider == "" {
		return nil, fmt.Errorf("%s=%s: sealing at conversion needs a key provider to wrap the content key, and the shim configuration names none (carriers.keyprovider)",
			carrierclient.EnvCarrierSeal, id)
	}
	if s.KBS == nil {
		return nil, fmt.Errorf("%s=%s: the container names no key broker, so its enclave could never fetch the key-encryption key (set %s and %s or %s)",
			carrierclient.EnvCarrierSeal, id, enclave.EnvKBSURL, enclave.EnvKBSPin, enclave.EnvKBSCA)
	}
	return &sealRequest{keyID: id}, nil
}

// sealedEntrypoint is an entrypoint file replaced by its sealed form, until Commit or Rollback.
type sealedEntrypoint struct {
	dir             *os.File // the file's directory, resolved inside the rootfs
	name, backup    string
	PlaintextSHA256 string
	Size            int64
	done            bool
}

// sealEntrypoint seals the file entry (the entrypoint's path inside rootfs) with a fresh content
// key that the key provider at keyProvider wraps under keyID, and puts the sealed file in its
// place atomically with the original's mode and owner. The original stays linked under a hidden
// name until Commit (removes it) or Rollback (puts it back): a conversion that fails later
// leaves the rootfs as it was.
func sealEntrypoint(ctx context.Context, rootfs, entry, cwd, keyProvider, keyID string) (*sealedEntrypoint, error) {
	if !path.IsAbs(entry) {
		if cwd == "" {
			cwd = "/"
		}
		entry = path.Join(cwd, entry)
	}
	dir, name, err := resolveInRoot(rootfs, entry)
	if err != nil {
		return nil, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	s := &sealedEntrypoint{dir: dir, name: name}
	ok := false
	defer func() {
		if !ok {
			s.Rollback()
		}
	}()
	f, err := openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(int(f.Fd()), &st)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = errors.New("not a regular file")
	}
	if err == nil && st.Size > sealed.MaxPlaintext {
		err = fmt.Errorf("%d bytes, more than the %d a sealed file holds", st.Size, sealed.MaxPlaintext)
	}
	var plain []byte
	if err == nil {
		// Exactly the size fstat gave, read once: the helper runs as root without a memory
		// bound, and a growing buffer would hold up to twice a pod author's file. A file that
		// grows meanwhile is refused rather than read past that size.
		plain = make([]byte, st.Size)
		if _, err = io.ReadFull(f, plain); err == nil {
			if n, _ := f.Read(make([]byte, 1)); n != 0 {
				err = errors.New("it grew while it was read")
			}
		}
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	if sealed.IsSealed(plain) {
		return nil, fmt.Errorf("entrypoint %s is sealed already: drop %s (the enclave opens a tenant-sealed file with its own key)", entry, carrierclient.EnvCarrierSeal)
	}
	dek := make([]byte, sealed.KeySize)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	wrapped, err := wrapKey(ctx, keyProvider, keyID, dek)
	if err != nil {
		return nil, fmt.Errorf("wrap the content key with %s at the key provider %s: %w", keyID, keyProvider, err)
	}
	data, err := sealed.SealWrapped(plain, dek, keyID, wrapped)
	if err != nil {
		return nil, fmt.Errorf("seal entrypoint %s: %w", entry, err)
	}
	// The plaintext's digest as sealing computed it, for the log (not hashed a second time).
	h, _, err := sealed.ParseHeader(data)
	if err != nil {
		return nil, fmt.Errorf("seal entrypoint %s: %w", entry, err)
	}
	s.PlaintextSHA256, s.Size = h.PlaintextSHA256, h.PlaintextSize
	if err := s.replace(data, &st); err != nil {
		return nil, fmt.Errorf("seal entrypoint %s: %w", entry, err)
	}
	ok = true
	return s, nil
}

// replace writes data to a temporary file beside the original, with its owner and mode, links
// the original to the backup name and renames the temporary file over it.
func (s *sealedEntrypoint) replace(data []byte, st *unix.Stat_t) error {
	suffix := make([]byte, 8)
	rand.Read(suffix)
	tmp := "." + s.name + ".rune-seal-" + hex.EncodeToString(suffix)
	f, err := openat(s.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	// Owner first: chown clears the set-id bits that the mode then restores.
	err = unix.Fchown(int(f.Fd()), int(st.Uid), int(st.Gid))
	if err == nil {
		err = unix.Fchmod(int(f.Fd()), st.Mode&0o7777)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		s.backup = "." + s.name + ".rune-unsealed-" + hex.EncodeToString(suffix)
		if err = unix.Linkat(int(s.dir.Fd()), s.name, int(s.dir.Fd()), s.backup, 0); err != nil {
			s.backup = ""
		}
	}
	if err == nil {
		err = unix.Renameat(int(s.dir.Fd()), tmp, int(s.dir.Fd()), s.name)
	}
	if err != nil {
		unix.Unlinkat(int(s.dir.Fd()), tmp, 0)
		if s.backup != "" {
			// The original is still in place: the second link to it goes.
			unix.Unlinkat(int(s.dir.Fd()), s.backup, 0)
			s.backup = ""
		}
		return err
	}
	return nil
}

// Commit drops the original (the sealed file stays).
func (s *sealedEntrypoint) Commit() {
	if s.done {
		return
	}
	s.done = true
	if s.backup != "" {
		unix.Unlinkat(int(s.dir.Fd()), s.backup, 0)
	}
	s.dir.Close()
}

// Rollback puts the original back in place of the sealed file.
func (s *sealedEntrypoint) Rollback() {
	if s.done {
		return
	}
	s.done = true
	if s.backup != "" {
		unix.Renameat(int(s.dir.Fd()), s.backup, int(s.dir.Fd()), s.name)
	}
	s.dir.Close()
}

// resolveInRoot resolves p inside rootfs as the runtimes do (openat2 RESOLVE_IN_ROOT: symlinks
// and ".." stay inside it) and returns the directory that holds the file p finally names and
// the file's name in it. The directory is reopened from the rootfs along the resolved path with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, so what is replaced is the file the runtime would read.
func resolveInRoot(rootfs, p string) (*os.File, string, error) {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("rootfs: %w", err)
	}
	defer unix.Close(root)
	fd, err := openat2.Open(root, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, "", err
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	unix.Close(fd)
	if err != nil {
		return nil, "", err
	}
	rootReal, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(root))
	if err != nil {
		return nil, "", err
	}
	rel, ok := strings.CutPrefix(real, strings.TrimSuffix(rootReal, "/")+"/")
	if !ok || rel == "" {
		return nil, "", fmt.Errorf("resolves to %s, outside the rootfs %s", real, rootReal)
	}
	dirRel, name := path.Split(rel)
	if dirRel == "" {
		dirRel = "."
	}
	dfd, err := openat2.Open(root, dirRel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, "", err
	}
	return os.NewFile(uintptr(dfd), path.Join(rootfs, dirRel)), name, nil
}

func openat(dir *os.File, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path.Join(dir.Name(), name)), nil
}

// wrapKey has the key provider at addr wrap dek under the KEK keyID, through ocicrypt's own
// keyprovider client (gRPC), and returns the wrapped key (package layerkey's JSON).
func wrapKey(ctx context.Context, addr, keyID string, dek []byte) ([]byte, error) {
	kw := ocikp.NewKeyWrapper(keyProviderName, kpconfig.KeyProviderAttrs{Grpc: addr})
	ec := &ociconfig.EncryptConfig{Parameters: map[string][][]byte{keyProviderName: {[]byte(keyID)}}}
	type answer struct {
		wrapped []byte
		err     error
	}
	// ocicrypt calls without a deadline; the helper is a short-lived process, so a call that
	// outlives wrapTimeout is abandoned with it.
	ch := make(chan answer, 1)
	go func() {
		w, err := kw.WrapKeys(ec, dek)
		ch <- answer{w, err}
	}()
	ctx, cancel := context.WithTimeout(ctx, wrapTimeout)
	defer cancel()
	select {
	case a := <-ch:
		if a.err != nil {
			return nil, a.err
		}
		if len(a.wrapped) == 0 {
			return nil, errors.New("the key provider returned no wrapped key")
		}
		return a.wrapped, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no answer: %w", ctx.Err())
	}
}
