package wasm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// runeDir is where rune puts what an enclave container's runelet needs (runelet.Dir, kept equal
// by a test): the runelet and its loader and libraries, the PAL, the compiled-module cache entry
// and the agent socket. It lies inside the rootfs the guest sees, but none of it is the guest's: a
// module that could read the runelet's binary or cache could learn the host's layout and code, and
// one that could reach the agent socket could ask for evidence in the enclave's name.
const runeDir = "dev/.rune"

// maxHiddenDepth bounds the walk of runeDir for mounts (the cache entry is two levels deep).
const maxHiddenDepth = 4

// hiddenSet is what the guest must not open, decided on the opened descriptor (so that no path,
// symlink or ".." leads around it):
//   - anything on runeDir's mount or a mount below it (its read-only overlays and any bind mount
//     have mounts of their own, so the set holds every mount found under runeDir): absent, ENOENT;
//   - in procfs's per-process directories (/proc/<pid>, /proc/self, /proc/thread-self, which are
//     the runelet's own): any file opened for writing, and the files that expose the runelet's
//     memory and address layout (procMemoryFiles): EACCES. /proc/self/mem would let a guest
//     rewrite the runtime that sandboxes it; what the process is (status, cgroup) stays readable.
type hiddenSet struct {
	mounts map[uint64]bool
	// procMounts maps the mount ID of each procfs to its mount point, as the runelet sees it.
	procMounts map[uint64]string
	// parentDev and parentIno identify the directory holding runeDir, whose listing leaves it out.
	parentDev, parentIno uint64
	name                 string
}

// findHidden works out what of r the guest must not see. It fails closed: a rootfs whose hidden
// parts cannot be told is not opened.
func findHidden(r *rootFS) (*hiddenSet, error) {
	h := &hiddenSet{mounts: map[uint64]bool{}}
	var err error
	if h.procMounts, err = procMounts(); err != nil {
		return nil, err
	}
	if err := h.findRuneDir(r); err != nil {
		return nil, fmt.Errorf("hide %s from the guest: %w", "/"+runeDir, err)
	}
	if len(h.mounts) == 0 && len(h.procMounts) == 0 {
		return nil, nil
	}
	return h, nil
}

// findRuneDir records runeDir's mounts when runeDir is a mount point, as rune makes it. A plain
// directory of that name is the image's own and stays visible.
func (h *hiddenSet) findRuneDir(r *rootFS) error {
	dir, err := r.openRaw(runeDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return nil
		}
		return err
	}
	defer unix.Close(dir)
	parent, err := r.openRaw("dev", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	dirMnt, err := mountID(dir)
	if err != nil {
		return err
	}
	parentMnt, err := mountID(parent)
	if err != nil {
		return err
	}
	if dirMnt == parentMnt {
		return nil
	}
	h.mounts[dirMnt] = true
	if err := h.walkMounts(dir, 0); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(parent, &st); err != nil {
		return err
	}
	h.parentDev, h.parentIno, h.name = st.Dev, st.Ino, runeDir[strings.LastIndexByte(runeDir, '/')+1:]
	return nil
}

// walkMounts adds the mount of every entry below dir.
func (h *hiddenSet) walkMounts(dir, depth int) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
		fd, err := unix.Openat2(dir, n, how)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("%s: %w", n, err)
		}
		id, err := mountID(fd)
		if err == nil {
			h.mounts[id] = true
			var st unix.Stat_t
			if err = unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && depth < maxHiddenDepth {
				err = h.walkMounts(fd, depth+1)
			}
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists the directory behind the O_PATH descriptor dir.
func readDirNames(dir int) ([]string, error) {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

// procMemoryFiles are the per-process procfs files a guest may not open at all.
var procMemoryFiles = map[string]bool{
	"mem": true, "pagemap": true, "maps": true, "smaps": true, "smaps_rollup": true, "numa_maps": true,
	"auxv": true, "syscall": true, "stack": true, "environ": true, "map_files": true,
}

// check returns the error for a descriptor, opened with flags, that the guest must not have.
func (h *hiddenSet) check(fd, flags int) error {
	id, err := mountID(fd)
	if err != nil {
		return unix.EACCES // cannot tell: refuse
	}
	if h.mounts[id] {
		return unix.ENOENT
	}
	if mp, ok := h.procMounts[id]; ok {
		target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			return unix.EACCES
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(target, strings.TrimSuffix(mp, "/")), "/")
		first, _, _ := strings.Cut(rel, "/")
		if first == "self" || first == "thread-self" || isPID(first) {
			base := rel[strings.LastIndexByte(rel, '/')+1:]
			writes := flags&unix.O_PATH == 0 && flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC|unix.O_APPEND) != 0
			if writes || procMemoryFiles[base] {
				return unix.EACCES
			}
		}
	}
	return nil
}

func isPID(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// nameIn returns the entry a listing of the directory fd must leave out ("" for none).
func (h *hiddenSet) nameIn(fd int) string {
	if h.name == "" {
		return ""
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Dev != h.parentDev || st.Ino != h.parentIno {
		return ""
	}
	return h.name
}

// mountID returns the ID of the mount fd lies on (the first field of /proc/self/mountinfo).
func mountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
		return stx.Mnt_id, nil
	}
	// Before Linux 5.8, statx has no mount ID; fdinfo has.
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no mount ID in fdinfo")
}

// procMounts returns the procfs mounts of this process's mount namespace. Without a readable
// mountinfo (no /proc), there is no procfs to hide.
func procMounts() (map[uint64]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return map[uint64]string{}, nil
		}
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	out := map[uint64]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "proc" {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		out[id] = unescapeMountinfo(fields[4])
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
