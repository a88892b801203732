package imagelayer

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/inclavare-containers/inclavare-go/internal/openat2"
	"golang.org/x/sys/unix"
)

// maxEntries bounds the entries of one layer.
const maxEntries = 1 << 20

// Layer is an encrypted layer's directory and the directory its files are unpacked under.
type Layer struct{ Dir, Target string }

// Unpack decrypts the layer l (its blob must have the SHA-256 blobDigest, as measured) with the
// key that kek leads to and unpacks its files under l.Target, an empty directory, inside root. On
// any failure the target is emptied again.
func Unpack(root *os.File, l Layer, blobDigest string, kek KEKFunc) (err error) {
	d, err := Descriptor(root, l.Dir)
	if err != nil {
		return err
	}
	if d.Digest.Encoded() != blobDigest {
		return fmt.Errorf("encrypted layer %s: its descriptor names %s, the measured blob is sha256:%s", l.Dir, d.Digest, blobDigest)
	}
	c, err := Options(d, kek)
	if err != nil {
		return fmt.Errorf("encrypted layer %s: %w", l.Dir, err)
	}
	blob, err := openIn(root, path.Join(l.Dir, BlobFile), unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("encrypted layer %s: %w", l.Dir, err)
	}
	defer blob.Close()
	if err := regular(blob); err != nil {
		return fmt.Errorf("encrypted layer %s: %w", l.Dir, err)
	}
	target, err := openIn(root, l.Target, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("encrypted layer %s: target %s: %w", l.Dir, l.Target, err)
	}
	defer target.Close()
	defer func() {
		if err != nil {
			if cerr := clearDir(int(target.Fd())); cerr != nil {
				err = errors.Join(err, fmt.Errorf("empty %s again: %w", l.Target, cerr))
			}
		}
	}()
	dec, err := c.decrypter(blob, d.Size)
	if err != nil {
		return err
	}
	var plain io.Reader = dec
	if MediaTypes[d.MediaType] == "gzip" {
		zr, err := gzip.NewReader(dec)
		if err != nil {
			return fmt.Errorf("encrypted layer %s: %w", l.Dir, unauthenticated(dec, c, blobDigest, err))
		}
		zr.Multistream(false)
		plain = zr
	}
	if MediaTypes[d.MediaType] == "" {
		dec.diff = dec.plain // not compressed: the diff ID is the stored plaintext's digest
	} else {
		plain = io.TeeReader(plain, dec.diff)
	}
	if err := extract(tar.NewReader(plain), int(target.Fd()), l.Target); err != nil {
		return fmt.Errorf("encrypted layer %s: %w", l.Dir, unauthenticated(dec, c, blobDigest, err))
	}
	// Whatever follows the archive (tar padding, the gzip trailer) is read and checked too.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return fmt.Errorf("encrypted layer %s: %w", l.Dir, unauthenticated(dec, c, blobDigest, err))
	}
	if err := dec.verify(c, blobDigest); err != nil {
		return fmt.Errorf("encrypted layer %s: %w", l.Dir, err)
	}
	return nil
}

// unauthenticated reports a failure while unpacking: as the stream's authentication says when it
// fails (a changed layer makes garbage of the plaintext, which is not its fault), else err.
func unauthenticated(dec *decrypter, c *Cipher, blobDigest string, err error) error {
	if verr := dec.authenticate(c, blobDigest); verr != nil {
		return verr
	}
	return err
}

// extract writes the entries of tr under the directory dirfd, which is target in the layer's
// paths.
func extract(tr *tar.Reader, dirfd int, target string) error {
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n >= maxEntries {
			return fmt.Errorf("more than %d entries", maxEntries)
		}
		name := path.Clean("/" + hdr.Name)
		if name == target {
			continue
		}
		rel, ok := strings.CutPrefix(name, target+"/")
		if !ok {
			return fmt.Errorf("entry %q is outside the target %s", hdr.Name, target)
		}
		if strings.HasPrefix(path.Base(rel), ".wh.") {
			return fmt.Errorf("entry %q is a whiteout: an encrypted layer unpacked in the enclave has no layer below it", hdr.Name)
		}
		if err := extractEntry(tr, hdr, dirfd, rel, target); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

func extractEntry(tr *tar.Reader, hdr *tar.Header, dirfd int, rel, target string) error {
	parent, err := mkdirAll(dirfd, path.Dir(rel))
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	base := path.Base(rel)
	perm := uint32(hdr.Mode) & 0o777 // no set-id bits: the file system is nosuid anyway
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(parent, base, 0o700); err != nil && err != unix.EEXIST {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return errors.New("exists and is not a directory")
		}
		return unix.Fchmodat(parent, base, perm, 0)
	case tar.TypeReg:
		if err := removeExisting(parent, base); err != nil {
			return err
		}
		fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), base)
		defer f.Close()
		if _, err := io.CopyN(f, tr, hdr.Size); err != nil {
			return err
		}
		return f.Chmod(os.FileMode(perm))
	case tar.TypeSymlink:
		if err := removeExisting(parent, base); err != nil {
			return err
		}
		// Created, never followed: every path here is opened without following links.
		return unix.Symlinkat(hdr.Linkname, parent, base)
	case tar.TypeLink:
		old := path.Clean("/" + hdr.Linkname)
		oldRel, ok := strings.CutPrefix(old, target+"/")
		if !ok {
			return fmt.Errorf("hard link to %q, outside the target %s", hdr.Linkname, target)
		}
		oldParent, err := openBeneath(dirfd, path.Dir(oldRel), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		defer unix.Close(oldParent)
		if err := removeExisting(parent, base); err != nil {
			return err
		}
		return unix.Linkat(oldParent, path.Base(oldRel), parent, base, 0)
	default:
		return fmt.Errorf("type %q is not unpacked (regular files, directories and links only)", hdr.Typeflag)
	}
}

// removeExisting removes a non-directory at base, as a later entry of a layer replaces an earlier.
func removeExisting(dirfd int, base string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errors.New("a directory is in the way")
	}
	return unix.Unlinkat(dirfd, base, 0)
}

// mkdirAll opens rel (made as needed, mode 0755) beneath dirfd without following links.
func mkdirAll(dirfd int, rel string) (int, error) {
	fd, err := unix.Dup(dirfd)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return fd, nil
	}
	for _, c := range strings.Split(rel, "/") {
		if err := unix.Mkdirat(fd, c, 0o755); err != nil && err != unix.EEXIST {
			unix.Close(fd)
			return -1, err
		}
		next, err := openBeneath(fd, c, unix.O_PATH|unix.O_DIRECTORY)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// openBeneath opens rel beneath dirfd, following no link.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	return openat2.Open(dirfd, rel, how)
}

// clearDir removes everything in the directory dirfd, following no link.
func clearDir(dirfd int) error {
	fd, err := openBeneath(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), ".")
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			sub, err := openBeneath(dirfd, e.Name(), unix.O_PATH|unix.O_DIRECTORY)
			if err == nil {
				err = clearDir(sub)
				unix.Close(sub)
			}
			if err == nil {
				err = unix.Unlinkat(dirfd, e.Name(), unix.AT_REMOVEDIR)
			}
			errs = append(errs, err)
			continue
		}
		errs = append(errs, unix.Unlinkat(dirfd, e.Name(), 0))
	}
	return errors.Join(errs...)
}

// openIn opens p (absolute, as the container sees it) inside root the way the kernel resolves it
// for a process whose root is root: symlinks and ".." never leave it.
func openIn(root *os.File, p string, flags int) (*os.File, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NONBLOCK),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	if flags&unix.O_PATH != 0 {
		how.Flags = uint64(flags | unix.O_CLOEXEC)
	}
	fd, err := openat2.Open(int(root.Fd()), p, how)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

func regular(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", f.Name())
	}
	return nil
}
