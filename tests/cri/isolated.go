package cri

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// isolatedKinds are the namespaces an isolated Env's containerd gets of its own.
var isolatedKinds = []string{"mnt", "net", "ipc"}

// isolatedSetup runs as the first process of the private namespaces, then execs containerd.
// unshare has made every mount private already, so nothing below propagates to the host.
// Tmpfs over /run, /var/lib and /var/cache take what the shims, CNI and rune write outside
// containerd's own directories (/run/containerd/s, /run/netns, /var/lib/cni, /run/rune,
// /var/lib/rune, /var/cache/rune) whether those paths exist on the host or not. lo is up
// for the stream server and for host-network pods.
const isolatedSetup = `set -e
PATH="$PATH:/usr/sbin:/sbin"
for d in /run /var/lib /var/cache; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
ip link set lo up
exec "$@"`

// namespaces are the private namespaces of an isolated Env, entered through their first
// process (containerd) while it runs.
type namespaces struct {
	pid int
	ids map[string]string // kind → "mnt:[4026531841]", as /proc/<pid>/ns/<kind> reads
	// pins hold the namespaces open until close: a namespace's inode number is reused once it
	// is gone, and a process of someone else's in a new namespace must never pass for ours.
	pins []*os.File
}

// startIsolated starts c's containerd (configured already) in new mount, network and IPC
// namespaces, with env added to its environment.
func startIsolated(c *clients.Containerd, env ...string) (*namespaces, error) {
	argv := []string{"unshare", "--mount", "--net", "--ipc", "--propagation", "private", "--",
		"/bin/sh", "-c", isolatedSetup, "isolated-containerd", "/usr/bin/env"}
	argv = append(append(argv, env...), c.Binary, "--config", c.Config)
	d, err := clients.StartDaemon("containerd", c.Dir, 2*time.Hour, argv...)
	if err != nil {
		return nil, fmt.Errorf("start isolated containerd: %w", err)
	}
	c.Daemon = d
	ns := &namespaces{pid: d.PID(), ids: map[string]string{}}
	// unshare execs the shell, which execs containerd: one PID. Its namespaces are new as soon
	// as unshare has run, before the socket answers.
	err = clients.WaitFor(30*time.Second, "containerd's private namespaces", func() (bool, error) {
		ns.unpin()
		for _, kind := range isolatedKinds {
			own, err := os.Readlink("/proc/self/ns/" + kind)
			if err != nil {
				return false, err
			}
			path := fmt.Sprintf("/proc/%d/ns/%s", ns.pid, kind)
			id, err := os.Readlink(path)
			if err != nil {
				return false, err
			}
			if id == own {
				return false, fmt.Errorf("%s namespace still the host's", kind)
			}
			pin, err := os.Open(path)
			if err != nil {
				return false, err
			}
			// The process might have changed namespaces between the two calls (it exec'd on):
			// the pin must hold the namespace read.
			var st unix.Stat_t
			if err := unix.Fstat(int(pin.Fd()), &st); err != nil || fmt.Sprintf("%s:[%d]", kind, st.Ino) != id {
				pin.Close()
				return false, fmt.Errorf("%s namespace of %d changed while pinned", kind, ns.pid)
			}
			ns.ids[kind] = id
			ns.pins = append(ns.pins, pin)
		}
		return true, nil
	})
	if err != nil {
		return ns, fmt.Errorf("%w; log:\n%s", err, d.LogTail(20))
	}
	return ns, nil
}

func (n *namespaces) unpin() {
	for _, pin := range n.pins {
		pin.Close()
	}
	n.pins = nil
	clear(n.ids)
}

// enterArgv is argv run in the namespaces.
func (n *namespaces) enterArgv(argv []string) []string {
	return append([]string{"nsenter", "--target", strconv.Itoa(n.pid), "--mount", "--net", "--ipc", "--"}, argv...)
}

// members are the processes in any of the namespaces.
func (n *namespaces) members() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for _, kind := range isolatedKinds {
			if id, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", kind)); err == nil && id == n.ids[kind] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// close is called once containerd has stopped and the containers are deleted: any process
// still in the namespaces was left behind. They are killed, so that the namespaces and all
// they hold (mounts, network devices, IPC objects) go, and named in the error.
func (n *namespaces) close() error {
	defer n.unpin()
	if len(n.pins) < len(isolatedKinds) {
		return nil // never pinned: nothing of ours can be known to be in them
	}
	left, err := n.members()
	if err != nil || len(left) == 0 {
		return err
	}
	var names []string
	for _, pid := range left {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		names = append(names, fmt.Sprintf("%d (%s)", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	err = clients.WaitFor(30*time.Second, "the isolated namespaces to empty", func() (bool, error) {
		pids, err := n.members()
		return err == nil && len(pids) == 0, err
	})
	return errors.Join(fmt.Errorf("processes left in the isolated namespaces (killed): %s", strings.Join(names, ", ")), err)
}

// writeCNIConfig writes the pods' network, a bridge with host-local addresses on
// CNISubnet, into dir (CRI's conf_dir). The bridge plugin, from Debian's
// containernetworking-plugins, creates the bridge in containerd's network namespace.
func writeCNIConfig(dir string) error {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "rune-cri",
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      "cni-rune",
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":   "host-local",
				"ranges": [][]map[string]string{{{"subnet": CNISubnet}}},
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		}},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return fmt.Errorf("CNI config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("CNI config dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10-rune-cri.conflist"), data, 0o644); err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}
	return nil
}

// Enter returns argv run in the Env's namespaces (nsenter into containerd's), or argv itself
// when the Env is not isolated. A client that must see what containerd sees (a pod's IP,
// the "host" network and IPC of host-namespace pods, mount propagation) runs this way.
func (e *Env) Enter(argv ...string) []string {
	if e.ns == nil {
		return argv
	}
	return e.ns.enterArgv(argv)
}
