package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor joins namespaces before the Go runtime starts, for `rune init`.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// libcontainer re-executes rune as "rune init" inside the new namespaces; this never returns.
		libcontainer.Init()
	}
}
