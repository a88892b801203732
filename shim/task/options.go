package task

import (
	"fmt"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"

	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// RequestOptions is what a client may put in a create request's runtime options.
type RequestOptions struct {
	// Runc holds runc v2 options (a Go client passing runc options); nil otherwise.
	Runc *options.Options
	// ConfigPath and ConfigBody come from containerd's generic runtime options
	// (`ctr run --runtime-config-path`, or the CRI runtime's options section, which
	// containerd passes whole as ConfigBody when it has no ConfigPath).
	ConfigPath string
	ConfigBody []byte
}

// DecodeRuntimeOptions accepts no options, runc v2 options, or containerd's generic
// runtime options; any other type is refused by name.
func DecodeRuntimeOptions(a typeurl.Any) (RequestOptions, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return RequestOptions{}, nil
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return RequestOptions{}, fmt.Errorf("decode runtime options of type %q: %w", a.GetTypeUrl(), err)
	}
	switch o := v.(type) {
	case *options.Options:
		return RequestOptions{Runc: o}, nil
	case *runtimeoptions.Options:
		return RequestOptions{ConfigPath: o.GetConfigPath(), ConfigBody: o.GetConfigBody()}, nil
	}
	return RequestOptions{}, fmt.Errorf("runtime options of type %q are not supported (want runc options, or runtimeoptions with ConfigPath or ConfigBody)", a.GetTypeUrl())
}

// PinToRune returns the runc v2 options that drive runePath with cfg's settings, keeping
// the client's other runc options (shim cgroup, I/O owner, CRIU paths…). A client that
// names another runtime binary is refused: this shim runs only the configured rune.
func PinToRune(req *options.Options, cfg *config.Config, runePath string) (*options.Options, error) {
	out := &options.Options{}
	if req != nil {
		out = proto.Clone(req).(*options.Options)
	}
	if out.BinaryName != "" && out.BinaryName != runePath {
		return nil, fmt.Errorf("runtime options name binary %q, but this shim runs rune %q only (set rune.path in the shim configuration)", out.BinaryName, runePath)
	}
	out.BinaryName = runePath
	if out.Root == "" {
		out.Root = cfg.Rune.Root
	}
	out.SystemdCgroup = out.SystemdCgroup || cfg.Rune.SystemdCgroup
	return out, nil
}
