package task

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// lowSpace is the free room below which a filesystem counts as full for explainNoSpace: a
// create needs a few small files (pid file, state, log), far less than this.
const lowSpace = 64 << 10

// explainNoSpace says what rune could not: rune reports its errors in its log file, which
// lives in the bundle, so when the filesystem of the bundle (or of rune's state) is full the
// log stays empty and containerd's error ends in "unknown". When a create failed and one of
// dirs is (nearly) full, the error names it.
func explainNoSpace(err error, dirs ...string) error {
	if err == nil || errors.Is(err, unix.ENOSPC) || strings.Contains(err.Error(), unix.ENOSPC.Error()) {
		return err
	}
	for _, d := range dirs {
		var st unix.Statfs_t
		if d == "" || unix.Statfs(d, &st) != nil {
			continue
		}
		if free := st.Bavail * uint64(st.Bsize); free < lowSpace || (st.Files > 0 && st.Ffree == 0) {
			return fmt.Errorf("%w (the filesystem of %s has %d bytes and %d inodes free: %w)", err, d, free, st.Ffree, unix.ENOSPC)
		}
	}
	return err
}
