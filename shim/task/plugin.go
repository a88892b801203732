package task

import (
	"errors"
	"fmt"

	"github.com/containerd/containerd/pkg/shutdown"
	"github.com/containerd/containerd/plugin"
	"github.com/containerd/containerd/runtime/v2/shim"
)

// errNoService is returned when the shim's plugin set lacks what the task service needs.
var errNoService = errors.New("shim plugin set lacks the event publisher or the shutdown service")

// RegisterPlugin registers the task service as the shim's "task" TTRPC plugin, which
// runtime/v2/shim serves once the shim runs.
func RegisterPlugin() {
	plugin.Register(&plugin.Registration{
		Type:     plugin.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugin.EventPlugin, plugin.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (interface{}, error) {
			pp, err := ic.GetByID(plugin.EventPlugin, "publisher")
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errNoService, err)
			}
			ss, err := ic.GetByID(plugin.InternalPlugin, "shutdown")
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errNoService, err)
			}
			publisher, ok := pp.(shim.Publisher)
			if !ok {
				return nil, fmt.Errorf("%w: publisher is a %T", errNoService, pp)
			}
			sd, ok := ss.(shutdown.Service)
			if !ok {
				return nil, fmt.Errorf("%w: shutdown is a %T", errNoService, ss)
			}
			return New(ic.Context, publisher, sd)
		},
	})
}
