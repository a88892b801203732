// Package manager starts and cleans up containerd-shim-rune-v2 processes: the `start`
// and `delete` actions containerd runs before a shim serves and after one died.
//
// start either hands containerd the socket of a running shim of the same group (one shim
// per Kubernetes pod sandbox, keyed by the io.kubernetes.cri.sandbox-id annotation, or by
// io.containerd.rune.v2.group) or launches a new shim process serving on a new socket.
// delete force-deletes a container with the rune and root recorded in its bundle. This
// package must never remove a socket a live shim still serves, and never delete a
// container with a runtime other than the one recorded for it.
package manager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/process"
	"github.com/containerd/containerd/pkg/schedcore"
	"github.com/containerd/containerd/runtime/v2/shim"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/inclavare-containers/inclavare-go/shim/bootstrap"
	"github.com/inclavare-containers/inclavare-go/shim/task"
)

// GroupAnnotations name the annotations that make containers share one shim, first
// match wins: an explicit group, then the Kubernetes pod sandbox.
var GroupAnnotations = []string{
	"io.containerd.rune.v2.group",
	"io.kubernetes.cri.sandbox-id",
}

// Manager implements containerd's shim.Manager for rune.
type Manager struct {
	name string
}

// New returns the manager of the shim known to containerd as runtime type name.
func New(name string) Manager { return Manager{name: name} }

// Name is the runtime type.
func (m Manager) Name() string { return m.name }

// Group returns the shim group of a container: the value of the first group annotation
// present, else the container id (a shim of its own).
func Group(id string, annotations map[string]string) string {
	for _, a := range GroupAnnotations {
		if g, ok := annotations[a]; ok && g != "" {
			return g
		}
	}
	return id
}

// Start runs in the bundle directory of container id. It returns the address of the
// shim that will serve the container, starting one if its group has none.
func (m Manager) Start(ctx context.Context, id string, opts shim.StartOpts) (_ string, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	bundle, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bundle directory: %w", err)
	}
	spec, err := task.ReadBundleSpec(bundle)
	if err != nil {
		return "", err
	}
	// containerd ≥ 2.3 sends bootstrap parameters on stdin and wants a bootstrap result
	// (task API v3) back; containerd 1.x sends its runtime options, or nothing, and wants
	// the bare address (task API v2).
	input, err := io.ReadAll(io.LimitReader(os.Stdin, maxStdin))
	if err != nil {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	params, err := bootstrap.Parse(input, id, ns)
	if err != nil && !errors.Is(err, bootstrap.ErrLegacy) {
		return "", err
	}
	runtimeOptions := input
	answer := func(address string) string { return address }
	group := Group(id, spec.Annotations)
	var address string
	if params != nil {
		log.G(ctx).WithField("containerd", params.ContainerdVersion).Debug("bootstrap protocol, task API v3")
		runtimeOptions = nil
		for _, a := range params.Extensions {
			if a.MessageName() == runcOptionsType {
				runtimeOptions, _ = proto.Marshal(a)
			}
		}
		answer = func(address string) string { return string(bootstrap.Result(address)) }
		if params.SocketDir != "" {
			address = socketAddressIn(params.SocketDir, opts.Address, ns, group)
		}
	}
	if address == "" {
		if address, err = shim.SocketAddress(ctx, opts.Address, group); err != nil {
			return "", fmt.Errorf("shim socket address: %w", err)
		}
	}

	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return "", fmt.Errorf("create shim socket: %w", err)
		}
		// The group already has a shim: if it answers, it serves this container too.
		if shim.CanConnect(address) {
			if err := shim.WriteAddress("address", address); err != nil {
				return "", fmt.Errorf("record the address of the group's shim: %w", err)
			}
			return answer(address), nil
		}
		// Nobody answers: a dead shim's leftover socket.
		if err := shim.RemoveSocket(address); err != nil {
			return "", fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return "", fmt.Errorf("create shim socket after removing a stale one: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	if err := shim.WriteAddress("address", address); err != nil {
		return "", fmt.Errorf("record shim address: %w", err)
	}
	f, err := socket.File()
	if err != nil {
		return "", fmt.Errorf("shim socket file: %w", err)
	}
	defer f.Close()

	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the shim binary: %w", err)
	}
	args := []string{"-namespace", ns, "-id", id, "-address", opts.Address}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = bundle
	cmd.Env = os.Environ()
	// The serving shim reads its listening socket from fd 3.
	cmd.ExtraFiles = []*os.File{f}
	// Its own process group: a signal to containerd's group must not reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	if err := startShim(cmd); err != nil {
		return "", fmt.Errorf("start shim: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
		}
	}()
	go func() { _ = cmd.Wait() }()

	// runc options may name a cgroup for the shim itself.
	if ro, err := shim.ReadRuntimeOptions[*options.Options](bytes.NewReader(runtimeOptions)); err == nil && ro.ShimCgroup != "" {
		if err := joinCgroup(ro.ShimCgroup, cmd.Process.Pid); err != nil {
			return "", err
		}
	}
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		return "", fmt.Errorf("adjust the shim's OOM score: %w", err)
	}
	return answer(address), nil
}

// maxStdin bounds what start reads from containerd: runtime options or bootstrap
// parameters are a few hundred bytes.
const maxStdin = 10 << 20

// runcOptionsType names the runtime options containerd's CRI and ctr pass.
var runcOptionsType = (&options.Options{}).ProtoReflect().Descriptor().FullName()

// socketAddressIn is the shim socket of a group in the socket directory containerd's
// configuration names, hashed the way containerd's own shims name theirs.
func socketAddressIn(dir, containerdAddress, ns, group string) string {
	d := sha256.Sum256([]byte(filepath.Join(containerdAddress, ns, group)))
	return fmt.Sprintf("unix://%s/%x", dir, d)
}

// startShim starts cmd, in a new core-scheduling group when SCHED_CORE is set (as
// containerd's shims do, so that containers of different shims never share a core).
func startShim(cmd *exec.Cmd) error {
	if os.Getenv("SCHED_CORE") == "" {
		return cmd.Start()
	}
	// The cookie is per thread: create it on the thread that forks.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := schedcore.Create(schedcore.ProcessGroup); err != nil {
		return fmt.Errorf("enable core scheduling: %w", err)
	}
	return cmd.Start()
}

func joinCgroup(path string, pid int) error {
	if cgroups.Mode() == cgroups.Unified {
		cg, err := cgroup2.Load(path)
		if err != nil {
			return fmt.Errorf("load shim cgroup %s: %w", path, err)
		}
		if err := cg.AddProc(uint64(pid)); err != nil {
			return fmt.Errorf("move shim into cgroup %s: %w", path, err)
		}
		return nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return fmt.Errorf("load shim cgroup %s: %w", path, err)
	}
	if err := cg.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("move shim into cgroup %s: %w", path, err)
	}
	return nil
}

// Stop cleans up container id after its shim died: it force-deletes the container with
// the rune and root recorded in the bundle, unmounts the rootfs and reports init as
// killed.
func (m Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return shim.StopStatus{}, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, fmt.Errorf("working directory: %w", err)
	}
	// containerd runs delete in some bundle of the namespace; id's bundle is its sibling.
	bundle := filepath.Join(filepath.Dir(cwd), id)

	opts, err := task.ReadOptions(bundle)
	if errors.Is(err, os.ErrNotExist) {
		// Create never got as far as choosing rune: nothing rune knows of to delete.
		log.G(ctx).WithField("id", id).Info("no runtime options recorded; only unmounting")
	} else if err != nil {
		return shim.StopStatus{}, err
	} else {
		rt := process.NewRunc(opts.Root, bundle, ns, opts.BinaryName, opts.SystemdCgroup)
		if err := rt.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil {
			log.G(ctx).WithError(err).WithField("id", id).Warn("force-delete the container")
		}
	}
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	pid, err := runc.ReadPidFile(filepath.Join(bundle, process.InitPidFile))
	if err != nil {
		log.G(ctx).WithError(err).Warn("read init pid file")
	}
	return shim.StopStatus{
		ExitedAt:   time.Now(),
		ExitStatus: 128 + int(unix.SIGKILL),
		Pid:        pid,
	}, nil
}
