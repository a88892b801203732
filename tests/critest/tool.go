package critest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Version is the cri-tools release whose critest runs.
const Version = "v1.34.0"

// Install returns critest Version from cacheDir/critest-<Version>, building it there first when
// it is not there yet. In this release critest is test code (cmd/critest holds a _test.go), so
// `go install` cannot build it: as cri-tools' Makefile does, the module is downloaded from the
// module proxy, copied (the module cache is read-only) and built with `go test -c`.
func Install(goBin, cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "critest-"+Version)
	bin := filepath.Join(dir, "critest")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	work, err := os.MkdirTemp("", "critest-build-")
	if err != nil {
		return "", fmt.Errorf("build dir: %w", err)
	}
	defer os.RemoveAll(work)
	download := exec.Command(goBin, "mod", "download", "-json", "sigs.k8s.io/cri-tools@"+Version)
	download.Dir = work // outside any module, so go.mod is not consulted
	out, err := download.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download sigs.k8s.io/cri-tools@%s: %w", Version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download sigs.k8s.io/cri-tools@%s: %v %s", Version, err, mod.Error)
	}
	src := filepath.Join(work, "cri-tools")
	if b, err := exec.Command("cp", "-R", mod.Dir, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %w\n%s", mod.Dir, err, b)
	}
	if b, err := exec.Command("chmod", "-R", "u+w", src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chmod %s: %w\n%s", src, err, b)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	// Built beside the final name and renamed: a half-written binary is never cached.
	tmp := bin + ".tmp"
	build := exec.Command(goBin, "test", "-c", "-o", tmp, "./cmd/critest")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go test -c ./cmd/critest (cri-tools %s): %w\n%s", Version, err, b)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("install critest: %w", err)
	}
	return bin, nil
}
