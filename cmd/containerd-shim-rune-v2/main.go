//go:build linux

// Command containerd-shim-rune-v2 is the containerd shim (task API v2, runtime type
// io.containerd.rune.v2) that runs containers with rune. containerd starts one per
// container, or one per Kubernetes pod sandbox; it is configured by
// /etc/inclavare-containers/config.toml (see shim/README.md).
package main

import (
	"context"

	// The sandbox API stub containerd 1.7 may ask a pod's shim for.
	_ "github.com/containerd/containerd/runtime/v2/runc/pause"
	"github.com/containerd/containerd/runtime/v2/shim"

	"github.com/inclavare-containers/inclavare-go/shim/manager"
	"github.com/inclavare-containers/inclavare-go/shim/task"
)

// runtimeType is the name containerd knows this shim by.
const runtimeType = "io.containerd.rune.v2"

func main() {
	task.RegisterPlugin()
	shim.RunManager(context.Background(), manager.New(runtimeType))
}
