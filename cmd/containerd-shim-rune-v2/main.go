//go:build linux

// Command containerd-shim-rune-v2 is the containerd shim (task API v2 for containerd 1.x,
// v3 for containerd >= 2.3; runtime type
// io.containerd.rune.v2) that runs containers with rune. containerd starts one per
// container, or one per Kubernetes pod sandbox; it is configured by
// /etc/inclavare-containers/config.toml (see shim/README.md).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/runtime/v2/shim"

	"github.com/inclavare-containers/inclavare-go/shim/manager"
	"github.com/inclavare-containers/inclavare-go/shim/task"
)

// runtimeType is the name containerd knows this shim by.
const runtimeType = "io.containerd.rune.v2"

func main() {
	m := manager.New(runtimeType)
	// containerd 2.x asks a shim binary for its runtime info with a lone -info flag, which
	// containerd 1.7's shim package (what this shim is built on) does not know.
	if len(os.Args) == 2 && (os.Args[1] == "-info" || os.Args[1] == "--info") {
		if err := m.RunInfo(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[0], err)
			os.Exit(1)
		}
		return
	}
	task.RegisterPlugin()
	shim.RunManager(context.Background(), m)
}
