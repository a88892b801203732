package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

const (
	// Namespace is where CRI keeps its images and containers.
	Namespace = "k8s.io"
	// PauseImage is the sandbox_image, built locally from testdata/pause.
	PauseImage = "docker.io/inclavare-tests/pause:local"
	// WorkloadImage holds busybox and (see Start) /app/hello.wasm and /app/prog.wasm.
	WorkloadImage = "docker.io/inclavare-tests/cri-workload:local"
	// HandlerRune and HandlerRunc are the CRI runtime handlers (crictl runp --runtime).
	HandlerRune = "rune"
	HandlerRunc = "runc"
	// HandlerSimNative is deploy/'s enclave handler: rune with the base runtime spec
	// deploy/containerd/SimNativeSpec, which makes every container of a pod an enclave
	// container (sim, builtin:native) without any enclave setting in the pod.
	HandlerSimNative = "rune-sim-native"
	// SimNativeSpec is that handler's base runtime spec, below deploy/containerd.
	SimNativeSpec = "rune-sim-native-spec.json"
	// CNISubnet is the pods' network when Options.CNI is set: a range reserved for
	// benchmarking (RFC 2544), never one a host network may use.
	CNISubnet = "198.18.0.0/24"
	// CrictlVersion is what InstallCrictl installs when crictl is not on PATH.
	CrictlVersion = "v1.34.0"
	// clientTimeout bounds every client command.
	clientTimeout = 2 * time.Minute
)

// Tools are the binaries an Env runs.
type Tools struct {
	Containerd string // Debian's containerd 1.6
	Ctr        string
	Runc       string
	Busybox    string // static, copied into the workload image
	Go         string // builds the pause program and the wasm workloads
	Rune       string
	Shim       string // containerd-shim-rune-v2; containerd finds it through PATH
	Crictl     string
	// RuncShimDir, when set, holds the containerd-shim-runc-v2 the runc handler runs
	// (containerd 2.x needs its own); otherwise the one on PATH.
	RuncShimDir string
}

// Env is one private containerd with the CRI plugin and its crictl.
type Env struct {
	Tools
	Options
	Dir      string
	Sock     string
	Config   string // containerd config
	RuneRoot string // rune.root of the shim config; containers are in RuneRoot/k8s.io/<id>
	RuncRoot string // the runc handler's Root
	PodLogs  string // parent of the pods' log directories
	daemon   *clients.Daemon
	ns       *namespaces // with Isolated
}

// Options are what an Env adds to the plain one tests/cri and bench/cri use.
type Options struct {
	// Wasm puts the wasm workloads in the workload image besides busybox.
	Wasm bool
	// Isolated runs containerd, its shims and containers in private mount, network and IPC
	// namespaces (Enter runs a client there): the shims' sockets in /run/containerd/s, the
	// pods' network namespaces, CNI's state, rune's private copies and caches, the "host"
	// network and IPC of host-namespace pods all stay in them and go with them. Only cgroups
	// and the files below Dir are the host's; Close removes both.
	Isolated bool
	// CNI gives pods that are not on the host network a bridge network on CNISubnet;
	// it needs Isolated, so that the bridge is not the host's.
	CNI bool
}

// Start starts containerd and imports the pause and workload images; with wasm, the
// workload image holds the wasm workloads besides busybox (the bench needs only busybox). Close undoes it, also
// after an error.
func Start(tools Tools, wasm bool) (*Env, error) {
	return StartWith(tools, Options{Wasm: wasm})
}

// StartWith is Start with options.
func StartWith(tools Tools, opts Options) (*Env, error) {
	if opts.CNI && !opts.Isolated {
		return nil, errors.New("a CNI network needs an isolated env (its bridge would be the host's)")
	}
	dir, err := os.MkdirTemp("", "rune-cri-")
	if err != nil {
		return nil, fmt.Errorf("create env dir: %w", err)
	}
	e := &Env{
		Tools:    tools,
		Options:  opts,
		Dir:      dir,
		Sock:     filepath.Join(dir, "containerd.sock"),
		Config:   filepath.Join(dir, "containerd.toml"),
		RuneRoot: filepath.Join(dir, "rune"),
		RuncRoot: filepath.Join(dir, "runc"),
		PodLogs:  filepath.Join(dir, "pods"),
	}
	if err := e.start(); err != nil {
		return e, err
	}
	return e, nil
}

func (e *Env) start() error {
	shimConfig := filepath.Join(e.Dir, "shim.toml")
	if err := os.WriteFile(shimConfig, []byte(fmt.Sprintf("[rune]\npath = %q\nroot = %q\n", e.Rune, e.RuneRoot)), 0o644); err != nil {
		return fmt.Errorf("write shim config: %w", err)
	}
	if err := os.MkdirAll(e.PodLogs, 0o755); err != nil {
		return fmt.Errorf("create pod log dir: %w", err)
	}
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	baseSpec := filepath.Join(root, "deploy", "containerd", SimNativeSpec)
	if _, err := os.Stat(baseSpec); err != nil {
		return fmt.Errorf("base runtime spec of %s: %w", HandlerSimNative, err)
	}
	cniDir := filepath.Join(e.Dir, "cni")
	if e.CNI {
		if err := writeCNIConfig(cniDir); err != nil {
			return err
		}
	}
	// The rune handlers hand the shim its configuration the Kubernetes way, through the
	// runtime options' ConfigPath. Without CNI, CRI's network set-up is never reached:
	// every pod must use the host network.
	c := clients.NewContainerd(e.Containerd, e.Ctr, e.Dir)
	c.Sock, c.Config = e.Sock, e.Config
	criConfig := fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[1]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[2]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = %[3]q
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[3]s]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[3]s.options]
        BinaryName = %[4]q
        Root = %[5]q
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[6]s]
      runtime_type = "io.containerd.rune.v2"
      container_annotations = ["enclave.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[6]s.options]
        ConfigPath = %[7]q
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[8]s]
      runtime_type = "io.containerd.rune.v2"
      base_runtime_spec = %[9]q
      container_annotations = ["enclave.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[8]s.options]
        ConfigPath = %[7]q
`, PauseImage, cniDir, HandlerRunc, e.Runc, e.RuncRoot, HandlerRune, shimConfig, HandlerSimNative, baseSpec)
	if err := c.WriteConfig(criConfig, true, false); err != nil {
		return err
	}
	crictlConfig := fmt.Sprintf("runtime-endpoint: unix://%[1]s\nimage-endpoint: unix://%[1]s\ntimeout: 60\npull-image-on-create: false\n", e.Sock)
	if err := os.WriteFile(filepath.Join(e.Dir, "crictl.yaml"), []byte(crictlConfig), 0o644); err != nil {
		return fmt.Errorf("write crictl config: %w", err)
	}
	// containerd looks up containerd-shim-rune-v2 (and the runc shim) on its own PATH.
	path := filepath.Dir(e.Shim) + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"
	if e.RuncShimDir != "" {
		path = filepath.Dir(e.Shim) + ":" + e.RuncShimDir + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"
	}
	if e.Isolated {
		e.ns, err = startIsolated(c, "PATH="+path)
		e.daemon = c.Daemon
	} else {
		err = c.Start("containerd", 2*time.Hour, "PATH="+path)
		e.daemon = c.Daemon
	}
	if err != nil {
		return err
	}
	err = e.daemon.WaitReady(60*time.Second, func(ctx context.Context) error {
		res, err := clients.Run(ctx, 10*time.Second, nil, e.Crictl, e.crictlArgs("--timeout", "2s", "info")...)
		if err == nil && res.ExitCode != 0 {
			err = errors.New(res.String())
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("containerd CRI: %w", err)
	}

	pause, err := e.build(nil, "./tests/cri/testdata/pause")
	if err != nil {
		return err
	}
	layer, err := clients.WithFiles(nil, map[string][]byte{"pause": pause})
	if err != nil {
		return fmt.Errorf("pause image layer: %w", err)
	}
	if err := e.importImage(PauseImage, layer, []string{"/pause"}); err != nil {
		return err
	}
	layer, err = clients.BusyboxRootfsTar(e.Busybox)
	if err != nil {
		return fmt.Errorf("workload image rootfs: %w", err)
	}
	if e.Wasm {
		files := map[string][]byte{}
		for name, pkg := range map[string]string{"app/hello.wasm": "./examples/hello", "app/prog.wasm": "./tests/integration/testdata/enclaveprog"} {
			if files[name], err = e.build([]string{"GOOS=wasip1", "GOARCH=wasm"}, pkg); err != nil {
				return err
			}
		}
		if layer, err = clients.WithFiles(layer, files); err != nil {
			return fmt.Errorf("workload image layer: %w", err)
		}
	}
	return e.importImage(WorkloadImage, layer, nil)
}

// Build builds a package of the repository statically for env (default: this machine)
// and returns the executable.
func (e *Env) Build(env []string, pkg string) ([]byte, error) { return e.build(env, pkg) }

func (e *Env) build(env []string, pkg string) ([]byte, error) {
	root, err := clients.RepoRoot()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(e.Dir, "build.out")
	cmd := exec.Command(e.Go, "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s %v: %w\n%s", pkg, env, err, b)
	}
	defer os.Remove(out)
	return os.ReadFile(out)
}

// importImage imports a one-layer image into CRI's namespace as ref (name:tag).
func (e *Env) importImage(ref string, layer []byte, entrypoint []string) error {
	return e.ImportImage(ref, layer, ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Entrypoint: entrypoint, WorkingDir: "/"})
}

// ImportImage imports a one-layer image with config into CRI's namespace as ref: a
// name with its registry (docker.io when it has none) and a tag (latest when it has none).
func (e *Env) ImportImage(ref string, layer []byte, config ocispec.ImageConfig) error {
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	if first, _, _ := strings.Cut(name, "/"); !strings.ContainsAny(first, ".:") && first != "localhost" {
		name = "docker.io/" + name
	}
	archive, err := clients.OCIArchiveWithConfig(layer, tag, config)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	path := filepath.Join(e.Dir, "image.tar")
	if err := os.WriteFile(path, archive, 0o644); err != nil {
		return fmt.Errorf("write image %s: %w", ref, err)
	}
	defer os.Remove(path)
	res, err := clients.Run(context.Background(), clientTimeout, nil, e.Ctr, "-a", e.Sock, "-n", Namespace,
		"images", "import", "--base-name", name, path)
	if err == nil && res.ExitCode != 0 {
		err = errors.New(res.String())
	}
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	return nil
}

func (e *Env) crictlArgs(args ...string) []string {
	return append([]string{"--runtime-endpoint", "unix://" + e.Sock, "--image-endpoint", "unix://" + e.Sock, "--config", filepath.Join(e.Dir, "crictl.yaml")}, args...)
}

// Run runs crictl against the Env's containerd; a non-zero exit is in the Result.
func (e *Env) Run(ctx context.Context, args ...string) (clients.Result, error) {
	return clients.Run(ctx, clientTimeout, nil, e.Crictl, e.crictlArgs(args...)...)
}

// MustRun runs a crictl command that must exit 0 and returns its trimmed stdout.
func (e *Env) MustRun(ctx context.Context, args ...string) (string, error) {
	res, err := e.Run(ctx, args...)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("crictl %s: %s", strings.Join(args, " "), res)
	}
	return strings.TrimSpace(res.Stdout), err
}

// LogTail is the end of containerd's log (for failure reports).
func (e *Env) LogTail(n int) string {
	if e.daemon == nil {
		return ""
	}
	return e.daemon.LogTail(n)
}

// Close removes every pod, stops containerd, and removes whatever is left below Dir:
// containers in the rune and runc roots, processes, mounts, files.
func (e *Env) Close() error {
	ctx := context.Background()
	var errs []error
	if e.daemon != nil {
		if out, err := e.MustRun(ctx, "pods", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				if _, err := e.MustRun(ctx, "stopp", id); err != nil {
					errs = append(errs, err)
				}
				if _, err := e.MustRun(ctx, "rmp", "-f", id); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := e.daemon.Stop(30 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for root, bin := range map[string]string{filepath.Join(e.RuneRoot, Namespace): e.Rune, filepath.Join(e.RuncRoot, Namespace): e.Runc} {
		if err := clients.ForceDeleteAll(ctx, bin, root); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := clients.KillProcessesUnder(e.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := clients.UnmountUnder(e.Dir); err != nil {
		errs = append(errs, err)
	}
	if e.ns != nil {
		if err := e.ns.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", e.Dir, err))
	}
	clients.RemoveEmptyCgroups(Namespace)
	return errors.Join(errs...)
}

// InstallCrictl returns crictl from PATH, or from cacheDir/crictl-<version>, where it is
// installed with `go install` first if it is not there yet.
func InstallCrictl(goBin, cacheDir string) (string, error) {
	if p, err := exec.LookPath("crictl"); err == nil {
		return p, nil
	}
	gobin := filepath.Join(cacheDir, "crictl-"+CrictlVersion)
	path := filepath.Join(gobin, "crictl")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	cmd := exec.Command(goBin, "install", "sigs.k8s.io/cri-tools/cmd/crictl@"+CrictlVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "CGO_ENABLED=0")
	cmd.Dir = os.TempDir() // outside any module, so go.mod is not consulted
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install crictl@%s: %w\n%s", CrictlVersion, err, b)
	}
	return path, nil
}
