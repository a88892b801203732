package k8s

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// lockPath is locked (flock) by the harness whose cluster is up, and holds the node's state
// from before that cluster (hostState) until its teardown ends. The kernel drops the lock
// when that process dies, so a harness that takes it and finds a record, the CNI bridge, the
// cgroup root or another harness's cluster directory knows they leaked from a run killed
// before its teardown (a test timeout, a killed CI job) and puts the node back first.
const lockPath = "/run/inclavare-k8s-tests.lock"

// clusterDirName matches the directories Start creates (os.MkdirTemp "rune-k8s-").
var clusterDirName = regexp.MustCompile(`^rune-k8s-[0-9]+$`)

// nodeLock is a held lockPath.
type nodeLock struct{ f *os.File }

// lockNode takes lockPath, refusing if another harness holds it, and recovers what a killed
// harness left; recovered names each thing it put back or removed.
func lockNode() (l *nodeLock, recovered []string, err error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", lockPath, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("another cluster of this harness is running on this node (it holds %s)", lockPath)
		}
		return nil, nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	l = &nodeLock{f: f}
	recovered, err = l.recover()
	if err != nil {
		l.release(true)
		return nil, recovered, fmt.Errorf("put back what a killed run of this harness left on the node: %w", err)
	}
	return l, recovered, nil
}

// record saves h, so that a harness after a killed one can restore the node.
func (l *nodeLock) record(h *hostState) error {
	b, err := json.Marshal(savedHostState{Sysctls: h.sysctls, Entries: h.entries})
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", lockPath, err)
	}
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write %s: %w", lockPath, err)
	}
	return l.f.Sync()
}

// release drops the lock, clearing the record unless keepRecord (a teardown that failed: the
// next cluster, in this process or another, restores the node from it).
func (l *nodeLock) release(keepRecord bool) error {
	var err error
	if !keepRecord {
		err = l.f.Truncate(0)
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// savedHostState is hostState as lockPath holds it.
type savedHostState struct {
	Sysctls map[string]string   `json:"sysctls"`
	Entries map[string][]string `json:"entries"`
}

// recover puts the node back after a harness that died holding the lock: it kills what runs
// in the cgroups below CgroupRoot and from old cluster directories, unmounts and removes those
// directories, and restores the recorded host state (without a record, as an older harness
// left none: the cgroups and the bridge only).
func (l *nodeLock) recover() ([]string, error) {
	var done []string
	var errs []error
	b, err := io.ReadAll(io.NewSectionReader(l.f, 0, 1<<24))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lockPath, err)
	}
	var saved *hostState
	if len(b) > 0 {
		var s savedHostState
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s holds no host state: %w", lockPath, err)
		}
		saved = &hostState{sysctls: s.Sysctls, entries: s.Entries}
	}

	killed, err := killCgroupTasks()
	if err != nil {
		errs = append(errs, err)
	}
	if len(killed) > 0 {
		done = append(done, fmt.Sprintf("killed processes %v in cgroups below %s", killed, CgroupRoot))
	}
	tmp := os.TempDir()
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return done, fmt.Errorf("list %s: %w", tmp, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !clusterDirName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		pids, err := clients.KillProcessesUnder(dir)
		if err != nil {
			errs = append(errs, err)
		}
		if len(pids) > 0 {
			done = append(done, fmt.Sprintf("killed processes %v running from %s", pids, dir))
		}
		if err := clients.UnmountUnder(dir); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			continue
		}
		done = append(done, "removed cluster directory "+dir)
	}

	if saved != nil {
		if err := saved.restore(); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, "restored the host state recorded in "+lockPath)
		}
	} else {
		roots := existingCgroupRoots()
		if err := removeCgroupRoot(); err != nil {
			errs = append(errs, err)
		} else {
			for _, root := range roots {
				done = append(done, "removed cgroup "+root)
			}
		}
		if deleted, err := deleteBridge(); err != nil {
			errs = append(errs, err)
		} else if deleted {
			done = append(done, "deleted network interface "+bridgeName)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return done, err
	}
	return done, l.f.Truncate(0)
}

// killCgroupTasks kills every process in the cgroups below CgroupRoot (thawing v1 freezer
// cgroups first: a frozen task takes no signal) and waits up to 10 s for them to go.
func killCgroupTasks() ([]int, error) {
	var killed []int
	var procFiles []string
	for _, hier := range cgroupHierarchies() {
		root := filepath.Join(hier, CgroupRoot)
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if st := filepath.Join(p, "freezer.state"); fileExists(st) {
				os.WriteFile(st, []byte("THAWED"), 0o644)
			}
			procFiles = append(procFiles, filepath.Join(p, "cgroup.procs"))
			return nil
		})
	}
	pidsIn := func() []int {
		seen := map[int]bool{}
		var pids []int
		for _, f := range procFiles {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, s := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(s); err == nil && !seen[pid] && pid != os.Getpid() {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
		}
		return pids
	}
	for _, pid := range pidsIn() {
		if unix.Kill(pid, unix.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := pidsIn()
		if len(left) == 0 {
			return killed, nil
		}
		if time.Now().After(deadline) {
			return killed, fmt.Errorf("processes %v in cgroups below %s outlived SIGKILL", left, CgroupRoot)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
