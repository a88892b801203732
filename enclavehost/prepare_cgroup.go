package enclavehost

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// prepareCgroup is the transient cgroup of one `init-runelet prepare`: memory and pids bounded, at
// the root of each hierarchy (cgroup v2, or v1's memory and pids), removed once prepare ended. It
// is best effort: where rune may not make cgroups (rootless, a read-only /sys/fs/cgroup) prepare
// runs with its rlimits only. Written here rather than with libcontainer's cgroup managers so that
// the shim, which also runs prepare, stays small.
type prepareCgroup struct {
	dirs []string // created cgroup directories
	// oomFile is memory.events (v2) or memory.oom_control (v1): both count "oom_kill".
	oomFile string
}

func newPrepareCgroup(lim PrepareLimits) *prepareCgroup {
	cg := &prepareCgroup{}
	if os.Geteuid() != 0 {
		return cg
	}
	name := "rune-prepare-" + strconv.Itoa(os.Getpid()) + "-" + randomHex()
	mem := strconv.FormatInt(lim.Memory, 10)
	pids := strconv.FormatInt(lim.Pids, 10)
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		ctl, _ := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"))
		if !hasWord(string(ctl), "memory") || !hasWord(string(ctl), "pids") {
			return cg
		}
		dir := filepath.Join(cgroupRoot, name)
		if cg.mkdir(dir) && writeFile(dir, "memory.max", mem) == nil && writeFile(dir, "pids.max", pids) == nil {
			_ = writeFile(dir, "memory.swap.max", "0")
			cg.oomFile = filepath.Join(dir, "memory.events")
			return cg
		}
		cg.destroy()
		return &prepareCgroup{}
	}
	memDir := filepath.Join(cgroupRoot, "memory", name)
	if cg.mkdir(memDir) {
		if writeFile(memDir, "memory.limit_in_bytes", mem) != nil {
			cg.destroy()
			return &prepareCgroup{}
		}
		// Memory plus swap at the same limit: no swapping around it (absent without swap accounting).
		_ = writeFile(memDir, "memory.memsw.limit_in_bytes", mem)
		cg.oomFile = filepath.Join(memDir, "memory.oom_control")
	}
	pidsDir := filepath.Join(cgroupRoot, "pids", name)
	if cg.mkdir(pidsDir) && writeFile(pidsDir, "pids.max", pids) != nil {
		_ = unix.Rmdir(pidsDir)
		cg.dirs = cg.dirs[:len(cg.dirs)-1]
	}
	return cg
}

func (cg *prepareCgroup) mkdir(dir string) bool {
	if err := unix.Mkdir(dir, 0o700); err != nil {
		return false
	}
	cg.dirs = append(cg.dirs, dir)
	return true
}

// add moves pid into the cgroup.
func (cg *prepareCgroup) add(pid int) error {
	for _, d := range cg.dirs {
		if err := writeFile(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// oomKilled reports whether the kernel's OOM killer ended a process of the cgroup.
func (cg *prepareCgroup) oomKilled() bool {
	if cg.oomFile == "" {
		return false
	}
	data, err := os.ReadFile(cg.oomFile)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

// destroy kills whatever is left in the cgroup and removes it.
func (cg *prepareCgroup) destroy() {
	for _, d := range cg.dirs {
		for i := 0; i < 100; i++ {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
				break
			}
			// Still populated: prepare's process has not been reaped yet, or left something.
			procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cg.dirs = nil
}

func writeFile(dir, name, value string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600)
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
