package verdictd

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/kbs"
)

// DefaultMaxResourceSize bounds a resource file.
const DefaultMaxResourceSize = 16 << 20

// Store reads resources from DIR/<repository>/<type>/<tag>. Paths are checked component by
// component (kbs.CheckResourcePath), and each file is opened with openat2 relative to DIR with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS: no "..", no symlink anywhere on the
// way (not even one that stays inside DIR), no escape by a rename race. Only regular files are
// served.
type Store struct {
	dir     *os.File
	maxSize int64
}

// Store errors a caller tells apart.
var (
	ErrNotFound    = errors.New("no such resource")
	ErrRefusedPath = errors.New("resource path refused")
)

// OpenStore opens dir as the resource root. maxSize ≤ 0 means DefaultMaxResourceSize.
func OpenStore(dir string, maxSize int64) (*Store, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("resources %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	// Probe openat2 now: a kernel without it (before 5.6) must fail at start, not at each request.
	probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("resources %s: openat2 with RESOLVE_BENEATH is needed (Linux 5.6 or later): %w", dir, err)
	}
	unix.Close(probe)
	if maxSize <= 0 {
		maxSize = DefaultMaxResourceSize
	}
	return &Store{dir: f, maxSize: maxSize}, nil
}

// Close releases the directory.
func (s *Store) Close() error { return s.dir.Close() }

// Read returns the resource at path ("<repository>/<type>/<tag>").
func (s *Store) Read(path string) ([]byte, error) {
	if err := kbs.CheckResourcePath(path); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefusedPath, err)
	}
	fd, err := unix.Openat2(int(s.dir.Fd()), path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%w: %s crosses a symbolic link", ErrRefusedPath, path)
	case errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("%w: %s leads outside the resource directory", ErrRefusedPath, path)
	case err != nil:
		return nil, fmt.Errorf("open resource %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrRefusedPath, path)
	}
	if st.Size() > s.maxSize {
		return nil, fmt.Errorf("resource %s is %d bytes, more than the limit %d", path, st.Size(), s.maxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, s.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read resource %s: %w", path, err)
	}
	if int64(len(data)) > s.maxSize {
		return nil, fmt.Errorf("resource %s grew beyond the limit %d", path, s.maxSize)
	}
	return data, nil
}
