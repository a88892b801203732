// Command agentclient plays an unprivileged process inside an enclave container that talks to the
// runelet's agent socket directly, the way the agent protocol (runelet/protocol.go) frames it: a
// 4-byte big-endian length, a JSON request, the caller's stdio as SCM_RIGHTS. It asks PID 1 to exec
// ARGS and reports what it got:
//
//	agentclient [--drop] ARGS…
//
// --drop first makes the process unprivileged (uid and gid 1000, no supplementary groups, an empty
// bounding set, no_new_privs) and re-executes it, so that the caller is unprivileged whoever
// started it.
//
// Output: "=== caller" and the caller's own /proc/self/status, "=== agent" and whatever the
// exec'd process wrote, then "=== result: refused: MESSAGE", "=== result: exit N" or
// "=== result: unreachable: ERROR". It also tries PID 1's own descriptors (/proc/1/fd), which hold
// the host socket's listener, and reports each as "=== pid1 fd: …".
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/inclavare-containers/inclavare-go/agent"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: agentclient ARGS…")
		os.Exit(2)
	}
	if os.Args[1] == "--drop" {
		drop(os.Args[2:])
	}
	status, _ := os.ReadFile("/proc/self/status")
	fmt.Printf("=== caller\n%s", status)
	fmt.Println("=== agent")
	fmt.Println("=== result: " + execVia(agent.ContainerSocket, os.Args[1:]))
	fds, err := os.ReadDir("/proc/1/fd")
	if err != nil {
		fmt.Printf("=== pid1 fd: %v\n", err)
	}
	for _, fd := range fds {
		p := filepath.Join("/proc/1/fd", fd.Name())
		if c, err := net.Dial("unix", p); err == nil {
			c.Close()
			fmt.Printf("=== pid1 fd: connected through %s\n", p)
		}
	}
}

// drop makes this thread unprivileged and executes args on it: credentials, the bounding set and
// no_new_privs belong to a thread, and execve gives the new program the calling thread's.
func drop(args []string) {
	runtime.LockOSThread()
	fail := func(what string, errno unix.Errno) {
		fmt.Fprintf(os.Stderr, "agentclient: %s: %v\n", what, errno)
		os.Exit(3)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		fail("no_new_privs", e)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if _, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != unix.EINVAL {
			fail("drop the bounding set", e)
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		fail("setgroups", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 1000, 1000, 1000); e != 0 {
		fail("setresgid", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 1000, 1000, 1000); e != 0 {
		fail("setresuid", e)
	}
	err := unix.Exec("/proc/self/exe", append([]string{os.Args[0]}, args...), os.Environ())
	fmt.Fprintln(os.Stderr, "agentclient: re-exec:", err)
	os.Exit(3)
}

// execVia sends one exec request to the socket at path and waits for its end.
func execVia(path string, args []string) string {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer c.Close()
	req, _ := json.Marshal(&agent.Request{Op: agent.OpExec, Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"})
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	frame = append(frame, req...)
	if _, _, err := c.WriteMsgUnix(frame, unix.UnixRights(0, 1, 2), nil); err != nil {
		return "unreachable: " + err.Error()
	}
	for {
		var resp agent.Response
		if err := readFrame(c, &resp); err != nil {
			return "unreachable: " + err.Error()
		}
		switch {
		case resp.Error != "":
			return "refused: " + resp.Error
		case resp.ExitCode != nil:
			return fmt.Sprintf("exit %d", *resp.ExitCode)
		}
	}
}

func readFrame(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	data := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
