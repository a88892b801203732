package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/process"
	"github.com/containerd/containerd/pkg/stdio"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
)

// OptionsFile is the bundle file holding the runc options a task was created with; the
// shim's delete action reads it to find rune and its root after a shim died.
const OptionsFile = "options.json"

// container is one task: its init process, the processes exec'd into it and its cgroup.
type container struct {
	id     string
	bundle string
	init   *process.Init
	// sharedPidNS: the container has no PID namespace of its own, so its other processes
	// do not die with init and must be killed when init exits.
	sharedPidNS bool

	mu         sync.Mutex
	execs      map[string]process.Process
	reserved   map[string]bool
	cgroup     any  // cgroup1.Cgroup or *cgroup2.Manager; nil until known
	oomWatched bool // the OOM watcher has the cgroup

	// Guarded by Service.lifecycleMu.
	execsRunning int        // exec'd processes started and not yet exited
	initExit     *runc.Exit // set when init has exited: no new exec may start
	initReported bool       // init's exit has been published
}

// newContainer mounts the rootfs, records the options and runs `rune create`.
func newContainer(ctx context.Context, platform stdio.Platform, r *taskAPI.CreateTaskRequest, cs *createSettings, shimExe string) (_ *container, retErr error) {
	opts := cs.opts
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	if err := WriteOptions(r.Bundle, opts); err != nil {
		return nil, err
	}
	shared, err := sharesPidNamespace(r.Bundle)
	if err != nil {
		return nil, err
	}

	var mounts []mount.Mount
	rootfs := ""
	if len(r.Rootfs) > 0 {
		rootfs = filepath.Join(r.Bundle, "rootfs")
		if err := os.Mkdir(rootfs, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create rootfs mount point: %w", err)
		}
		for _, m := range r.Rootfs {
			mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
		}
		if err := mount.All(mounts, rootfs); err != nil {
			return nil, fmt.Errorf("mount rootfs of %s: %w", r.ID, err)
		}
		defer func() {
			if retErr != nil {
				if err := mount.UnmountMounts(mounts, rootfs, 0); err != nil {
					log.G(ctx).WithError(err).Warn("unmount rootfs after a failed create")
				}
			}
		}()
	}

	release, err := convertCarrier(ctx, r, ns, cs, shimExe)
	if err != nil {
		return nil, err
	}
	defer release() // after rune create: it reads what the conversion set for it

	rt := process.NewRunc(opts.Root, r.Bundle, ns, opts.BinaryName, opts.SystemdCgroup)
	p := process.New(r.ID, rt, stdio.Stdio{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal})
	p.Bundle = r.Bundle
	p.Platform = platform
	p.Rootfs = rootfs
	p.WorkDir = filepath.Join(r.Bundle, "work")
	p.IoUID = int(opts.IoUid)
	p.IoGID = int(opts.IoGid)
	p.NoPivotRoot = opts.NoPivotRoot
	p.NoNewKeyring = opts.NoNewKeyring
	p.CriuWorkPath = opts.CriuWorkPath
	if p.CriuWorkPath == "" {
		p.CriuWorkPath = p.WorkDir
	}
	err = p.Create(ctx, &process.CreateConfig{
		ID:               r.ID,
		Bundle:           r.Bundle,
		Runtime:          opts.BinaryName,
		Terminal:         r.Terminal,
		Stdin:            r.Stdin,
		Stdout:           r.Stdout,
		Stderr:           r.Stderr,
		Checkpoint:       r.Checkpoint,
		ParentCheckpoint: r.ParentCheckpoint,
		Options:          r.Options,
	})
	if err != nil {
		return nil, err
	}
	c := &container{
		id:          r.ID,
		bundle:      r.Bundle,
		init:        p,
		sharedPidNS: shared,
		execs:       make(map[string]process.Process),
		reserved:    make(map[string]bool),
	}
	c.loadCgroup(ctx)
	return c, nil
}

// convertCarrier turns the container into an enclave container when its environment names a
// carrier (RUNE_CARRIER): the rune-carrier-helper helper writes a signed enclave manifest and the
// enclave settings into the bundle, for rune create to verify. The returned release ends
// the hold on what rune must be told (carrierclient.HoldRuneEnvironment); call it after rune
// create.
func convertCarrier(ctx context.Context, r *taskAPI.CreateTaskRequest, ns string, cs *createSettings, shimExe string) (release func(), err error) {
	if _, ok, err := carrierclient.Requested(r.Bundle); err != nil || !ok {
		return func() {}, err
	}
	helper, err := carrierclient.Helper(shimExe)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	release = carrierclient.HoldRuneEnvironment(cs.cfg)
	res, err := carrierclient.Run(ctx, helper, carrierclient.Request{
		Bundle: r.Bundle, ContainerID: r.ID, Namespace: ns,
		ConfigPath: cs.source.ConfigPath, ConfigBody: cs.source.ConfigBody,
		RunePath: cs.opts.BinaryName, ContainerdAddress: carrierclient.ContainerdAddress(),
		LogLevel: log.G(ctx).Logger.GetLevel().String(),
	})
	if err != nil {
		release()
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	log.G(ctx).WithFields(logrus.Fields{"id": r.ID, "carrier": res.Carrier, "cache": res.Cache}).Debug("carrier done")
	return release, nil
}

// WriteOptions records opts in the bundle, with protobuf field names (binary_name, root).
func WriteOptions(bundle string, opts *options.Options) error {
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(opts)
	if err != nil {
		return fmt.Errorf("encode runc options: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, OptionsFile), data, 0o600); err != nil {
		return fmt.Errorf("record runc options: %w", err)
	}
	return nil
}

// ReadOptions reads what WriteOptions wrote.
func ReadOptions(bundle string) (*options.Options, error) {
	data, err := os.ReadFile(filepath.Join(bundle, OptionsFile))
	if err != nil {
		return nil, fmt.Errorf("read runc options: %w", err)
	}
	var opts options.Options
	if err := protojson.Unmarshal(data, &opts); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(bundle, OptionsFile), err)
	}
	return &opts, nil
}

// BundleSpec is the part of a bundle's config.json the shim reads.
type BundleSpec struct {
	Annotations map[string]string `json:"annotations"`
	Linux       *struct {
		Namespaces []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"namespaces"`
	} `json:"linux"`
}

// ReadBundleSpec reads the annotations and namespaces of <bundle>/config.json.
func ReadBundleSpec(bundle string) (*BundleSpec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var s BundleSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode %s/config.json: %w", bundle, err)
	}
	return &s, nil
}

// sharesPidNamespace reports whether the container joins an existing PID namespace (or
// the host's) instead of creating its own.
func sharesPidNamespace(bundle string) (bool, error) {
	s, err := ReadBundleSpec(bundle)
	if err != nil {
		return false, err
	}
	if s.Linux != nil {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type == "pid" && ns.Path == "" {
				return false, nil
			}
		}
	}
	return true, nil
}

func (c *container) loadCgroup(ctx context.Context) {
	pid := c.init.Pid()
	if pid <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cgroup != nil {
		return
	}
	var err error
	if cgroups.Mode() == cgroups.Unified {
		var path string
		if path, err = cgroup2.PidGroupPath(pid); err == nil {
			c.cgroup, err = cgroup2.Load(path)
		}
	} else {
		c.cgroup, err = cgroup1.Load(cgroup1.PidPath(pid))
	}
	if err != nil {
		c.cgroup = nil
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("load the container's cgroup (no stats or OOM events)")
	}
}

func (c *container) Cgroup() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cgroup
}

// process returns init for "" and an exec'd process otherwise.
func (c *container) process(execID string) (process.Process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("process %s of %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// reserve claims an exec id; release gives it back if the exec is not added.
func (c *container) reserve(execID string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.execs[execID]; ok || c.reserved[execID] {
		return nil, fmt.Errorf("process %s of %s: %w", execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.reserved[execID] = true
	return func() {
		c.mu.Lock()
		delete(c.reserved, execID)
		c.mu.Unlock()
	}, nil
}

func (c *container) addExec(p process.Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reserved, p.ID())
	c.execs[p.ID()] = p
}

func (c *container) removeExec(execID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.execs, execID)
}

// execIDOf returns the exec id of the exec'd process with pid, if any.
func (c *container) execIDOf(pid int) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.execs {
		if p.Pid() == pid {
			return id, true
		}
	}
	return "", false
}
