package runelet

import (
	"bytes"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper collects the zombies of orphaned processes, which the kernel hands to PID 1 of the
// container: a workload's daemonised grandchildren, for instance. It must never reap a child that a
// runtime waits for itself, so it only takes zombies whose pid no runtime owns, and spawning holds
// the same lock, so a child cannot be seen as an orphan between its fork and its registration.
type reaper struct {
	mu    sync.Mutex
	owned map[int]bool
}

type pidder interface{ PID() int }

func newReaper() *reaper { return &reaper{owned: map[int]bool{}} }

// spawned registers the process a runtime just started (call with r.mu held).
func (r *reaper) spawnedLocked(p any) {
	if pp, ok := p.(pidder); ok && pp.PID() > 0 {
		r.owned[pp.PID()] = true
	}
}

// reap takes every zombie child of this process that no runtime owns.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	self := os.Getpid()
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || r.owned[pid] {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name, which may contain anything, start after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 2 || string(f[0]) != "Z" || string(f[1]) != strconv.Itoa(self) {
			continue
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}

// forget drops a process whose owner has reaped it.
func (r *reaper) forget(p any) {
	if pp, ok := p.(pidder); ok {
		r.mu.Lock()
		delete(r.owned, pp.PID())
		r.mu.Unlock()
	}
}
