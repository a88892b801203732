// Package shim holds the integration tests of containerd-shim-rune-v2: a private
// containerd 1.6 (Debian's) whose PATH leads to the shim under test runs ordinary and
// enclave containers with `ctr run --runtime io.containerd.rune.v2`, and survives its own
// restart while the shim keeps a task running.
//
// The tests need root, containerd, ctr and busybox-static; with CI=true a missing
// prerequisite fails instead of skipping. They must never touch a daemon, socket, state
// directory or process they did not create: everything lives below one temporary
// directory and is removed at the end.
package shim
