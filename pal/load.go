package pal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// fileID identifies a file the way the dynamic loader does.
type fileID struct{ dev, ino uint64 }

var (
	loadedMu sync.Mutex
	// loaded holds every PAL this process has dlopen()ed. A PAL's state is
	// global to the process and dlopen of the same file returns the same
	// instance, so two Librarys over one file would share (and corrupt) it.
	loaded = map[fileID]string{}
)

// Load validates the PAL library at path and loads it: path must name an
// existing regular file (symbolic links are followed; a loop is an error), an
// ELF shared object that dlopen accepts, whose pal_get_version (absent means
// 1) returns 1..MaxVersion, and that exports every symbol its version
// requires. A process can load a given PAL file once.
func Load(path string) (_ *Library, err error) {
	// A PAL that cannot be used is the PAL's failure, unless it is not there at all.
	defer func() {
		if k, _ := enclave.KindOf(err); err != nil && k == "" {
			err = enclave.WithKind(enclave.KindPAL, err)
		}
	}()
	if path == "" {
		return nil, errors.New("load PAL: empty path")
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("load PAL %q: symbolic link loop (too many levels of symbolic links)", path)
	case errors.Is(err, os.ErrNotExist):
		return nil, enclave.WithKind(enclave.KindNotFound, fmt.Errorf("load PAL %q: no such file", path))
	case err != nil:
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	case fi.IsDir():
		return nil, fmt.Errorf("load PAL %q: is a directory, not a shared library", path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("load PAL %q: not a regular file (%s)", path, fi.Mode().Type())
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("load PAL %q: resolve symbolic links: %w", path, err)
	}

	f, err := os.Open(resolved)
	if err != nil {
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	}
	defer f.Close()
	id, err := identify(f)
	if err != nil {
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	}
	if err := checkELF(f); err != nil {
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	}
	digest, err := digestFile(f)
	if err != nil {
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	}

	loadedMu.Lock()
	defer loadedMu.Unlock()
	if prev, ok := loaded[id]; ok {
		return nil, fmt.Errorf("load PAL %q: this process already loaded that file (as %q); a PAL's state is process-wide, so it can be loaded once", path, prev)
	}

	h, err := dlopen(resolved)
	if err != nil {
		return nil, fmt.Errorf("load PAL %q: dlopen: %w", path, err)
	}
	// The loader opened the path by name: make sure it is still the file
	// that was hashed, or the measurement would describe another library.
	if now, err := os.Stat(resolved); err != nil || !sameID(now, id) {
		dlclose(h)
		return nil, fmt.Errorf("load PAL %q: the file changed while it was being loaded", path)
	}
	syms := lookupSymbols(h)
	version, err := palVersion(syms)
	if err == nil {
		err = checkSymbols(syms, version)
	}
	if err != nil {
		dlclose(h)
		return nil, fmt.Errorf("load PAL %q: %w", path, err)
	}
	loaded[id] = resolved
	return &Library{
		path:     path,
		resolved: resolved,
		id:       id,
		digest:   digest,
		version:  version,
		syms:     syms,
	}, nil
}

func identify(f *os.File) (fileID, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, err
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, errors.New("no device and inode numbers for the file")
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

func sameID(fi os.FileInfo, id fileID) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == id.dev && st.Ino == id.ino
}

// checkELF refuses anything that is not an ELF file before dlopen sees it,
// with an error that says what the file looks like instead.
func checkELF(f *os.File) error {
	var magic [4]byte
	n, err := f.ReadAt(magic[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read ELF header: %w", err)
	}
	if n < 4 || !bytes.Equal(magic[:], []byte("\x7fELF")) {
		return fmt.Errorf("not an ELF shared library (file starts with %q)", magic[:n])
	}
	return nil
}

func digestFile(f *os.File) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return sum, fmt.Errorf("hash PAL file: %w", err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// palVersion asks the PAL its version; no pal_get_version means v1.
func palVersion(s symbols) (int, error) {
	if s.getVersion == nil {
		// Absent means v1, whose pal_init and pal_exec differ from v2's.
		// A library exporting v2/v3 calls without pal_get_version is
		// broken, and calling its pal_exec as v1's would corrupt memory.
		for name, sym := range map[string]unsafe.Pointer{
			"pal_create_process":   s.createProcess,
			"pal_kill":             s.kill,
			"pal_get_local_report": s.getLocalReport,
		} {
			if sym != nil {
				return 0, fmt.Errorf("library exports %s (PAL API v2 and later) but no pal_get_version, which would make it v1; refusing to guess its ABI", name)
			}
		}
		return 1, nil
	}
	v := callGetVersion(s.getVersion)
	switch {
	case v < 0:
		return 0, &CallError{Call: "pal_get_version", Code: v}
	case v == 0:
		return 0, errors.New("pal_get_version returned 0, which is not a PAL API version")
	case v > MaxVersion:
		return 0, fmt.Errorf("PAL implements PAL API v%d; this rune supports v1 to v%d", v, MaxVersion)
	}
	return v, nil
}

// required lists the entry points each PAL API version must export.
var required = map[int][]string{
	1: {"pal_init", "pal_exec", "pal_destroy"},
	2: {"pal_get_version", "pal_init", "pal_create_process", "pal_exec", "pal_kill", "pal_destroy"},
	3: {"pal_get_version", "pal_init", "pal_create_process", "pal_exec", "pal_kill", "pal_destroy", "pal_get_local_report"},
}

func checkSymbols(s symbols, version int) error {
	have := map[string]unsafe.Pointer{
		"pal_get_version":      s.getVersion,
		"pal_init":             s.init,
		"pal_create_process":   s.createProcess,
		"pal_exec":             s.exec,
		"pal_kill":             s.kill,
		"pal_destroy":          s.destroy,
		"pal_get_local_report": s.getLocalReport,
	}
	var missing []string
	for _, name := range required[version] {
		if have[name] == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("PAL API v%d requires %s, which the library does not export", version, strings.Join(missing, ", "))
	}
	return nil
}
