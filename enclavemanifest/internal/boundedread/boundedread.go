// Package boundedread reads small files that configuration names (keys, certificates,
// manifests) without letting a wrong file stall or flood the reader: it opens without
// blocking, refuses anything but a regular file and stops after a size limit. It must never
// follow a path other than the one given (callers add O_NOFOLLOW where links are refused).
package boundedread

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// File reads a regular file of at most limit bytes. A FIFO or device put in its place is
// refused without blocking.
func File(path string, limit int64) ([]byte, error) {
	return open(path, limit, 0)
}

// FileNoFollow is File, refusing a symbolic link as the last path component.
func FileNoFollow(path string, limit int64) ([]byte, error) {
	return open(path, limit, syscall.O_NOFOLLOW)
}

func open(path string, limit int64, flags int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: more than the %d bytes allowed", path, limit)
	}
	return data, nil
}
