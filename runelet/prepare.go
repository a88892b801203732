package runelet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// HostSocket is the name of the runelet's host socket in rune's state directory for the container.
const HostSocket = "runelet.sock"

// StateFile records an enclave container's settings and phase beside libcontainer's state.
const StateFile = "enclave.json"

// Prepared is an enclave container whose spec was rewritten to run the runelet as PID 1.
type Prepared struct {
	Config Config
}

// PrepareOptions are the host facts Prepare needs.
type PrepareOptions struct {
	// Runelet is the host path of the init-runelet binary.
	Runelet string
	// CacheDir, when set, is a host directory of runtime artefacts to expose read-only.
	CacheDir string
}

// FindRunelet locates init-runelet: $RUNE_RUNELET, beside the running rune, then the libexec dir.
func FindRunelet() (string, error) {
	if p := os.Getenv("RUNE_RUNELET"); p != "" {
		return p, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "init-runelet")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	for _, p := range []string{"/usr/local/libexec/rune/init-runelet", "/usr/libexec/rune/init-runelet"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("init-runelet not found (tried %v; set RUNE_RUNELET)", tried)
}

// Prepare rewrites spec so that PID 1 is the runelet: it mounts the runelet, its libraries, the host's
// dynamic loader and the PAL read-only under Dir, adds the TEE's devices, and moves the original
// process into the runelet's Config. The spec's confinement (namespaces, cgroups, capabilities,
// seccomp, user, no-new-privileges) is left exactly as the user wrote it.
func Prepare(spec *specs.Spec, s *enclave.Settings, o PrepareOptions) (*Prepared, error) {
	if spec.Process == nil {
		return nil, errors.New("enclave container without a process")
	}
	bins := []string{o.Runelet}
	if _, builtin := s.Builtin(); !builtin {
		bins = append(bins, s.RuntimePath)
	}
	closure, err := enclave.ResolveClosure(bins...)
	if err != nil {
		return nil, err
	}
	if closure.Interpreter == "" {
		return nil, fmt.Errorf("%s is statically linked; the runelet needs the dynamic loader to load PALs", o.Runelet)
	}
	ro := []string{"bind", "ro", "nosuid", "nodev"}
	mounts := []specs.Mount{
		{Destination: Dir, Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=755", "size=1m"}},
		{Destination: Loader, Type: "bind", Source: closure.Interpreter, Options: ro},
		{Destination: Binary, Type: "bind", Source: o.Runelet, Options: ro},
	}
	names := make([]string, 0, len(closure.Libraries))
	for n := range closure.Libraries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mounts = append(mounts, specs.Mount{Destination: filepath.Join(LibDir, n), Type: "bind", Source: closure.Libraries[n], Options: ro})
	}
	p := &Prepared{Config: Config{
		Settings:   *s,
		Entrypoint: Launch{Args: spec.Process.Args, Env: spec.Process.Env, Cwd: spec.Process.Cwd},
	}}
	if _, builtin := s.Builtin(); !builtin {
		p.Config.RuntimePath = filepath.Join(PALDir, filepath.Base(s.RuntimePath))
		mounts = append(mounts, specs.Mount{Destination: p.Config.RuntimePath, Type: "bind", Source: s.RuntimePath, Options: ro})
	}
	if o.CacheDir != "" {
		p.Config.CacheDir = CacheDir
		mounts = append(mounts, specs.Mount{Destination: CacheDir, Type: "bind", Source: o.CacheDir, Options: append([]string{"rbind"}, ro[1:]...)})
	}
	// The aesmd socket lets an SGX PAL reach the quoting enclave, as in the original rune.
	if s.Type == enclave.TypeSGX {
		if fi, err := os.Stat("/var/run/aesmd"); err == nil && fi.IsDir() {
			mounts = append(mounts, specs.Mount{Destination: "/var/run/aesmd", Type: "bind", Source: "/var/run/aesmd", Options: []string{"rbind", "rprivate"}})
		}
	}
	spec.Mounts = append(spec.Mounts, mounts...)
	if err := addTEEDevices(spec, s.Type); err != nil {
		return nil, err
	}
	// --argv0 keeps `ps` readable; the loader runs the runelet with only the libraries mounted for it.
	spec.Process.Args = []string{Loader, "--argv0", "init-runelet", "--library-path", LibDir, Binary, "init"}
	return p, nil
}

// ExecArgs are the args of an exec'd runelet that runs args in the enclave.
func ExecArgs(args []string) []string {
	return append([]string{Loader, "--argv0", "init-runelet", "--library-path", LibDir, Binary, "exec", "--"}, args...)
}

func addTEEDevices(spec *specs.Spec, tee string) error {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	for _, path := range enclave.TEEDevices[tee] {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		mode := os.FileMode(0o666)
		spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: path, Type: "c", Major: major, Minor: minor, FileMode: &mode})
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"})
	}
	return nil
}
