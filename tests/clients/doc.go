// Package clients holds integration tests that drive rune through real
// container clients: Debian's dockerd/docker (20.10) and containerd/ctr (1.6)
// with the stock io.containerd.runc.v2 shim pointed at the rune binary.
//
// Each suite starts its own daemon with private directories under a temporary
// directory and tears it down afterwards. The non-test files build the test
// image (a busybox-static rootfs, as a plain tarball and as an OCI archive)
// and manage daemon processes.
//
// This package must never touch a daemon it did not start, never use the
// host's default sockets or state directories, and never kill a process it
// cannot trace back to its own temporary directory.
package clients
