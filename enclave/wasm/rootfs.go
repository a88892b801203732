package wasm

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/inclavare-containers/inclavare-go/internal/openat2"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sys/unix"
)

// resolveInRoot makes the kernel resolve every path as if the rootfs were "/": absolute symlinks
// and ".." stop at the rootfs, and /proc magic links (which could name any host file) are refused.
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// rootFS is the guest's view of the rootfs, mounted at "/".
//
// wazero's WithDirMount joins guest paths onto the host directory as strings and lets the host
// kernel follow symlinks, so a guest can escape a rootfs other than "/" through "../" or a
// symlink such as "etc/x -> /etc/shadow" (wazero documents this under "Isolation"). rootFS instead
// opens everything relative to a directory fd with openat2(RESOLVE_IN_ROOT): the kernel confines
// each lookup to the rootfs, race-free, including symlinks the guest itself creates. Operations
// on a final path component that must not be followed (lstat, unlink, rename, …) act on a parent
// directory fd resolved the same way.
//
// Some of what lies inside the rootfs is not the guest's: see hidden.
type rootFS struct {
	experimentalsys.UnimplementedFS
	dir    string
	fd     int
	hidden *hiddenSet
}

// openRootFS opens dir as the guest's root, failing when the kernel cannot confine lookups.
func openRootFS(dir string) (*rootFS, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs %s: %w", dir, err)
	}
	r := &rootFS{dir: dir, fd: fd}
	probe, err := r.open(".", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("open rootfs %s: openat2 with RESOLVE_IN_ROOT is unavailable "+
				"(needs Linux 5.6 or later and a seccomp profile that allows openat2); refusing to "+
				"expose a rootfs without symlink confinement: %w", dir, err)
		}
		return nil, fmt.Errorf("open rootfs %s: %w", dir, err)
	}
	unix.Close(probe)
	if r.hidden, err = findHidden(r); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open rootfs %s: %w", dir, err)
	}
	return r, nil
}

// Close releases the rootfs directory fd.
func (r *rootFS) Close() error {
	return unix.Close(r.fd)
}

// String names the host directory, for wazero's error messages.
func (r *rootFS) String() string { return r.dir }

// open resolves p inside the rootfs and opens it with flags. What the guest must not see is
// reported as absent (ENOENT), whatever path led to it.
func (r *rootFS) open(p string, flags int, perm uint32) (int, error) {
	fd, err := r.openRaw(p, flags, perm)
	if err != nil || r.hidden == nil {
		return fd, err
	}
	if err := r.hidden.check(fd, flags); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openRaw is open without the hidden check.
func (r *rootFS) openRaw(p string, flags int, perm uint32) (int, error) {
	if p == "" {
		p = "."
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveInRoot}
	// openat2 refuses a mode without O_CREAT or O_TMPFILE (whose bits include O_DIRECTORY's).
	if flags&unix.O_CREAT != 0 || flags&unix.O_TMPFILE == unix.O_TMPFILE {
		how.Mode = uint64(perm)
	}
	return openat2.Open(r.fd, p, how)
}

// maxModuleSize bounds the module file read into memory: image content is untrusted, and real
// modules (tens of MB for large Go programs) are far smaller.
const maxModuleSize = 1 << 30

// readFile returns the contents of the regular file p inside the rootfs.
func (r *rootFS) readFile(p string) ([]byte, error) {
	fd, err := r.open(p, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	f := &rootFile{fd: fd}
	defer f.Close()
	st, errno := f.Stat()
	if errno != 0 {
		return nil, errno
	}
	if !st.Mode.IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if st.Size > maxModuleSize {
		return nil, fmt.Errorf("%d bytes, more than the %d builtin:wasm accepts", st.Size, maxModuleSize)
	}
	buf := make([]byte, 0, st.Size)
	chunk := make([]byte, 64<<10)
	for {
		n, errno := f.Read(chunk)
		if errno != 0 {
			return nil, errno
		}
		if n == 0 {
			return buf, nil
		}
		if len(buf)+n > maxModuleSize { // the file grew while being read
			return nil, fmt.Errorf("more than the %d bytes builtin:wasm accepts", maxModuleSize)
		}
		buf = append(buf, chunk[:n]...)
	}
}

// isDotName reports a final component that names a directory itself rather than an entry in it.
func isDotName(base string) bool {
	return base == "" || base == "." || base == ".."
}

// splitParent splits p into its parent directory and final component, without cleaning it
// lexically (".." after a symlink means the symlink target's parent, which only the kernel knows).
func splitParent(p string) (dir, base string) {
	trimmed := strings.TrimRight(p, "/")
	if trimmed == "" {
		return ".", "" // "" or "/": the root itself
	}
	i := strings.LastIndexByte(trimmed, '/')
	switch {
	case i < 0:
		return ".", trimmed
	case i == 0:
		return "/", trimmed[1:]
	default:
		return trimmed[:i], trimmed[i+1:]
	}
}

// parent opens the directory holding p's final component. When the final component is "", "."
// or "..", base is returned as "" and the caller must treat p as a directory reference.
func (r *rootFS) parent(p string) (pfd int, base string, errno experimentalsys.Errno) {
	dir, base := splitParent(p)
	if isDotName(base) {
		return -1, "", 0
	}
	fd, err := r.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", experimentalsys.UnwrapOSError(err)
	}
	return fd, base, 0
}

// OpenFile implements experimentalsys.FS.
func (r *rootFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	flags := unixOpenFlags(flag)
	fd, err := r.open(p, flags, uint32(perm.Perm()))
	if err != nil {
		return nil, experimentalsys.UnwrapOSError(err)
	}
	f := &rootFile{fd: fd, append: flags&unix.O_APPEND != 0}
	if r.hidden != nil {
		f.hideName = r.hidden.nameIn(fd)
	}
	return f, 0
}

// Lstat implements experimentalsys.FS.
func (r *rootFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	pfd, base, errno := r.parent(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	if pfd < 0 {
		return r.Stat(p)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return sys.Stat_t{}, experimentalsys.UnwrapOSError(err)
	}
	return statFromUnix(&st), 0
}

// Stat implements experimentalsys.FS.
func (r *rootFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	fd, err := r.open(p, unix.O_PATH, 0)
	if err != nil {
		return sys.Stat_t{}, experimentalsys.UnwrapOSError(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return sys.Stat_t{}, experimentalsys.UnwrapOSError(err)
	}
	return statFromUnix(&st), 0
}

// Readlink implements experimentalsys.FS.
func (r *rootFS) Readlink(p string) (string, experimentalsys.Errno) {
	pfd, base, errno := r.parent(p)
	if errno != 0 {
		return "", errno
	}
	if pfd < 0 {
		return "", experimentalsys.EINVAL // a directory reference is never a symlink
	}
	defer unix.Close(pfd)
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(pfd, base, buf)
		if err != nil {
			return "", experimentalsys.UnwrapOSError(err)
		}
		if n < size {
			return string(buf[:n]), 0
		}
	}
}

// Mkdir implements experimentalsys.FS.
func (r *rootFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	pfd, base, errno := r.parent(p)
	if errno != 0 {
		return errno
	}
	if pfd < 0 {
		return experimentalsys.EEXIST
	}
	defer unix.Close(pfd)
	return experimentalsys.UnwrapOSError(unix.Mkdirat(pfd, base, uint32(perm.Perm())))
}

// Chmod implements experimentalsys.FS. It follows a final symlink, inside the rootfs.
func (r *rootFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	fd, err := r.open(p, unix.O_PATH, 0)
	if err != nil {
		return experimentalsys.UnwrapOSError(err)
	}
	defer unix.Close(fd)
	mode := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if perm&fs.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if perm&fs.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	err = unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if err == unix.EOPNOTSUPP {
		// Kernels before 6.6 lack fchmodat2; the fd (already confined) names the file via /proc.
		err = unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
	}
	return experimentalsys.UnwrapOSError(err)
}

// Rename implements experimentalsys.FS.
func (r *rootFS) Rename(from, to string) experimentalsys.Errno {
	fromDir, fromBase, errno := r.parent(from)
	if errno != 0 {
		return errno
	}
	if fromDir < 0 {
		return experimentalsys.EINVAL
	}
	defer unix.Close(fromDir)
	toDir, toBase, errno := r.parent(to)
	if errno != 0 {
		return errno
	}
	if toDir < 0 {
		return experimentalsys.EINVAL
	}
	defer unix.Close(toDir)
	return experimentalsys.UnwrapOSError(unix.Renameat(fromDir, fromBase, toDir, toBase))
}

// Rmdir implements experimentalsys.FS.
func (r *rootFS) Rmdir(p string) experimentalsys.Errno {
	return r.unlinkat(p, unix.AT_REMOVEDIR)
}

// Unlink implements experimentalsys.FS.
func (r *rootFS) Unlink(p string) experimentalsys.Errno {
	return r.unlinkat(p, 0)
}

func (r *rootFS) unlinkat(p string, flags int) experimentalsys.Errno {
	pfd, base, errno := r.parent(p)
	if errno != 0 {
		return errno
	}
	if pfd < 0 {
		return experimentalsys.EINVAL
	}
	defer unix.Close(pfd)
	return experimentalsys.UnwrapOSError(unix.Unlinkat(pfd, base, flags))
}

// Link implements experimentalsys.FS. A final symlink in oldPath is linked itself, not followed.
func (r *rootFS) Link(oldPath, newPath string) experimentalsys.Errno {
	oldDir, oldBase, errno := r.parent(oldPath)
	if errno != 0 {
		return errno
	}
	if oldDir < 0 {
		return experimentalsys.EPERM // directories cannot be hard-linked
	}
	defer unix.Close(oldDir)
	newDir, newBase, errno := r.parent(newPath)
	if errno != 0 {
		return errno
	}
	if newDir < 0 {
		return experimentalsys.EEXIST
	}
	defer unix.Close(newDir)
	return experimentalsys.UnwrapOSError(unix.Linkat(oldDir, oldBase, newDir, newBase, 0))
}

// Symlink implements experimentalsys.FS. Absolute targets are refused, as WASI requires (and as
// wazero does): host tools that later walk the rootfs would follow them on the host.
func (r *rootFS) Symlink(target, linkName string) experimentalsys.Errno {
	if path.IsAbs(target) {
		return experimentalsys.EPERM
	}
	pfd, base, errno := r.parent(linkName)
	if errno != 0 {
		return errno
	}
	if pfd < 0 {
		return experimentalsys.EEXIST
	}
	defer unix.Close(pfd)
	return experimentalsys.UnwrapOSError(unix.Symlinkat(target, pfd, base))
}

// Utimens implements experimentalsys.FS. It follows a final symlink, inside the rootfs.
func (r *rootFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	fd, err := r.open(p, unix.O_PATH, 0)
	if err != nil {
		return experimentalsys.UnwrapOSError(err)
	}
	defer unix.Close(fd)
	return experimentalsys.UnwrapOSError(unix.UtimesNanoAt(fd, "", utimesSpec(atim, mtim), unix.AT_EMPTY_PATH))
}

// unixOpenFlags maps wazero's portable open flags onto Linux's.
func unixOpenFlags(oflag experimentalsys.Oflag) int {
	var flags int
	switch oflag & (experimentalsys.O_RDONLY | experimentalsys.O_RDWR | experimentalsys.O_WRONLY) {
	case experimentalsys.O_RDWR:
		flags = unix.O_RDWR
	case experimentalsys.O_WRONLY:
		flags = unix.O_WRONLY
	default:
		flags = unix.O_RDONLY
	}
	for _, m := range []struct {
		wazero experimentalsys.Oflag
		linux  int
	}{
		{experimentalsys.O_APPEND, unix.O_APPEND},
		{experimentalsys.O_CREAT, unix.O_CREAT},
		{experimentalsys.O_DIRECTORY, unix.O_DIRECTORY},
		{experimentalsys.O_DSYNC, unix.O_DSYNC},
		{experimentalsys.O_EXCL, unix.O_EXCL},
		{experimentalsys.O_NOFOLLOW, unix.O_NOFOLLOW},
		{experimentalsys.O_NONBLOCK, unix.O_NONBLOCK},
		{experimentalsys.O_RSYNC, unix.O_RSYNC},
		{experimentalsys.O_SYNC, unix.O_SYNC},
		{experimentalsys.O_TRUNC, unix.O_TRUNC},
	} {
		if oflag&m.wazero != 0 {
			flags |= m.linux
		}
	}
	return flags
}

// utimesSpec converts wazero timestamps (UTIME_OMIT keeps a value) to utimensat's.
func utimesSpec(atim, mtim int64) []unix.Timespec {
	ts := func(ns int64) unix.Timespec {
		if ns == experimentalsys.UTIME_OMIT {
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
		return unix.NsecToTimespec(ns)
	}
	return []unix.Timespec{ts(atim), ts(mtim)}
}

// statFromUnix converts a Linux stat to wazero's.
func statFromUnix(st *unix.Stat_t) sys.Stat_t {
	return sys.Stat_t{
		Dev:   st.Dev,
		Ino:   st.Ino,
		Mode:  fileMode(st.Mode),
		Nlink: uint64(st.Nlink),
		Size:  st.Size,
		Atim:  st.Atim.Nano(),
		Mtim:  st.Mtim.Nano(),
		Ctim:  st.Ctim.Nano(),
	}
}

// fileMode converts Linux st_mode bits to fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFREG:
	default:
		mode |= fs.ModeIrregular
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// direntType converts a getdents d_type to fs.FileMode type bits; ok is false for DT_UNKNOWN.
func direntType(t uint8) (mode fs.FileMode, ok bool) {
	switch t {
	case unix.DT_REG:
		return 0, true
	case unix.DT_DIR:
		return fs.ModeDir, true
	case unix.DT_LNK:
		return fs.ModeSymlink, true
	case unix.DT_FIFO:
		return fs.ModeNamedPipe, true
	case unix.DT_SOCK:
		return fs.ModeSocket, true
	case unix.DT_CHR:
		return fs.ModeDevice | fs.ModeCharDevice, true
	case unix.DT_BLK:
		return fs.ModeDevice, true
	}
	return 0, false
}
