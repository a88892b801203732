package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Containerd2Version is the containerd 2.x the suites build from the Go module proxy when
// none is given: 2.3 and later send the shim its bootstrap parameters on stdin and accept
// a task API v3 answer, the protocol containerd-shim-rune-v2 speaks to them.
const Containerd2Version = "v2.4.2"

// Containerd is one private containerd: every path it would otherwise take from the host
// (/var/lib/containerd, /run/containerd, /opt/containerd) points into Dir, so suites run
// beside each other and beside the host's own containerd.
type Containerd struct {
	Binary string // containerd
	Ctr    string // the ctr of the same release
	Dir    string
	Sock   string // gRPC socket; <Sock>.ttrpc and <Sock>.debug beside it
	Root   string
	State  string // task bundles live below <State>/io.containerd.runtime.v2.task
	Config string // the configuration file written by WriteConfig
	Daemon *Daemon
}

// NewContainerd lays out a private containerd in dir; nothing is written or started yet.
func NewContainerd(binary, ctr, dir string) *Containerd {
	return &Containerd{
		Binary: binary,
		Ctr:    ctr,
		Dir:    dir,
		Sock:   filepath.Join(dir, "containerd.sock"),
		Root:   filepath.Join(dir, "root"),
		State:  filepath.Join(dir, "state"),
		Config: filepath.Join(dir, "containerd.toml"),
	}
}

// WriteConfig writes a configuration in the version 2 schema, which containerd 1.6, 1.7 and
// 2.x all read (2.x migrates it), followed by extra (more TOML in the same schema). Unless
// cri is set the CRI plugin is disabled: it would want CNI and a pause image.
func (c *Containerd) WriteConfig(extra string, cri, debug bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "version = 2\nroot = %q\nstate = %q\n", c.Root, c.State)
	if !cri {
		b.WriteString("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n")
	}
	fmt.Fprintf(&b, "\n[grpc]\n  address = %q\n\n[ttrpc]\n  address = \"%[1]s.ttrpc\"\n\n[debug]\n  address = \"%[1]s.debug\"\n", c.Sock)
	if debug {
		b.WriteString("  level = \"debug\"\n")
	}
	fmt.Fprintf(&b, "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(c.Dir, "opt"))
	if extra != "" {
		b.WriteString("\n" + extra)
	}
	if err := os.WriteFile(c.Config, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write containerd config: %w", err)
	}
	return nil
}

// Start starts containerd with env (NAME=value, e.g. a PATH leading to a shim) added to
// its environment, logging to <Dir>/<name>.log, and waits until it answers `ctr version`.
// The daemon is terminated when lifetime runs out.
func (c *Containerd) Start(name string, lifetime time.Duration, env ...string) error {
	argv := append(append([]string{"/usr/bin/env"}, env...), c.Binary, "--config", c.Config)
	d, err := StartDaemon(name, c.Dir, lifetime, argv...)
	if err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	c.Daemon = d
	err = d.WaitReady(60*time.Second, func(ctx context.Context) error {
		res, err := Run(ctx, 10*time.Second, nil, c.Ctr, "-a", c.Sock, "--timeout", "2s", "version")
		if err == nil && res.ExitCode != 0 {
			err = errors.New(res.String())
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	return nil
}

// Bundle is where containerd keeps the bundle of task id in namespace ns.
func (c *Containerd) Bundle(ns, id string) string {
	return filepath.Join(c.State, "io.containerd.runtime.v2.task", ns, id)
}

// InstallContainerd2 returns the directory holding containerd, ctr and
// containerd-shim-runc-v2 of Containerd2Version (cacheDir/containerd-<version>), building
// them there with `go install` first when they are not there yet (a few minutes on this
// machine, once). containerd ≥ 2.3 needs its own runc shim: Debian's 1.6 shim reads the
// bootstrap parameters on its stdin as runtime options and fails.
func InstallContainerd2(goBin, cacheDir string) (dir string, err error) {
	dir = filepath.Join(cacheDir, "containerd-"+Containerd2Version)
	var missing []string
	for _, name := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			missing = append(missing, "github.com/containerd/containerd/v2/cmd/"+name+"@"+Containerd2Version)
		}
	}
	if len(missing) == 0 {
		return dir, nil
	}
	// One go install for all of them: their shared packages are compiled once, in parallel.
	cmd := exec.Command(goBin, append([]string{"install"}, missing...)...)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Dir = os.TempDir() // outside any module, so go.mod is not consulted
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", strings.Join(missing, " "), err, b)
	}
	return dir, nil
}

// TestCacheDir is where suites keep tools they build once (crictl, containerd 2.x).
func TestCacheDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locate the user cache directory: %w", err)
	}
	return filepath.Join(cache, "inclavare-go-tests"), nil
}
