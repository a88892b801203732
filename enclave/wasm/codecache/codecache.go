// Package codecache keeps compiled WebAssembly modules on the host, one directory per module, so
// that rune hands an enclave container the compiled code of its own module and nothing else (the
// runelet mounts one entry read-only; other tenants' code and module digests stay on the host).
//
// Layout under a root directory (mode 0700, owned by the user rune runs as):
//
//	<root>/<build>/<module SHA-256>/          one entry: what a wazero file cache holds for that
//	                                            module, plus DIGESTS, written last
//	<root>/<build>/tmp-<module>-<random>/     an entry being filled, flock()ed by its writer
//
// <build> names what compiled code depends on (Go toolchain and wazero versions). DIGESTS lists
// the SHA-256 of every file of the entry. An entry appears whole, by one rename of its temporary
// directory; writers of the same module fill their own temporary directories concurrently and the
// first rename wins, the others use the winner's entry.
//
// It must never follow a symbolic link below the root (every lookup is an openat2 relative to a
// directory descriptor with RESOLVE_NO_SYMLINKS), never hand out an entry whose files do not match
// its DIGESTS (the host replaces such an entry, the runelet ignores it), and never depend on wazero:
// rune links it to sweep abandoned temporary directories, and rune must stay small.
package codecache

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/inclavare-containers/inclavare-go/internal/openat2"
	"golang.org/x/sys/unix"
)

// Manifest is the file of an entry that lists the SHA-256 of each of its other files.
const Manifest = "DIGESTS"

// manifestHeader opens every manifest, so that no other file is mistaken for one.
const manifestHeader = "inclavare-go wasm code cache v1"

// Modes inside an entry. The runelet reads its entry as the container's user, who may be anyone
// (and root in the container may lack CAP_DAC_OVERRIDE): an entry is world-readable. On the host
// the root and build directories (0700) keep others out; in the container the entry is the mount.
const (
	entryDirMode  = 0o755
	entryFileMode = 0o644
)

// Bounds on an entry: wazero writes one file per module; the rest is room for change.
const (
	maxManifestSize = 64 << 10
	maxEntryFiles   = 64
	maxEntryDepth   = 2
	maxRemoveDepth  = 8
)

// Names of temporary and quarantined directories next to the entries.
const (
	tmpPrefix = "tmp-"
	newPrefix = ".new-"
	badPrefix = ".bad-"
)

// staleNew is the age after which a ".new-" directory (a writer died between mkdir and flock) is
// removed by Sweep.
const staleNew = time.Hour

// beneath confines a lookup to the directory it is relative to, with no symlink, magic link or
// mount crossing on the way.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// Root is an open cache root.
type Root struct {
	path string
	fd   int
}

// Open opens the cache root at dir, creating it (and its parents) with mode 0700. dir itself must
// not be a symbolic link and must be owned by this process's effective user; group and other
// permissions are removed, since the cache holds native code a runelet executes.
func Open(dir string) (*Root, error) {
	if dir == "" {
		return nil, errors.New("wasm code cache: empty path")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wasm code cache %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("wasm code cache %s: not a directory (a symbolic link?): refusing to use it", dir)
		}
		return nil, fmt.Errorf("wasm code cache %s: %w", dir, err)
	}
	if err := checkOwned(fd, dir); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Root{path: dir, fd: fd}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error { return unix.Close(r.fd) }

// checkOwned refuses a directory of another user and makes one of ours private.
func checkOwned(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("wasm code cache %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("wasm code cache %s: not a directory", name)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("wasm code cache %s: owned by uid %d, not %d: refusing to use it", name, st.Uid, os.Geteuid())
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return fmt.Errorf("wasm code cache %s: make it private: %w", name, err)
		}
	}
	return nil
}

// openBeneath opens name inside the directory dirfd, refusing symlinks anywhere on the way. A file
// it creates gets mode entryFileMode.
func openBeneath(dirfd int, name string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC), Resolve: beneath}
	if flags&unix.O_CREAT != 0 {
		how.Mode = entryFileMode
	}
	return openat2.Open(dirfd, name, how)
}

// validName reports whether name may be a directory name of the cache.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00") &&
		!strings.HasPrefix(name, tmpPrefix) && !strings.HasPrefix(name, ".") && len(name) <= 200
}

// ensureDir returns a descriptor of the private directory name in dirfd, creating it. Whatever
// else is found there (a symlink, a file, another user's directory) is removed first.
func (r *Root) ensureDir(dirfd int, name, display string) (int, error) {
	for attempt := 0; ; attempt++ {
		if err := unix.Mkdirat(dirfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("wasm code cache %s: %w", display, err)
		}
		fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err == nil {
			if err = checkOwned(fd, display); err == nil {
				return fd, nil
			}
			unix.Close(fd)
		}
		if attempt > 0 {
			return -1, fmt.Errorf("wasm code cache %s: %w", display, err)
		}
		// Not our directory: a symlink (ELOOP), a file (ENOTDIR) or a foreign owner. It goes.
		if qerr := quarantine(dirfd, name); qerr != nil {
			return -1, fmt.Errorf("wasm code cache %s: %v; removing it: %w", display, err, qerr)
		}
	}
}

// Ensure returns the host path of the entry of the module whose SHA-256 is module, for build.
// When there is no verified entry, fill is called with the path of an empty private directory
// (a /proc/self/fd path, so that no path lookup of fill's crosses a symlink in the cache) to
// compile the module into, and the result becomes the entry. A damaged entry is replaced.
func (r *Root) Ensure(build string, module [sha256.Size]byte, fill func(dir string) error) (string, error) {
	if !validName(build) {
		return "", fmt.Errorf("wasm code cache: invalid build name %q", build)
	}
	buildFD, err := r.ensureDir(r.fd, build, filepath.Join(r.path, build))
	if err != nil {
		return "", err
	}
	defer unix.Close(buildFD)
	name := hex.EncodeToString(module[:])
	entryPath := filepath.Join(r.path, build, name)
	for attempt := 0; attempt < 3; attempt++ {
		fd, err := openBeneath(buildFD, name, unix.O_RDONLY|unix.O_DIRECTORY)
		switch {
		case err == nil:
			verr := verifyEntry(fd, name)
			unix.Close(fd)
			if verr == nil {
				return entryPath, nil
			}
			// Damaged or tampered with: never handed out, rebuilt.
			if err := quarantine(buildFD, name); err != nil {
				return "", fmt.Errorf("wasm code cache %s: %v; removing it: %w", entryPath, verr, err)
			}
		case errors.Is(err, unix.ENOENT):
		default:
			// A symlink or a file where an entry belongs.
			if qerr := quarantine(buildFD, name); qerr != nil {
				return "", fmt.Errorf("wasm code cache %s: %v; removing it: %w", entryPath, err, qerr)
			}
		}
		won, err := r.fillEntry(buildFD, name, fill)
		if err != nil {
			return "", err
		}
		if won {
			return entryPath, nil
		}
		// Another writer's rename came first: use its entry (verified on the next round).
	}
	return "", fmt.Errorf("wasm code cache %s: entry keeps changing under concurrent writers", entryPath)
}

// fillEntry fills a temporary directory with fill and renames it to name. won is false when an
// entry appeared at name meanwhile; the temporary directory is removed then, and on every error.
func (r *Root) fillEntry(buildFD int, name string, fill func(dir string) error) (won bool, err error) {
	tmpFD, tmpName, err := makeTemp(buildFD, name)
	if err != nil {
		return false, fmt.Errorf("wasm code cache: temporary entry: %w", err)
	}
	defer func() {
		if !won {
			_ = removeAt(buildFD, tmpName, 0)
		}
		unix.Close(tmpFD) // releases the flock
	}()
	if err := fill("/proc/self/fd/" + strconv.Itoa(tmpFD)); err != nil {
		return false, err
	}
	if err := writeManifest(tmpFD, name); err != nil {
		return false, fmt.Errorf("wasm code cache: %w", err)
	}
	err = unix.Renameat2(buildFD, tmpName, buildFD, name, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		_ = unix.Fsync(buildFD)
		return true, nil
	case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY):
		return false, nil
	}
	return false, fmt.Errorf("wasm code cache: publish entry %s: %w", name, err)
}

// makeTemp creates a locked, private, empty directory tmp-<name>-<random> in dirfd. It is made
// under a ".new-" name and renamed once locked, so that Sweep never sees it unlocked.
func makeTemp(dirfd int, name string) (int, string, error) {
	suffix := randomSuffix()
	newName := newPrefix + suffix
	if err := unix.Mkdirat(dirfd, newName, 0o700); err != nil {
		return -1, "", err
	}
	fd, err := openBeneath(dirfd, newName, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		_ = unix.Unlinkat(dirfd, newName, unix.AT_REMOVEDIR)
		return -1, "", err
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		_ = unix.Unlinkat(dirfd, newName, unix.AT_REMOVEDIR)
		return -1, "", err
	}
	tmpName := tmpPrefix + name + "-" + suffix
	if err := unix.Renameat(dirfd, newName, dirfd, tmpName); err != nil {
		unix.Close(fd)
		_ = unix.Unlinkat(dirfd, newName, unix.AT_REMOVEDIR)
		return -1, "", err
	}
	return fd, tmpName, nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// quarantine renames dirfd/name aside and removes it. A name already gone is not an error.
func quarantine(dirfd int, name string) error {
	bad := badPrefix + name + "-" + randomSuffix()
	if err := unix.Renameat(dirfd, name, dirfd, bad); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	return removeAt(dirfd, bad, 0)
}

// removeAt removes dirfd/name and, for a directory, everything in it, without following symlinks.
func removeAt(dirfd int, name string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	if depth >= maxRemoveDepth {
		return fmt.Errorf("%s: nested too deep", name)
	}
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	names, err := readNames(fd)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n, depth+1); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// readNames lists the directory fd (without "." and "..").
func readNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	// The duplicate shares the offset: list from the start whatever was read before.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

// file is one file of an entry: its path relative to the entry and its SHA-256.
type file struct {
	rel string
	sum [sha256.Size]byte
}

// walkEntry returns every regular file below the entry dirfd except the manifest, refusing
// anything that is neither a regular file nor a directory and any nesting deeper than an entry has.
// With publish, it also gives every file and directory the entry modes.
func walkEntry(dirfd int, publish bool) ([]file, error) {
	var out []file
	var walk func(fd int, prefix string, depth int) error
	walk = func(fd int, prefix string, depth int) error {
		names, err := readNames(fd)
		if err != nil {
			return err
		}
		for _, n := range names {
			rel := path.Join(prefix, n)
			if rel == Manifest {
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				if depth+1 >= maxEntryDepth {
					return fmt.Errorf("%s: directory nested deeper than an entry has", rel)
				}
				sub, err := openBeneath(fd, n, unix.O_RDONLY|unix.O_DIRECTORY)
				if err != nil {
					return fmt.Errorf("%s: %w", rel, err)
				}
				if publish {
					err = unix.Fchmod(sub, entryDirMode)
				}
				if err == nil {
					err = walk(sub, rel, depth+1)
				}
				unix.Close(sub)
				if err != nil {
					return err
				}
			case unix.S_IFREG:
				if len(out) >= maxEntryFiles {
					return fmt.Errorf("more than %d files", maxEntryFiles)
				}
				sum, err := digestAt(fd, n, publish)
				if err != nil {
					return fmt.Errorf("%s: %w", rel, err)
				}
				out = append(out, file{rel: rel, sum: sum})
			default:
				return fmt.Errorf("%s: not a regular file or directory", rel)
			}
		}
		return nil
	}
	return out, walk(dirfd, "", 0)
}

// digestAt returns the SHA-256 of the regular file dirfd/name, first giving it the entry file
// mode with publish.
func digestAt(dirfd int, name string, publish bool) ([sha256.Size]byte, error) {
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	if !fi.Mode().IsRegular() {
		return [sha256.Size]byte{}, errors.New("not a regular file")
	}
	if publish {
		if err := f.Chmod(entryFileMode); err != nil {
			return [sha256.Size]byte{}, err
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [sha256.Size]byte{}, err
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// writeManifest records the digests of what fill left in the entry dirfd, for module name.
func writeManifest(dirfd int, name string) error {
	files, err := walkEntry(dirfd, true)
	if err != nil {
		return fmt.Errorf("compiled entry: %w", err)
	}
	if len(files) == 0 {
		return errors.New("compiled entry: the compiler wrote nothing")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nmodule %s\n", manifestHeader, name)
	for _, f := range files {
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(f.sum[:]), f.rel)
	}
	tmp := Manifest + ".tmp"
	fd, err := openBeneath(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL)
	if err != nil {
		return fmt.Errorf("write %s: %w", Manifest, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, Manifest)
	}
	if err == nil {
		err = unix.Fchmod(dirfd, entryDirMode)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", Manifest, err)
	}
	return unix.Fsync(dirfd)
}

// readManifest parses the manifest of the entry dirfd: the module it is for and its files.
func readManifest(dirfd int) (module string, files map[string][sha256.Size]byte, err error) {
	fd, err := openBeneath(dirfd, Manifest, unix.O_RDONLY)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", Manifest, err)
	}
	f := os.NewFile(uintptr(fd), Manifest)
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", Manifest, err)
	}
	if len(data) > maxManifestSize {
		return "", nil, fmt.Errorf("%s: larger than %d bytes", Manifest, maxManifestSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() || sc.Text() != manifestHeader {
		return "", nil, fmt.Errorf("%s: not a code cache manifest", Manifest)
	}
	if !sc.Scan() {
		return "", nil, fmt.Errorf("%s: truncated", Manifest)
	}
	module, ok := strings.CutPrefix(sc.Text(), "module ")
	if !ok {
		return "", nil, fmt.Errorf("%s: no module line", Manifest)
	}
	files = map[string][sha256.Size]byte{}
	for sc.Scan() {
		sumHex, rel, ok := strings.Cut(sc.Text(), "  ")
		var sum [sha256.Size]byte
		if n, err := hex.Decode(sum[:], []byte(sumHex)); !ok || err != nil || n != sha256.Size || len(sumHex) != 2*sha256.Size {
			return "", nil, fmt.Errorf("%s: bad line %q", Manifest, sc.Text())
		}
		if rel != path.Clean(rel) || path.IsAbs(rel) || strings.HasPrefix(rel, "..") {
			return "", nil, fmt.Errorf("%s: bad path %q", Manifest, rel)
		}
		if _, dup := files[rel]; dup || len(files) >= maxEntryFiles {
			return "", nil, fmt.Errorf("%s: duplicate path or too many files", Manifest)
		}
		files[rel] = sum
	}
	if len(files) == 0 {
		return "", nil, fmt.Errorf("%s: lists no file", Manifest)
	}
	return module, files, sc.Err()
}

// verifyEntry checks that the entry dirfd holds exactly the files its manifest lists, with those
// digests; module, when not empty, must be the module the manifest names.
func verifyEntry(dirfd int, module string) error {
	named, want, err := readManifest(dirfd)
	if err != nil {
		return err
	}
	if module != "" && named != module {
		return fmt.Errorf("%s: entry of module %s found under %s", Manifest, named, module)
	}
	got, err := walkEntry(dirfd, false)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("holds %d files, %s lists %d", len(got), Manifest, len(want))
	}
	for _, f := range got {
		sum, ok := want[f.rel]
		if !ok {
			return fmt.Errorf("%s: not listed in %s", f.rel, Manifest)
		}
		if sum != f.sum {
			return fmt.Errorf("%s: SHA-256 %x, %s says %x (damaged or modified)", f.rel, f.sum, Manifest, sum)
		}
	}
	return nil
}

// Verify checks the entry at dir (as the runelet sees it: the read-only mount of one entry): it
// must hold exactly the files its manifest lists, each with the SHA-256 listed.
func Verify(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wasm code cache entry %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := verifyEntry(fd, ""); err != nil {
		return fmt.Errorf("wasm code cache entry %s: %w", dir, err)
	}
	return nil
}

// HasManifest reports whether dir looks like an entry (has a manifest file).
func HasManifest(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, Manifest))
	return err == nil
}

// Sweep removes the temporary directories of writers that died (killed while compiling, say):
// those no process holds locked. It is best effort and never touches an entry.
func Sweep(dir string) {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(root)
	builds, err := readNames(root)
	if err != nil {
		return
	}
	for _, b := range builds {
		bfd, err := openBeneath(root, b, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			continue
		}
		sweepBuild(bfd)
		unix.Close(bfd)
	}
}

func sweepBuild(bfd int) {
	names, err := readNames(bfd)
	if err != nil {
		return
	}
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, tmpPrefix):
			fd, err := openBeneath(bfd, n, unix.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				continue
			}
			// A live writer holds the lock until its rename; a dead one released it.
			if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
				_ = removeAt(bfd, n, 0)
			}
			unix.Close(fd)
		case strings.HasPrefix(n, newPrefix), strings.HasPrefix(n, badPrefix):
			var st unix.Stat_t
			if unix.Fstatat(bfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
				time.Since(time.Unix(st.Ctim.Unix())) > staleNew {
				_ = removeAt(bfd, n, 0)
			}
		}
	}
}
