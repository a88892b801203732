// Package cri runs containerd-shim-rune-v2 the way Kubernetes does: through containerd
// 1.6's CRI plugin, driven by crictl. Its non-test part (Env) starts a private containerd
// with CRI enabled, a runtime handler "rune" (io.containerd.rune.v2) beside the default
// "runc", a locally built pause image as the sandbox image, and host-network pods; the
// tests and bench/cri share it.
//
// The tests need root, containerd, ctr, runc, busybox-static and go (crictl is installed
// with `go install` when it is not on PATH); with CI=true a missing prerequisite fails
// instead of skipping. Env must never touch a daemon, socket, state directory or process
// it did not create: everything lives below one temporary directory and is removed by
// Close.
package cri
