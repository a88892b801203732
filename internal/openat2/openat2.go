// Package openat2 is the one openat2(2) call of the project's confined opens (rootfs files under
// RESOLVE_IN_ROOT, cache and layer files under RESOLVE_BENEATH): the kernel answers EAGAIN when a
// rename raced the lookup (and EINTR on a signal), and the call is simply made again, a bounded
// number of times. It decides no resolve flags itself: the caller's OpenHow says what is allowed.
package openat2

import "golang.org/x/sys/unix"

// MaxRetries bounds the retries of one Open.
const MaxRetries = 64

// Open is unix.Openat2(dirfd, path, how), retried on EAGAIN or EINTR at most MaxRetries times.
func Open(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, path, how)
		if (err == unix.EAGAIN || err == unix.EINTR) && i < MaxRetries {
			continue
		}
		return fd, err
	}
}
