package clients

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Environment variables that configure the suites.
const (
	// EnvRuneBinary overrides the runtime binary under test (default
	// <repo>/bin/rune). Pointing it at runc runs the same suites against runc.
	EnvRuneBinary = "RUNE_BINARY"
	// EnvDockerCLI overrides the docker client binary (default: Debian's
	// /usr/bin/docker, which matches the 20.10 daemon, else docker on PATH).
	EnvDockerCLI = "DOCKER_CLI"
	// EnvBusybox overrides the static busybox used to build the test image.
	EnvBusybox = "BUSYBOX"
)

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// RuneBinary returns the absolute path of the runtime under test: $RUNE_BINARY
// if set, else <repo>/bin/rune. It must exist and be executable.
func RuneBinary() (string, error) {
	path := os.Getenv(EnvRuneBinary)
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("locate rune (set %s or build with `make build`): %w", EnvRuneBinary, err)
		}
		path = filepath.Join(root, "bin", "rune")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("absolute path of %q: %w", path, err)
	}
	if err := checkExecutable(abs); err != nil {
		return "", fmt.Errorf("runtime binary (set %s or run `make build`): %w", EnvRuneBinary, err)
	}
	return abs, nil
}

// DockerCLI returns the docker client to use.
func DockerCLI() (string, error) {
	if p := os.Getenv(EnvDockerCLI); p != "" {
		return p, checkExecutable(p)
	}
	// PATH may hold a newer docker CLI (e.g. /usr/local/bin) than the Debian
	// daemon; prefer the client packaged with the daemon.
	if checkExecutable("/usr/bin/docker") == nil {
		return "/usr/bin/docker", nil
	}
	return LookBinary("docker")
}

// BusyboxBinary returns the static busybox used for the test image.
func BusyboxBinary() (string, error) {
	if p := os.Getenv(EnvBusybox); p != "" {
		return p, checkExecutable(p)
	}
	// Debian's busybox-static installs /bin/busybox; a dynamic busybox would
	// not run inside the image, which has no libc.
	return LookBinary("busybox")
}

// LookBinary finds name on PATH or in the sbin directories, which are not
// always on a non-login root PATH.
func LookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH", name)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err // already names the path
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// Unavailable stops a suite whose prerequisites are missing: in CI
// (CI=true) that is a failure, so a broken runner cannot pass by skipping;
// elsewhere the suite is skipped with the reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("prerequisite missing in CI (CI=true): %s", msg)
	}
	t.Skipf("prerequisite missing: %s", msg)
}

// Prerequisites checks root and the binaries a suite needs, and returns the
// rune binary and the resolved paths of the named tools. It calls Unavailable
// on the first problem.
func Prerequisites(t testing.TB, tools ...string) (runeBin string, paths map[string]string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "the client integration tests need root (uid %d)", os.Geteuid())
	}
	runeBin, err := RuneBinary()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	paths = make(map[string]string, len(tools))
	for _, tool := range tools {
		var p string
		switch tool {
		case "docker":
			p, err = DockerCLI()
		case "busybox":
			p, err = BusyboxBinary()
		default:
			p, err = LookBinary(tool)
		}
		if err != nil {
			Unavailable(t, "%s: %v (apt-get install docker.io containerd runc busybox-static)", tool, err)
		}
		paths[tool] = p
	}
	return runeBin, paths
}
