package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RuntimeState is the part of `<runtime> state` output the suites check.
type RuntimeState struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}

// QueryState runs `<runtime> --root root state id` and decodes its output.
func QueryState(ctx context.Context, runtime, root, id string) (RuntimeState, error) {
	res, err := Run(ctx, 30*time.Second, nil, runtime, "--root", root, "state", id)
	if err != nil {
		return RuntimeState{}, err
	}
	if res.ExitCode != 0 {
		return RuntimeState{}, fmt.Errorf("%s --root %s state %s: %s", runtime, root, id, res)
	}
	var st RuntimeState
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		return RuntimeState{}, fmt.Errorf("decode state of %s: %w (output %q)", id, err, res.Stdout)
	}
	return st, nil
}

// ShimOptions is the runc v2 shim's record of its runtime options, written
// as options.json in each task bundle.
type ShimOptions struct {
	BinaryName string `json:"binary_name"`
	Root       string `json:"root"`
}

// ReadShimOptions reads <bundle>/options.json.
func ReadShimOptions(bundle string) (ShimOptions, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "options.json"))
	if err != nil {
		return ShimOptions{}, fmt.Errorf("read shim options: %w", err)
	}
	var opts ShimOptions
	if err := json.Unmarshal(data, &opts); err != nil {
		return ShimOptions{}, fmt.Errorf("decode %s/options.json: %w", bundle, err)
	}
	return opts, nil
}

// ForceDeleteAll runs `<runtime> --root root delete --force` for every
// container state directory left in root, so no container outlives a suite
// whose daemon or shim died.
func ForceDeleteAll(ctx context.Context, runtime, root string) error {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list runtime root: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		res, err := Run(ctx, 30*time.Second, nil, runtime, "--root", root, "delete", "--force", e.Name())
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("delete --force %s: %s", e.Name(), res)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveEmptyCgroups removes the cgroup directory name (a parent the
// runtime created for a suite's containers, such as containerd's
// /<namespace>) from each cgroup hierarchy, if it is empty. rmdir fails on
// a non-empty cgroup, so nothing in use can be removed.
func RemoveEmptyCgroups(name string) {
	if name == "" || strings.Contains(name, "/") {
		return
	}
	_ = os.Remove(filepath.Join("/sys/fs/cgroup", name)) // pure cgroup v2
	hierarchies, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	for _, h := range hierarchies {
		if h.IsDir() {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", h.Name(), name))
		}
	}
}
