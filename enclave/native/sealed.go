package native

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/sealed"
)

// minSealedFD is the lowest descriptor a sealed executable's memory file gets: above those
// os.StartProcess's child rearranges before execve (at most 2×len(Files)+1), so that the path
// /proc/self/fd/N still names the memory file when the kernel opens it; and below 64, the size
// of a new descriptor table, whose growth in a multithreaded process waits for an RCU grace
// period (about 10 ms here).
const minSealedFD = 16

// runnable checks the executable at exePath before fork, with a clear error (the kernel checks
// again at execve), and returns the path to execute: exePath itself or, for a sealed executable
// (package sealed), /proc/self/fd/N of an in-memory copy of its plaintext, close-on-exec, which
// the returned func closes once the process started.
func (r *Runtime) runnable(ctx context.Context, exePath string) (string, func(), error) {
	f, err := r.openInRoot(exePath, unix.O_RDONLY)
	if err != nil {
		return "", nil, fmt.Errorf("builtin:native: executable %s: %w", exePath, err)
	}
	defer f.Close()
	info, err := f.Stat()
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("builtin:native: executable %s: %w", exePath, err)
	case !info.Mode().IsRegular():
		return "", nil, fmt.Errorf("builtin:native: executable %s: not a regular file", exePath)
	case info.Mode().Perm()&0o111 == 0:
		return "", nil, fmt.Errorf("builtin:native: executable %s: permission denied (no execute bit)", exePath)
	}
	r.mu.Lock()
	want, measured := r.measured[exePath]
	r.mu.Unlock()
	head := make([]byte, len(sealed.Magic))
	if n, _ := io.ReadFull(f, head); !sealed.IsSealed(head[:n]) {
		// A plain executable needs no key, so the digest check below would never see it: one
		// measured sealed must still be sealed.
		if measured && want.sealed {
			return "", nil, fmt.Errorf("builtin:native: executable %s was sealed when it was measured and is not now: refused", exePath)
		}
		return exePath, func() {}, nil
	}
	if err := r.checkProc(); err != nil {
		return "", nil, fmt.Errorf("builtin:native: sealed executable %s: %w", exePath, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", nil, fmt.Errorf("builtin:native: executable %s: %w", exePath, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, sealed.MaxPlaintext+sealed.MaxHeader+1024))
	if err != nil {
		return "", nil, fmt.Errorf("builtin:native: read executable %s: %w", exePath, err)
	}
	if got := sealed.CodeDigest(data); measured && got != want.sum {
		return "", nil, fmt.Errorf("builtin:native: sealed executable %s: it changed since it was measured (code digest %x, measured %x): refused before fetching its key", exePath, got, want.sum)
	}
	plain, err := r.unseal(ctx, data)
	if err != nil {
		return "", nil, fmt.Errorf("builtin:native: sealed executable %s: %w", exePath, err)
	}
	fd, err := memoryFile(path.Base(exePath), plain)
	clear(plain)
	if err != nil {
		return "", nil, fmt.Errorf("builtin:native: sealed executable %s: %w", exePath, err)
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), func() { unix.Close(fd) }, nil
}

func (r *Runtime) unseal(ctx context.Context, data []byte) ([]byte, error) {
	r.mu.Lock()
	fetch := r.resource
	r.mu.Unlock()
	var key sealed.KeyFunc
	if fetch != nil {
		key = func(id string) ([]byte, error) { return fetch(ctx, id) }
	}
	return sealed.Unseal(data, key)
}

// checkProc makes sure the process will find /proc/self/fd in its root.
func (r *Runtime) checkProc() error {
	proc, err := r.openInRoot("/proc", unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		var st unix.Statfs_t
		err = unix.Fstatfs(int(proc.Fd()), &st)
		proc.Close()
		if err == nil && st.Type != unix.PROC_SUPER_MAGIC {
			err = fmt.Errorf("not a proc file system")
		}
	}
	if err != nil {
		return fmt.Errorf("it runs from memory through /proc/self/fd, and /proc in the rootfs %s: %w", r.rootfs, err)
	}
	return nil
}

// memoryFile returns a close-on-exec descriptor (at least minSealedFD) of an anonymous memory
// file holding data, sealed against every change: nothing reaches the disk, and nothing, the
// process itself included, can rewrite the code it runs.
func memoryFile(name string, data []byte) (int, error) {
	fd, err := unix.MemfdCreate("sealed:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return -1, fmt.Errorf("write memory file: %w", err)
	}
	// F_SEAL_FUTURE_WRITE: F_SEAL_WRITE first waits until no page has a reference besides the
	// file's (memfd_wait_for_pins), which pages just written often still have (measured: 40 to
	// 100 ms per start in a container here); no mapping of the file exists yet, so refusing every
	// future write and writable mapping gives the same guarantee.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_FUTURE_WRITE); err != nil {
		return -1, fmt.Errorf("seal memory file: %w", err)
	}
	high, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, minSealedFD)
	if err != nil {
		return -1, fmt.Errorf("memory file descriptor: %w", err)
	}
	return high, nil
}
