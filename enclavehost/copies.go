package enclavehost

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultCopyDir is where rune keeps private copies of the host files it injects into enclave
// containers: the runelet, the dynamic loader, the libraries and the PALs. A container sees them
// only through a read-only overlay of its own (see Prepare), never the host files themselves: a
// container allowed to remount them could otherwise write the files root runs on the host, as
// CVE-2019-5736 did with runc's binary. It is on tmpfs on most hosts, so a reboot empties it.
const DefaultCopyDir = "/run/rune/injected"

// copyGrace is how long a superseded copy stays after it was last handed to a container, so that a
// create between choosing it and mounting it never loses it.
const copyGrace = 10 * time.Minute

// copyStore holds one directory (a "layer") per copied file version: <layer>/<rel>, where rel is the
// file's place in the container's read-only directory (ld.so, init-runelet, lib/NAME, pal/NAME).
// Layers are named <source key>-<version key>: the source key hashes the host path and rel, the
// version key the file's identity (device, inode, size, times), so a changed host file gets a new
// layer and never changes a layer a running container uses. Layers are written under a temporary
// name and renamed into place, so a layer that exists is complete; <layer>.src names its host file.
type copyStore struct {
	dir   string
	empty string // an empty layer: overlayfs needs two layers at least
	lock  *os.File
	// created names the layers this store created: then collect runs.
	created []string
}

// isLayerName reports whether n is a copy layer's name, ^[0-9a-f]{16}-[0-9a-f]{16}$ (a loop: a
// package-level regexp would be compiled at every rune invocation).
func isLayerName(n string) bool {
	if len(n) != 33 || n[16] != '-' {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; i != 16 && (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// openCopyStore opens (creating it if needed) the copy directory dir, which must be root's alone.
func openCopyStore(dir string) (*copyStore, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("copies of the injected files: %w", err)
	}
	if err := CheckRootOwnedDir(dir); err != nil {
		return nil, fmt.Errorf("copies of the injected files: %w", err)
	}
	s := &copyStore{dir: dir, empty: filepath.Join(dir, "empty")}
	if err := os.Mkdir(s.empty, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("copies of the injected files: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("copies of the injected files: %w", err)
	}
	// Shared while layers are chosen; collect takes it exclusively (see collect).
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	s.lock = lock
	return s, nil
}

// close releases the store, first collecting the versions its new layers superseded.
func (s *copyStore) close() {
	if len(s.created) > 0 {
		_ = unix.Flock(int(s.lock.Fd()), unix.LOCK_UN)
		s.collect()
	}
	s.lock.Close()
}

// layer returns the layer holding a copy of the host file src at rel, copying it if this version
// of src has no layer yet. src is a resolved path (no symbolic link).
func (s *copyStore) layer(src, rel string) (string, error) {
	f, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", src, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", fmt.Errorf("%s is not a regular file", src)
	}
	srcKey := sha256.Sum256([]byte(src + "\x00" + rel))
	name := hex.EncodeToString(srcKey[:8]) + "-" + versionKey(&st)
	layer := filepath.Join(s.dir, name)
	now := time.Now()
	if err := os.Chtimes(layer, now, now); err == nil {
		// Marks the layer as in use, for collect.
		return layer, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tmp, err := os.MkdirTemp(s.dir, ".new-")
	if err != nil {
		return "", err
	}
	if err := s.fill(tmp, rel, f, &st); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	// Beside the layer, not in it (the container would see it): the host file it copies, for collect.
	if err := os.WriteFile(layer+".src", []byte(src), 0o600); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, layer); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(layer); serr != nil {
			return "", fmt.Errorf("copy %s: %w", src, err)
		}
		// Another create made the same layer first.
		return layer, nil
	}
	s.created = append(s.created, name)
	return layer, nil
}

// fill writes the copy of f at tmp/rel, read-only for everyone, and checks that f did not change
// while it was read.
func (s *copyStore) fill(tmp, rel string, f *os.File, before *unix.Stat_t) error {
	// Layers are readable by all: in a container with a user namespace, its root (not the host's)
	// mounts the overlay and reads the files.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(tmp, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o555)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, f); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return err
	}
	if versionKey(&after) != versionKey(before) {
		return errors.New("the file changed while it was copied")
	}
	return nil
}

// versionKey identifies one version of a file: any write changes its ctime.
func versionKey(st *unix.Stat_t) string {
	var b [56]byte
	for i, v := range []uint64{st.Dev, st.Ino, uint64(st.Size), uint64(st.Mtim.Sec), uint64(st.Mtim.Nsec),
		uint64(st.Ctim.Sec), uint64(st.Ctim.Nsec)} {
		binary.LittleEndian.PutUint64(b[i*8:], v)
	}
	sum := sha256.Sum256(b[:])
	return hex.EncodeToString(sum[:8])
}

// collect removes the layers whose host file has changed or gone (and abandoned temporary
// layers) once they have been unused for copyGrace and no mount namespace on the host has an
// overlay using them. It holds the store's lock exclusively, so no create chooses a layer while it
// decides. It runs only after a create made a new layer: a host file changed, or is new.
func (s *copyStore) collect() {
	if err := unix.Flock(int(s.lock.Fd()), unix.LOCK_EX); err != nil {
		return
	}
	defer unix.Flock(int(s.lock.Fd()), unix.LOCK_UN)
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	var candidates []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, ".new-") && (!isLayerName(n) || s.current(n)) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > copyGrace {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return
	}
	used := s.layersInUse()
	for _, n := range candidates {
		if !used[n] {
			p := filepath.Join(s.dir, n)
			if os.RemoveAll(p) == nil {
				os.Remove(p + ".src")
			}
		}
	}
}

// current reports whether layer n still copies the present version of its host file.
func (s *copyStore) current(n string) bool {
	src, err := os.ReadFile(filepath.Join(s.dir, n+".src"))
	if err != nil {
		return false
	}
	var st unix.Stat_t
	return unix.Stat(string(src), &st) == nil && versionKey(&st) == n[17:]
}

// layersInUse names the layers that an overlay mount uses in some mount namespace of the host
// (overlayfs shows its lower directories in /proc/PID/mountinfo).
func (s *copyStore) layersInUse() map[string]bool {
	used := map[string]bool{}
	prefix := s.dir + "/"
	seen := map[string]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		ns, err := os.Readlink(filepath.Join(p, "ns", "mnt"))
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		f, err := os.Open(filepath.Join(p, "mountinfo"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			for {
				i := strings.Index(line, prefix)
				if i < 0 {
					break
				}
				line = line[i+len(prefix):]
				if len(line) >= 33 && isLayerName(line[:33]) {
					used[line[:33]] = true
				}
			}
		}
		f.Close()
	}
	return used
}
