package enclavehost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"golang.org/x/sys/unix"
)

// NotAllowedPALError is the one error for an ENCLAVE_RUNTIME_PATH that may not be loaded. Its text
// depends only on the path as given and the allowed directories, never on what the host holds at
// that path: the pod author chooses the path, and a message that told a missing file from an
// unreadable one or from a file that is not an ELF library would let them probe the host's files.
type NotAllowedPALError struct {
	Path string
	Dirs []string
}

func (e *NotAllowedPALError) Error() string {
	dirs := "none are configured"
	if len(e.Dirs) > 0 {
		dirs = strings.Join(e.Dirs, ", ")
	}
	return fmt.Sprintf("enclave runtime %q is not an allowed PAL: a PAL must be an ELF shared library owned by root and "+
		"writable only by root, in one of the PAL directories ([enclave] pal_dirs: %s)", e.Path, dirs)
}

// ResolvePAL is the one check of a PAL file: for settings that name a PAL it returns the PAL's
// resolved host path once AllowedPAL accepts it, and "" for a built-in runtime, which needs no
// file. Every refusal is the same *NotAllowedPALError, whatever the host holds at the path.
func ResolvePAL(s *enclave.Settings, palDirs []string) (string, error) {
	if !s.Runtime().IsPAL() {
		return "", nil
	}
	p, err := AllowedPAL(s.RuntimePath, palDirs)
	return p, enclave.WithKind(enclave.KindInvalid, err)
}

// AllowedPAL checks that path names a PAL the host may load: after resolving symbolic links it lies
// inside one of dirs (themselves resolved), every directory from / down to it and the file itself
// are owned by root and writable by nobody else, and the file is a regular ELF shared library. It
// returns the resolved path. Every refusal is the same *NotAllowedPALError.
//
// Only the file's metadata is looked at before the path is known to lie inside dirs; the file is
// opened only then, without following links and without blocking.
func AllowedPAL(path string, dirs []string) (string, error) {
	deny := &NotAllowedPALError{Path: path, Dirs: dirs}
	if !filepath.IsAbs(path) {
		return "", deny
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", deny
	}
	inside := false
	for _, d := range dirs {
		rd, err := filepath.EvalSymlinks(d)
		// "/" as a PAL directory would allow every root-owned library on the host.
		if err == nil && rd != "/" && enclave.PathWithin(rd, resolved) && rd != resolved {
			inside = true
			break
		}
	}
	if !inside {
		return "", deny
	}
	if err := CheckRootOwned(resolved); err != nil {
		return "", deny
	}
	if err := checkSharedLibrary(resolved); err != nil {
		return "", deny
	}
	return resolved, nil
}

// CheckRootOwned checks the resolved absolute path of a regular file that the host will inject into
// a container: no component is a symbolic link, every directory from / down and the file itself
// belong to root and are writable neither by their group nor by others. Only root can then change
// what the path names.
func CheckRootOwned(path string) error { return checkRootOwned(path, false) }

// CheckRootOwnedDir is CheckRootOwned for a directory.
func CheckRootOwnedDir(path string) error { return checkRootOwned(path, true) }

func checkRootOwned(path string, dir bool) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%s is not a clean absolute path", path)
	}
	p := "/"
	rest := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i := -1; i < len(rest); i++ {
		if i >= 0 {
			p = filepath.Join(p, rest[i])
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		last := i == len(rest)-1
		switch typ := st.Mode & unix.S_IFMT; {
		case !last && typ != unix.S_IFDIR:
			return fmt.Errorf("%s is not a directory", p)
		case last && dir && typ != unix.S_IFDIR:
			return fmt.Errorf("%s is not a directory", p)
		case last && !dir && typ != unix.S_IFREG:
			return fmt.Errorf("%s is not a regular file", p)
		}
		if st.Uid != 0 {
			return fmt.Errorf("%s is owned by uid %d, not root", p, st.Uid)
		}
		if st.Mode&0o022 != 0 {
			return fmt.Errorf("%s is writable by its group or by others (mode %#o)", p, st.Mode&0o7777)
		}
	}
	return nil
}

// checkSharedLibrary opens path (a regular file, already checked) without following a link or
// blocking, and checks that it is an ELF shared object.
func checkSharedLibrary(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	o, err := readELF(f, fi.Size())
	if err != nil {
		return err
	}
	if o.typ != elfTypeDyn || !o.dynamic {
		return errors.New("not an ELF shared library")
	}
	return nil
}
