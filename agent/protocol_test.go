package agent

import (
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func socketPair(t testing.TB) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "sp")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return NewConn(c.(*net.UnixConn))
	}
	return mk(fds[0]), mk(fds[1])
}

func TestRoundTripWithFiles(t *testing.T) {
	a, b := socketPair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	req := &Request{Op: OpExec, Args: []string{"a b", "", "ü"}, Env: []string{"X=1"}, Cwd: "/"}
	if err := a.Send(req, w); err != nil {
		t.Fatal(err)
	}
	var got Request
	files, err := b.Recv(&got)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || got.Op != OpExec || strings.Join(got.Args, "|") != "a b||ü" {
		t.Fatalf("got %+v with %d files", got, len(files))
	}
	// The passed descriptor is the pipe's write end.
	if _, err := files[0].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q %v", buf, err)
	}
}

func TestRecvRejects(t *testing.T) {
	for name, frame := range map[string][]byte{
		"oversized": {0x7f, 0xff, 0xff, 0xff},
		"not json":  append([]byte{0, 0, 0, 3}, "{x}"...),
		"truncated": {0, 0, 0, 10, '{'},
		// One reading only: a container process must not be able to say two things at once.
		"duplicate op":       append([]byte{0, 0, 0, 30}, `{"op":"evidence","op":"start"}`...),
		"op in another case": append([]byte{0, 0, 0, 30}, `{"op":"evidence","OP":"start"}`...),
		"unknown member":     append([]byte{0, 0, 0, 29}, `{"op":"evidence","sudo":true}`...),
		"trailing data":      append([]byte{0, 0, 0, 19}, `{"op":"evidence"}{}`...),
	} {
		t.Run(name, func(t *testing.T) {
			a, b := socketPair(t)
			if _, err := a.c.Write(frame); err != nil {
				t.Fatal(err)
			}
			a.c.CloseWrite()
			var req Request
			if _, err := b.Recv(&req); err == nil {
				t.Fatalf("accepted %q as %+v", frame, req)
			}
		})
	}
}

func FuzzRecv(f *testing.F) {
	f.Add(append([]byte{0, 0, 0, 14}, `{"op":"start"}`...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(append([]byte{0, 0, 0, 2}, "{}"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := socketPair(t)
		go func() {
			a.c.Write(data)
			a.c.CloseWrite()
		}()
		var req Request
		files, _ := b.Recv(&req)
		CloseFiles(files)
	})
}

func lookPath(name string, env []string, cwd string) (string, error) {
	return LookPath(name, env, cwd, func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular()
	})
}

func TestLookPath(t *testing.T) {
	if p, err := lookPath("sh", []string{"PATH=/nonexistent:/bin"}, "/"); err != nil || p != "/bin/sh" {
		t.Errorf("lookPath sh: %q %v", p, err)
	}
	if _, err := lookPath("no-such-program", []string{"PATH=/bin"}, "/"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing program: %v", err)
	}
	if p, err := lookPath("./sh", nil, "/bin"); err != nil || p != "/bin/sh" {
		t.Errorf("relative path: %q %v", p, err)
	}
}

// TestSenderCredentials: with SO_PASSCRED on the receiving end, recv reports the process that
// sent a message, whether or not it attached its credentials itself; without it, nobody.
func TestSenderCredentials(t *testing.T) {
	for _, tc := range []struct {
		name             string
		passCred, asSelf bool
		want             bool
	}{
		{"explicit credentials", true, true, true},
		{"credentials the kernel adds", true, false, true},
		{"receiver without SO_PASSCRED", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := socketPair(t)
			if tc.passCred {
				if err := PassCred(b.c); err != nil {
					t.Fatal(err)
				}
			}
			send := a.Send
			if tc.asSelf {
				send = a.SendAsSelf
			}
			big := &Request{Op: OpExec, Env: []string{strings.Repeat("x", 200<<10)}}
			if err := send(big, os.Stdin, os.Stdout, os.Stderr); err != nil {
				t.Fatal(err)
			}
			var got Request
			files, err := b.Recv(&got)
			CloseFiles(files)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want {
				if b.cred != nil {
					t.Fatalf("sender reported without SO_PASSCRED: %+v", b.cred)
				}
				return
			}
			if b.cred == nil || int(b.cred.Pid) != os.Getpid() || int(b.cred.Uid) != os.Getuid() {
				t.Fatalf("sender %+v, want pid %d uid %d", b.cred, os.Getpid(), os.Getuid())
			}
		})
	}
}
