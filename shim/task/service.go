// Package task is the task service of containerd-shim-rune-v2 (containerd's task API v2,
// which containerd 1.6 and 1.7 speak): create, start, exec, kill, pause/resume, stats, OOM
// and exit events, logs, checkpoint and delete of containers run by rune.
//
// rune is runc-compatible, so the OCI runtime is driven exactly as the runc v2 shim
// drives runc: through containerd's pkg/process (the runtime CLI calls, stdio FIFOs,
// logging URIs, state machines of init and exec'd processes). What this package owns is
// the service around it: reading and validating the shim configuration at create,
// pinning every container to the configured rune binary and state root, tracking process
// exits, and publishing events in the order containerd expects. (containerd's own runc
// task service cannot be imported here: its packages do not compile against the
// runtime-spec version rune's libcontainer needs.)
//
// It must never run a container with a runtime binary other than the configured rune,
// never create a container while the configuration is invalid, and never publish a
// container's init exit before the exits of the processes exec'd into it.
package task

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/console"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/oom"
	oomv1 "github.com/containerd/containerd/pkg/oom/v1"
	oomv2 "github.com/containerd/containerd/pkg/oom/v2"
	"github.com/containerd/containerd/pkg/process"
	"github.com/containerd/containerd/pkg/shutdown"
	"github.com/containerd/containerd/protobuf"
	ptypes "github.com/containerd/containerd/protobuf/types"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/containerd/sys/reaper"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/shim/carrierclient"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// Service is the shim's task service.
type Service struct {
	ctx      context.Context
	shimExe  string // rune is looked for beside the shim binary
	getenv   func(string) string
	platform *consolePlatform
	oom      oom.Watcher
	events   *eventQueue
	shutdown shutdown.Service

	mu sync.Mutex
	// containers by id; a nil entry reserves an id while its create runs.
	containers map[string]*container

	// lifecycleMu guards exit tracking and the lifecycle fields of every container.
	lifecycleMu sync.Mutex
	running     map[int][]tracked // started processes by pid, until they exit
	// starting counts create/start calls in flight. While it is above zero, exits of
	// pids nobody tracks yet are kept in early: the process may be one whose start has
	// not returned its pid yet.
	starting int
	early    map[int][]runc.Exit
}

// tracked is a started process of a container.
type tracked struct {
	c *container
	p process.Process
}

// exited is an exit ready to be published.
type exited struct {
	c *container
	p process.Process
	e runc.Exit
}

var _ taskAPI.TaskService = (*Service)(nil)

var empty = &ptypes.Empty{}

// New starts the service: the exit reaper subscription, the OOM watcher, the terminal
// copier and event forwarding to containerd.
func New(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (*Service, error) {
	// go-runc must learn rune's exit status through the shim's reaper, which reaps every
	// child of the shim (it is a subreaper).
	runc.Monitor = reaper.Default

	var (
		watcher oom.Watcher
		err     error
	)
	if cgroups.Mode() == cgroups.Unified {
		watcher, err = oomv2.New(publisher)
	} else {
		watcher, err = oomv1.New(publisher)
	}
	if err != nil {
		return nil, fmt.Errorf("start OOM watcher: %w", err)
	}
	platform, err := newConsolePlatform()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate the shim binary: %w", err)
	}
	s := &Service{
		ctx:        ctx,
		shimExe:    exe,
		getenv:     os.Getenv,
		platform:   platform,
		oom:        watcher,
		events:     newEventQueue(),
		shutdown:   sd,
		containers: make(map[string]*container),
		running:    make(map[int][]tracked),
		early:      make(map[int][]runc.Exit),
	}
	go watcher.Run(ctx)
	go s.processExits(reaper.Default.Subscribe())
	go s.events.forward(ctx, publisher)
	sd.RegisterCallback(func(context.Context) error { s.events.close(); return nil })
	sd.RegisterCallback(func(context.Context) error { return platform.Close() })
	if address, err := shim.ReadAddress("address"); err == nil {
		sd.RegisterCallback(func(context.Context) error { return shim.RemoveSocket(address) })
	}

	// Apply the configured log level from the start when the configuration is readable;
	// a bad configuration is reported, and fails, at create, where the client sees it.
	if cfg, err := config.Load(config.Locate("", nil, s.getenv)); err == nil {
		applyLogLevel(ctx, cfg)
	} else {
		log.G(ctx).WithError(err).Error("invalid shim configuration: every create will fail until it is fixed")
	}
	return s, nil
}

// RegisterTTRPC serves the service as containerd's task API v2 (containerd 1.x) and v3
// (containerd ≥ 2.3); the bootstrap answer at start tells containerd which to use.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTaskService(server, s)
	registerTaskV3(server, s)
	return nil
}

// Create checks the configuration, pins the container to rune and runs `rune create`.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	cs, err := s.runeOptions(ctx, r)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", r.ID).Error("create refused")
		return nil, errdefs.ToGRPC(fmt.Errorf("containerd-shim-rune-v2: %v: %w", err, errdefs.ErrInvalidArgument))
	}
	log.G(ctx).WithFields(logrus.Fields{"id": r.ID, "rune": cs.opts.BinaryName, "root": cs.opts.Root}).Debug("create")

	s.mu.Lock()
	if _, ok := s.containers[r.ID]; ok {
		s.mu.Unlock()
		return nil, errdefs.ToGRPCf(errdefs.ErrAlreadyExists, "container %s", r.ID)
	}
	s.containers[r.ID] = nil
	s.mu.Unlock()

	s.lifecycleMu.Lock()
	s.starting++
	s.lifecycleMu.Unlock()
	c, err := newContainer(ctx, s.platform, r, cs, s.shimExe)
	if err != nil {
		ns, _ := namespaces.Namespace(ctx)
		err = explainNoSpace(err, r.Bundle, filepath.Join(cs.opts.Root, ns))
		s.endStart(nil, nil)
		s.mu.Lock()
		delete(s.containers, r.ID)
		s.mu.Unlock()
		return nil, errdefs.ToGRPC(err)
	}
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	// Watch for OOM kills from now on, not from start: init is in its cgroup already, and a
	// workload that exceeds its limit at once could otherwise be killed before the watch
	// began, its exit then reported without OOMKilled (critest's OOM spec, under load).
	s.watchOOM(ctx, c)

	s.events.send(&eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Checkpoint:  r.Checkpoint,
		Pid:         uint32(c.init.Pid()),
	})
	s.endStart(c, c.init)
	return &taskAPI.CreateTaskResponse{Pid: uint32(c.init.Pid())}, nil
}

// createSettings is what a create request asks for, once the configuration is read.
type createSettings struct {
	opts   *options.Options // pinned to the configured rune
	cfg    *config.Config
	source RequestOptions // where the configuration came from, for rune-carrier-helper
}

// runeOptions reads the configuration the request points at and returns the runc
// options that drive the configured rune, with the configuration itself.
func (s *Service) runeOptions(ctx context.Context, r *taskAPI.CreateTaskRequest) (*createSettings, error) {
	req, err := DecodeRuntimeOptions(r.Options)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.Locate(req.ConfigPath, req.ConfigBody, s.getenv))
	if err != nil {
		return nil, err
	}
	applyLogLevel(ctx, cfg)
	if err := cfg.CheckCarriers(carrierclient.Names()); err != nil {
		return nil, err
	}
	runePath, err := cfg.ResolveRune(s.shimExe)
	if err != nil {
		return nil, err
	}
	opts, err := PinToRune(req.Runc, cfg, runePath)
	if err != nil {
		return nil, err
	}
	return &createSettings{opts: opts, cfg: cfg, source: req}, nil
}

func applyLogLevel(ctx context.Context, cfg *config.Config) {
	if cfg.LogLevel == "" {
		return
	}
	lvl, err := logrus.ParseLevel(cfg.LogLevel) // config.Parse validated it
	if err == nil && logrus.GetLevel() != lvl {
		logrus.SetLevel(lvl)
		log.G(ctx).WithField("level", cfg.LogLevel).Info("log level set by the shim configuration")
	}
}

// Start starts init (`rune start`) or an exec'd process (`rune exec`).
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	isInit := r.ExecID == ""

	s.lifecycleMu.Lock()
	if isInit {
		// An exit of init during start must wait for the start event: untrack it.
		s.untrackLocked(c, c.init)
	} else {
		if c.initExit != nil {
			s.lifecycleMu.Unlock()
			return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "container %s: init has exited", c.id)
		}
		c.execsRunning++
	}
	s.starting++
	s.lifecycleMu.Unlock()

	if err := p.Start(ctx); err != nil {
		if isInit {
			s.endStart(c, p)
		} else {
			s.endStart(nil, nil)
			s.execNotStarted(c)
		}
		return nil, errdefs.ToGRPC(err)
	}
	if isInit {
		s.watchOOM(ctx, c) // when the cgroup could not be loaded at create
		s.events.send(&eventstypes.TaskStart{ContainerID: c.id, Pid: uint32(p.Pid())})
	} else {
		s.events.send(&eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: uint32(p.Pid())})
	}
	s.endStart(c, p)
	return &taskAPI.StartResponse{Pid: uint32(p.Pid())}, nil
}

// watchOOM has the OOM watcher report the container's OOM kills, once.
func (s *Service) watchOOM(ctx context.Context, c *container) {
	c.loadCgroup(ctx)
	c.mu.Lock()
	cg, watched := c.cgroup, c.oomWatched
	c.oomWatched = c.oomWatched || cg != nil
	c.mu.Unlock()
	if cg == nil || watched {
		return
	}
	if err := s.oom.Add(c.id, cg); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("watch the container for OOM kills")
	}
}

// Delete deletes an exec'd process, or init and the container (`rune delete`).
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Delete(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if r.ExecID != "" {
		c.removeExec(r.ExecID)
	} else {
		s.mu.Lock()
		delete(s.containers, r.ID)
		s.mu.Unlock()
		s.events.send(&eventstypes.TaskDelete{
			ContainerID: c.id,
			Pid:         uint32(p.Pid()),
			ExitStatus:  uint32(p.ExitStatus()),
			ExitedAt:    protobuf.ToTimestamp(p.ExitedAt()),
		})
	}
	return &taskAPI.DeleteResponse{
		Pid:        uint32(p.Pid()),
		ExitStatus: uint32(p.ExitStatus()),
		ExitedAt:   protobuf.ToTimestamp(p.ExitedAt()),
	}, nil
}

// Exec adds a process to the container; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	release, err := c.reserve(r.ExecID)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	spec, err := withoutCarrier(r.Spec)
	if err != nil {
		release()
		return nil, errdefs.ToGRPC(err)
	}
	p, err := c.init.Exec(ctx, c.bundle, &process.ExecConfig{
		ID:       r.ExecID,
		Terminal: r.Terminal,
		Stdin:    r.Stdin,
		Stdout:   r.Stdout,
		Stderr:   r.Stderr,
		Spec:     spec,
	})
	if err != nil {
		release()
		return nil, errdefs.ToGRPC(err)
	}
	c.addExec(p)
	s.events.send(&eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return empty, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Resize(console.WinSize{Width: uint16(r.Width), Height: uint16(r.Height)}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return empty, nil
}

// State reports a process's state.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	sio := p.Stdio()
	return &taskAPI.StateResponse{
		ID:         p.ID(),
		Bundle:     c.bundle,
		Pid:        uint32(p.Pid()),
		Status:     taskStatus(st),
		Stdin:      sio.Stdin,
		Stdout:     sio.Stdout,
		Stderr:     sio.Stderr,
		Terminal:   sio.Terminal,
		ExitStatus: uint32(p.ExitStatus()),
		ExitedAt:   protobuf.ToTimestamp(p.ExitedAt()),
	}, nil
}

// taskStatus maps pkg/process's status names to the API's.
func taskStatus(st string) apitask.Status {
	switch st {
	case "created":
		return apitask.Status_CREATED
	case "running":
		return apitask.Status_RUNNING
	case "stopped":
		return apitask.Status_STOPPED
	case "paused":
		return apitask.Status_PAUSED
	case "pausing":
		return apitask.Status_PAUSING
	}
	return apitask.Status_UNKNOWN
}

// Pause freezes the container (`rune pause`).
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.init.Pause(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	s.events.send(&eventstypes.TaskPaused{ContainerID: c.id})
	return empty, nil
}

// Resume thaws the container (`rune resume`).
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.init.Resume(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	s.events.send(&eventstypes.TaskResumed{ContainerID: c.id})
	return empty, nil
}

// Kill signals a process, or with All every process of the container (`rune kill`).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Kill(ctx, r.Signal, r.All); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return empty, nil
}

// Pids lists the container's processes (`rune ps`), naming exec'd ones.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	pids, err := c.init.Runtime().Ps(ctx, c.id)
	if err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("list processes of %s: %w", c.id, err))
	}
	out := make([]*apitask.ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		info := &apitask.ProcessInfo{Pid: uint32(pid)}
		if execID, ok := c.execIDOf(pid); ok {
			a, err := protobuf.MarshalAnyToProto(&options.ProcessDetails{ExecID: execID})
			if err != nil {
				return nil, fmt.Errorf("encode details of pid %d: %w", pid, err)
			}
			info.Info = a
		}
		out = append(out, info)
	}
	return &taskAPI.PidsResponse{Processes: out}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if stdin := p.Stdin(); stdin != nil {
		if err := stdin.Close(); err != nil {
			return nil, errdefs.ToGRPC(fmt.Errorf("close stdin of %s: %w", c.id, err))
		}
	}
	return empty, nil
}

// Checkpoint checkpoints the container (`rune checkpoint`).
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	var opts options.CheckpointOptions
	if r.Options != nil {
		if err := typeurl.UnmarshalTo(r.Options, &opts); err != nil {
			return nil, errdefs.ToGRPC(fmt.Errorf("decode checkpoint options: %w", err))
		}
	}
	err = c.init.Checkpoint(ctx, &process.CheckpointConfig{
		Path:                     r.Path,
		WorkDir:                  opts.WorkPath,
		Exit:                     opts.Exit,
		AllowOpenTCP:             opts.OpenTcp,
		AllowExternalUnixSockets: opts.ExternalUnixSockets,
		AllowTerminal:            opts.Terminal,
		FileLocks:                opts.FileLocks,
		EmptyNamespaces:          opts.EmptyNamespaces,
	})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return empty, nil
}

// Update changes the container's resources (`rune update`).
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.init.Update(ctx, r.Resources); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return empty, nil
}

// Wait blocks until a process has exited and its exit is recorded.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.Wait()
	return &taskAPI.WaitResponse{
		ExitStatus: uint32(p.ExitStatus()),
		ExitedAt:   protobuf.ToTimestamp(p.ExitedAt()),
	}, nil
}

// Stats returns the container's cgroup metrics.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	var metrics any
	switch cg := c.Cgroup().(type) {
	case nil:
		return nil, errdefs.ToGRPCf(errdefs.ErrNotFound, "container %s has no cgroup", c.id)
	case cgroup1.Cgroup:
		if metrics, err = cg.Stat(cgroup1.IgnoreNotExist); err != nil {
			return nil, errdefs.ToGRPC(fmt.Errorf("cgroup stats of %s: %w", c.id, err))
		}
	case *cgroup2.Manager:
		if metrics, err = cg.Stat(); err != nil {
			return nil, errdefs.ToGRPC(fmt.Errorf("cgroup stats of %s: %w", c.id, err))
		}
	default:
		return nil, errdefs.ToGRPCf(errdefs.ErrNotImplemented, "cgroup type %T", cg)
	}
	a, err := typeurl.MarshalAny(metrics)
	if err != nil {
		return nil, fmt.Errorf("encode stats: %w", err)
	}
	return &taskAPI.StatsResponse{Stats: protobuf.FromAny(a)}, nil
}

// Connect reports the shim's and the task's pids.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	var pid int
	if c, err := s.getContainer(r.ID); err == nil {
		pid = c.init.Pid()
	}
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: uint32(pid)}, nil
}

// Shutdown stops the shim once it serves no container.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.containers) > 0 {
		return empty, nil // other containers of the pod still use this shim
	}
	s.shutdown.Shutdown()
	return empty, nil
}

// getProcess finds process execID ("" for init) of container id; errors are gRPC errors.
func (s *Service) getProcess(id, execID string) (*container, process.Process, error) {
	c, err := s.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, errdefs.ToGRPC(err)
	}
	return c, p, nil
}

func (s *Service) getContainer(id string) (*container, error) {
	s.mu.Lock()
	c := s.containers[id]
	s.mu.Unlock()
	if c == nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrNotFound, "container %s not created", id)
	}
	return c, nil
}
