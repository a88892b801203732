package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inclavare-containers/inclavare-go/shim/config"
	"github.com/inclavare-containers/inclavare-go/shim/task"
)

// containerd 2.x decodes the features under this type URL (containerd 1.7, whose packages
// this shim uses, does not register it).
func init() {
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "features", "Features")
}

// Version is the shim's version, set at build time with -ldflags "-X …/shim/manager.Version=…".
var Version = "0.1.0-dev"

// featuresTimeout bounds `rune features`.
const featuresTimeout = 10 * time.Second

// Info answers containerd 2.x's `containerd-shim-rune-v2 -info` query (runtime options on
// stdin): the runtime's name and version, the options asked about, and the OCI features
// (runtime-spec features.md) of the rune binary those options configure, from which
// containerd decides e.g. whether user-namespaced pods and idmapped mounts may run.
func (m Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	data, err := io.ReadAll(io.LimitReader(optionsR, maxStdin))
	if err != nil {
		return nil, fmt.Errorf("read runtime options: %w", err)
	}
	var opts *anypb.Any
	if len(data) > 0 {
		opts = &anypb.Any{}
		if err := proto.Unmarshal(data, opts); err != nil {
			return nil, fmt.Errorf("decode runtime options: %w", err)
		}
	}
	req, err := task.DecodeRuntimeOptions(opts)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.Locate(req.ConfigPath, req.ConfigBody, os.Getenv))
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate the shim binary: %w", err)
	}
	runePath, err := cfg.ResolveRune(self)
	if err != nil {
		return nil, err
	}
	f, err := runeFeatures(ctx, runePath)
	if err != nil {
		return nil, err
	}
	withoutIDMappedRootfs(f)
	info := &types.RuntimeInfo{
		Name:    m.name,
		Version: &types.RuntimeVersion{Version: Version},
		Options: opts,
	}
	if info.Features, err = typeurl.MarshalAnyToProto(f); err != nil {
		return nil, fmt.Errorf("encode rune features: %w", err)
	}
	return info, nil
}

// withoutIDMappedRootfs turns idmapped mounts off in f. containerd ≥ 2.0 runs user-namespaced
// pods only on a handler that offers both user namespaces and idmapped mounts, and then asks the
// shim to mount the pod's rootfs with idmapped layers (overlay options uidmap= and gidmap=,
// critest's UserNamespaces NamespaceMode_POD spec). The shim mounts with containerd 1.7's mount
// package, which cannot: such a pod would fail at start ("mount rootfs: invalid argument").
// Without idmap, containerd refuses those pods up front, as it does for runc 1.1's handler.
func withoutIDMappedRootfs(f *features.Features) {
	if f.Linux != nil && f.Linux.MountExtensions != nil && f.Linux.MountExtensions.IDMap != nil {
		off := false
		f.Linux.MountExtensions.IDMap.Enabled = &off
	}
}

// runeFeatures runs `rune features`, which answers as `runc features` does.
func runeFeatures(ctx context.Context, runePath string) (*features.Features, error) {
	ctx, cancel := context.WithTimeout(ctx, featuresTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runePath, "features")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s features: %w: %s", runePath, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var f features.Features
	if err := json.Unmarshal(stdout.Bytes(), &f); err != nil {
		return nil, fmt.Errorf("%s features: %w", runePath, err)
	}
	return &f, nil
}

// RunInfo writes Info's answer to stdout as containerd expects: the marshalled message.
func (m Manager) RunInfo(ctx context.Context) error {
	info, err := m.Info(ctx, os.Stdin)
	if err != nil {
		return err
	}
	data, err := proto.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode runtime info: %w", err)
	}
	_, err = os.Stdout.Write(data)
	return err
}
