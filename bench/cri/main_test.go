package main

import (
	"os"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// TestBenchRuns runs the benchmark once, as small as it goes, so that `make test` keeps it
// working: both handlers start, check and remove a pod, and each running pod is served by
// the shim of its handler (run checks the executable). No figure is judged here.
func TestBenchRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		clients.Unavailable(t, "bench/cri needs root")
	}
	if _, err := resolveTools(); err != nil {
		clients.Unavailable(t, "bench/cri tools: %v", err)
	}
	if err := run(1, 1); err != nil {
		t.Fatal(err)
	}
}
