//go:build tools

// Package containerd17 pins the containerd 1.7 commands that build.sh builds.
package containerd17

import (
	_ "github.com/containerd/containerd/cmd/containerd"
	_ "github.com/containerd/containerd/cmd/ctr"
)
