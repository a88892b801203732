package launcher

import (
	"os"
	"os/signal"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/system"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// signalBuffer is large because a burst of SIGCHLDs must not be dropped while rune reaps.
const signalBuffer = 2048

// signalRelay forwards every signal rune receives to the container process and reaps children,
// so that a foreground rune behaves like the process it runs.
type signalRelay struct {
	ch chan os.Signal
}

// newSignalRelay subscribes before the process starts, so an early exit is not missed. Subscribing
// to every signal is slow, so that part runs concurrently with the container's start.
func newSignalRelay(subreaper bool) <-chan *signalRelay {
	if subreaper {
		if err := system.SetSubreaper(1); err != nil {
			logrus.Warn(err)
		}
	}
	ch := make(chan os.Signal, signalBuffer)
	signal.Notify(ch, unix.SIGCHLD)
	ready := make(chan *signalRelay, 1)
	go func() {
		signal.Notify(ch)
		ready <- &signalRelay{ch: ch}
	}()
	return ready
}

// forward relays signals until the process exits and returns its exit status.
func (h *signalRelay) forward(p *libcontainer.Process, io *stdio) (int, error) {
	pid, err := p.Pid()
	if err != nil {
		return -1, err
	}
	io.resize()
	for s := range h.ch {
		switch s {
		case unix.SIGWINCH:
			io.resize()
		case unix.SIGCHLD:
			for _, e := range reapChildren() {
				logrus.WithFields(logrus.Fields{"pid": e.pid, "status": e.status}).Debug("process exited")
				if e.pid == pid {
					// Already reaped; Wait releases libcontainer's resources for the process.
					_, _ = p.Wait()
					return e.status, nil
				}
			}
		case unix.SIGURG:
			// The Go runtime uses SIGURG for preemption; it is noise, not a user signal.
		default:
			us := s.(unix.Signal)
			logrus.Debugf("forwarding signal %d (%s) to %d", int(us), unix.SignalName(us), pid)
			if err := p.Signal(s); err != nil {
				logrus.Error(err)
			}
		}
	}
	return -1, nil
}

type exited struct{ pid, status int }

func reapChildren() []exited {
	var out []exited
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, &ru)
		if err != nil || pid <= 0 {
			if err != nil && err != unix.ECHILD {
				logrus.Error(err)
			}
			return out
		}
		out = append(out, exited{pid: pid, status: utils.ExitStatus(ws)})
	}
}
