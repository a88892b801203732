package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"golang.org/x/sys/unix"
)

// Paths inside an enclave container. They live under /dev, a tmpfs of the container's own, so that
// rune never writes into the image's root file system. ReadOnlyDir (the loader, the runelet, their
// libraries, the PAL) and CacheDir are read-only overlayfs mounts that cannot be made writable.
const (
	Dir         = "/dev/.rune"
	ReadOnlyDir = Dir + "/ro"
	Loader      = ReadOnlyDir + "/ld.so"
	LibDir      = ReadOnlyDir + "/lib"
	Binary      = ReadOnlyDir + "/init-runelet"
	PALDir      = ReadOnlyDir + "/pal"
	CacheDir    = Dir + "/cache"
	// ContainerSocket is the agent socket inside the container, through which its processes ask
	// for evidence and broker resources.
	ContainerSocket = Dir + "/agent.sock"
)

// EnvConfigFD names the descriptor from which PID 1 reads its Config. It is removed from the
// environment before anything else runs.
const EnvConfigFD = "_RUNELET_CONFIG_FD"

// Launch is a process as the container's config describes it.
type Launch struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
}

// Config is everything PID 1 needs, written by rune at create.
type Config struct {
	ID       string           `json:"id"`
	Settings enclave.Settings `json:"settings"`
	// RuntimePath is the PAL's path inside the container (Settings.RuntimePath is the host's).
	RuntimePath string `json:"runtime_path,omitempty"`
	Entrypoint  Launch `json:"entrypoint"`
	// Measurement is what rune measured on the host; the runelet refuses to start an entrypoint that
	// measures differently (the file changed between create and start).
	Measurement string `json:"measurement,omitempty"`
	// EnclaveKey is the sim per-enclave key, endorsed by the host's platform key.
	EnclaveKey []byte `json:"enclave_key,omitempty"`
	// HostListenFD is the descriptor of the listening socket in rune's state directory.
	HostListenFD int `json:"host_listen_fd"`
	// CrashFD, when set, is the write end of a pipe to rune: the Go runtime's crash report goes there,
	// so that a PAL that crashes the runelet is reported as what it is.
	CrashFD int `json:"crash_fd,omitempty"`
	// CacheDir holds runtime artefacts rune prepared on the host (compiled modules), read-only.
	CacheDir string `json:"cache_dir,omitempty"`
}

// ConfigFile writes cfg into a sealed memory file to hand to PID 1: nothing lands on disk, and the
// runelet reads exactly what rune wrote.
func ConfigFile(cfg *Config) (*os.File, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("runelet-config", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd for runelet config: %w", err)
	}
	f := os.NewFile(uintptr(fd), "runelet-config")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("write runelet config: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal runelet config: %w", err)
	}
	return f, nil
}

// ReadConfig reads the Config from the descriptor named in the environment (PID 1).
func ReadConfig() (*Config, error) {
	v := os.Getenv(EnvConfigFD)
	os.Unsetenv(EnvConfigFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("init-runelet runs only as the PID 1 rune sets up (%s=%q)", EnvConfigFD, v)
	}
	f := os.NewFile(uintptr(fd), "runelet-config")
	defer f.Close()
	var cfg Config
	// pread from 0: the descriptor's offset is shared with rune's copy.
	if err := json.NewDecoder(io.NewSectionReader(f, 0, MaxMessage)).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("read runelet config: %w", err)
	}
	return &cfg, nil
}

// InitArgs are PID 1's args: the runelet run by the host's dynamic loader that rune injected,
// with only the libraries injected for it. --argv0 keeps `ps` readable.
func InitArgs() []string {
	return []string{Loader, "--argv0", "init-runelet", "--library-path", LibDir, Binary, "init"}
}

// ExecArgs are the args of an exec'd runelet that runs args in the enclave.
func ExecArgs(args []string) []string {
	return append([]string{Loader, "--argv0", "init-runelet", "--library-path", LibDir, Binary, "exec", "--"}, args...)
}

// Runtime is the enclave runtime PID 1 opens: the settings' own, with a PAL at its path inside
// the container (RuntimePath) once rune injected it.
func (c *Config) Runtime() enclave.RuntimeRef {
	r := c.Settings.Runtime()
	if r.IsPAL() && c.RuntimePath != "" {
		r.PAL = c.RuntimePath
	}
	return r
}
