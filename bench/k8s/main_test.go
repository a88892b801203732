package main

import (
	"os"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/k8s"
)

// TestBenchRuns runs the benchmark once, as small as it goes, so that `make test` keeps it
// working: a pod of each kind starts through the kubelet, runs and goes; memory is read for
// one running pod of each. No figure is judged here.
func TestBenchRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		clients.Unavailable(t, "bench/k8s needs root")
	}
	if _, _, err := k8s.FindTools(k8s.Containerd1); err != nil {
		clients.Unavailable(t, "bench/k8s tools: %v", err)
	}
	if err := run(1, 1, 1, k8s.Containerd1); err != nil {
		t.Fatal(err)
	}
}
