package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxSocketPath is what fits in sockaddr_un.sun_path with its terminating NUL.
const maxSocketPath = 107

// Listen creates a unix socket at path, even when path is longer than a socket address can hold
// (Docker's state directories with 64-character ids are): the address then goes through a
// descriptor of the socket's directory.
func Listen(path string) (*net.UnixListener, error) {
	var ln *net.UnixListener
	err := viaDir(path, func(addr string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, err
	}
	// Unlinking on close would use the short alias, which is gone by then.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// Dial connects to the unix socket at path, however long the path (see Listen).
func Dial(path string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := viaDir(path, func(addr string) error {
		var err error
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	return c, err
}

func viaDir(path string, fn func(addr string) error) error {
	if len(path) <= maxSocketPath {
		return fn(path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	addr := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path)
	if len(addr) > maxSocketPath {
		return fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return fn(addr)
}
