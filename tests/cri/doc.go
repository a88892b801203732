// Package cri runs containerd-shim-rune-v2 the way Kubernetes does: through containerd's CRI
// plugin (Debian's 1.6, and 2.x), driven by crictl. Its non-test part (Env) starts a private
// containerd with CRI enabled, the runtime handlers "rune" (io.containerd.rune.v2) and
// "rune-sim-native" (rune with deploy/'s base runtime spec, which makes every container of a
// pod an enclave container) beside the default "runc", a locally built pause image as the
// sandbox image, and host-network pods; the tests, bench/cri and tests/critest share it. With
// Options.Isolated, containerd, its shims and containers live in private mount, network and
// IPC namespaces (and may then have a CNI bridge network on 198.18.0.0/24).
//
// The tests need root, containerd, ctr, runc, busybox-static and go (crictl is installed
// with `go install` when it is not on PATH); with CI=true a missing prerequisite fails
// instead of skipping. Env must never touch a daemon, socket, state directory or process
// it did not create: everything lives below one temporary directory, or in its private
// namespaces, and is removed by Close.
package cri
