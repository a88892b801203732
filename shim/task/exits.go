package task

import (
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/pkg/process"
	"github.com/containerd/containerd/protobuf"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
)

// Exit tracking. The reaper reports every child the shim reaps: container processes
// (the shim is their subreaper) and rune's own invocations (which go-runc already waits
// for). An exit is matched to a started process by pid. A process can exit before the
// call that started it has returned its pid; such exits are kept in s.early while any
// create or start is in flight and claimed by endStart.

// processExits handles reaped exits until the subscription ends.
func (s *Service) processExits(exits chan runc.Exit) {
	for e := range exits {
		s.lifecycleMu.Lock()
		procs := s.running[e.Pid]
		delete(s.running, e.Pid)
		if len(procs) == 0 && s.starting > 0 {
			s.early[e.Pid] = append(s.early[e.Pid], e)
		}
		var ready []exited
		var killAll []*container
		for _, t := range procs {
			r, k := s.exitedLocked(t, e)
			ready = append(ready, r...)
			if k != nil {
				killAll = append(killAll, k)
			}
		}
		s.lifecycleMu.Unlock()
		s.killRest(killAll)
		s.report(ready)
	}
}

// untrackLocked stops tracking c's init so that its exit is held as early.
func (s *Service) untrackLocked(c *container, p process.Process) {
	pid := p.Pid()
	kept := s.running[pid][:0]
	for _, t := range s.running[pid] {
		if t.c != c || t.p != p {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(s.running, pid)
	} else {
		s.running[pid] = kept
	}
}

// endStart closes a create or start call (s.starting was raised by the caller) and
// tracks p until it exits, or reports its exit at once if it already happened. c and p
// are nil when nothing was started.
func (s *Service) endStart(c *container, p process.Process) {
	s.lifecycleMu.Lock()
	s.starting--
	var ready []exited
	var killAll *container
	if p != nil && p.Pid() > 0 {
		pid := p.Pid()
		if seen := s.early[pid]; len(seen) > 0 {
			delete(s.early, pid)
			ready, killAll = s.exitedLocked(tracked{c: c, p: p}, seen[len(seen)-1])
		} else {
			s.running[pid] = append(s.running[pid], tracked{c: c, p: p})
		}
	}
	if s.starting == 0 {
		clear(s.early)
	}
	s.lifecycleMu.Unlock()
	if killAll != nil {
		s.killRest([]*container{killAll})
	}
	s.report(ready)
}

// execNotStarted undoes the count of an exec whose start failed, which may release a
// held init exit.
func (s *Service) execNotStarted(c *container) {
	s.lifecycleMu.Lock()
	c.execsRunning--
	var ready []exited
	if c.execsRunning == 0 && c.initExit != nil && !c.initReported {
		c.initReported = true
		ready = append(ready, exited{c: c, p: c.init, e: *c.initExit})
	}
	s.lifecycleMu.Unlock()
	s.report(ready)
}

// exitedLocked records the exit of t and returns the exits now ready to publish, in
// order, and the container whose remaining processes must be killed, if any. Init's exit
// is held until every exec'd process has exited, so clients see it last.
func (s *Service) exitedLocked(t tracked, e runc.Exit) (ready []exited, killAll *container) {
	c := t.c
	if t.p == process.Process(c.init) {
		c.initExit = &e
		if c.sharedPidNS {
			// Without its own PID namespace the container's other processes outlive init.
			killAll = c
		}
		if c.execsRunning == 0 {
			c.initReported = true
			ready = append(ready, exited{c: c, p: c.init, e: e})
		}
		return ready, killAll
	}
	c.execsRunning--
	ready = append(ready, exited{c: c, p: t.p, e: e})
	if c.execsRunning == 0 && c.initExit != nil && !c.initReported {
		c.initReported = true
		ready = append(ready, exited{c: c, p: c.init, e: *c.initExit})
	}
	return ready, nil
}

// killRest kills what is left of containers whose init exited; the exits follow through
// the reaper.
func (s *Service) killRest(cs []*container) {
	for _, c := range cs {
		go func(c *container) {
			if err := c.init.KillAll(s.ctx); err != nil {
				log.G(s.ctx).WithError(err).WithField("id", c.id).Warn("kill the processes left after init exited")
			}
		}(c)
	}
}

// report marks each process exited (which releases Wait) and publishes its exit.
func (s *Service) report(ready []exited) {
	for _, x := range ready {
		x.p.SetExited(x.e.Status)
		s.events.send(&eventstypes.TaskExit{
			ContainerID: x.c.id,
			ID:          x.p.ID(),
			Pid:         uint32(x.e.Pid),
			ExitStatus:  uint32(x.e.Status),
			ExitedAt:    protobuf.ToTimestamp(x.p.ExitedAt()),
		})
	}
}
