package wasm

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// escapeFixture is a rootfs next to a host directory holding a secret, with symlinks in the
// rootfs that point at the secret every way a path can.
type escapeFixture struct {
	rootfs, host, secret string
}

const secretText = "host secret, never to be read by a guest\n"

func newEscapeFixture(t *testing.T) escapeFixture {
	t.Helper()
	f := escapeFixture{rootfs: newRootfs(t), host: t.TempDir()}
	f.secret = filepath.Join(f.host, "secret")
	writeFile(t, f.secret, []byte(secretText))
	// The rootfs's own file at the path the absolute symlink names, to show where it resolves.
	writeFile(t, filepath.Join(f.rootfs, f.secret), []byte("rootfs copy\n"))
	links := map[string]string{
		"etc/abs":       f.secret,                                          // absolute: resolves inside the rootfs
		"etc/rel":       strings.Repeat("../", 20) + f.secret[1:],          // climbs past the rootfs
		"etc/hostdir":   f.host,                                            // a directory symlink
		"etc/proc":      "/proc/self/root" + f.secret,                      // a magic link
		"app/evil.wasm": filepath.Join(programs.dir, "hello"),              // a module symlinked to the host
		"data/dotdot":   strings.Repeat("../", 20) + filepath.Base(f.host), // relative to a host sibling
	}
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(f.rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestGuestCannotEscapeRootfs(t *testing.T) {
	f := newEscapeFixture(t)
	rt := newRuntime(t, f.rootfs, nil)
	cat := func(paths ...string) result {
		return run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: append([]string{"hello", "cat"}, paths...)}, nil)
	}
	tests := []struct {
		name string
		path string
		want string // stdout; "" means the read must fail
	}{
		{"absolute symlink resolves in the rootfs", "/etc/abs", "rootfs copy\n"},
		{"relative symlink climbing out stops at the rootfs", "/etc/rel", "rootfs copy\n"},
		{"dot-dot path stops at the rootfs", "/../../../../../../.." + f.secret, "rootfs copy\n"},
		{"directory symlink resolves in the rootfs", "/etc/hostdir/secret", "rootfs copy\n"},
		{"magic link refused", "/etc/proc", ""},
		{"relative symlink to a host sibling", "/data/dotdot/secret", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cat(tt.path)
			if strings.Contains(got.stdout, "host secret") {
				t.Fatalf("guest read the host secret through %s", tt.path)
			}
			if tt.want == "" {
				if got.status == 0 {
					t.Errorf("cat %s succeeded: %q", tt.path, got.stdout)
				}
				return
			}
			if got.status != 0 || got.stdout != tt.want {
				t.Errorf("cat %s: %+v, want stdout %q", tt.path, got, tt.want)
			}
		})
	}

	t.Run("guest-made symlink stays inside", func(t *testing.T) {
		got := run(t, rt, enclave.Process{Path: "/app/hello.wasm",
			Args: []string{"hello", "symlink", strings.Repeat("../", 20) + f.secret[1:], "/data/mine"}}, nil)
		if got.status != 0 {
			t.Fatalf("symlink: %+v", got)
		}
		if got := cat("/data/mine"); got.stdout != "rootfs copy\n" {
			t.Errorf("cat /data/mine: %+v", got)
		}
	})
	t.Run("guest cannot create an absolute symlink", func(t *testing.T) {
		got := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "symlink", f.secret, "/data/abs"}}, nil)
		if got.status == 0 {
			t.Error("absolute symlink created")
		}
	})
	t.Run("guest write through a symlink lands in the rootfs", func(t *testing.T) {
		got := run(t, rt, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "write", "/etc/hostdir/secret", "overwritten"}}, nil)
		if got.status != 0 {
			t.Fatalf("write: %+v", got)
		}
		if b, _ := os.ReadFile(f.secret); string(b) != secretText {
			t.Errorf("host secret changed to %q", b)
		}
	})
	t.Run("module path symlinked out of the rootfs", func(t *testing.T) {
		_, err := rt.Spawn(t.Context(), enclave.Process{Path: "/app/evil.wasm"})
		if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
			t.Errorf("Spawn: %v", err)
		}
	})
}

// TestRootFSOperations drives every FS method wazero may call, directly, and checks each
// confines itself to the rootfs.
func TestRootFSOperations(t *testing.T) {
	f := newEscapeFixture(t)
	root, err := openRootFS(f.rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	hostInfo, err := os.Stat(f.secret)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, errno experimentalsys.Errno, want experimentalsys.Errno) {
		t.Helper()
		if errno != want {
			t.Errorf("%s: errno %v, want %v", what, errno, want)
		}
	}

	// Reading and listing.
	file, errno := root.OpenFile("etc/hostname", experimentalsys.O_RDONLY, 0)
	check("open etc/hostname", errno, 0)
	buf := make([]byte, 64)
	n, errno := file.Read(buf)
	check("read", errno, 0)
	if string(buf[:n]) != "enclave-test\n" {
		t.Errorf("read %q", buf[:n])
	}
	n, errno = file.Pread(buf, 8)
	check("pread", errno, 0)
	if string(buf[:n]) != "test\n" {
		t.Errorf("pread %q", buf[:n])
	}
	_, errno = file.Pread(buf, -1)
	check("pread at -1", errno, experimentalsys.EINVAL)
	_, errno = file.Write([]byte("x"))
	check("write to a read-only file", errno, experimentalsys.EBADF)
	check("close", file.Close(), 0)
	_, errno = file.Read(buf)
	check("read after close", errno, experimentalsys.EBADF)

	dir, errno := root.OpenFile("app", experimentalsys.O_RDONLY|experimentalsys.O_DIRECTORY, 0)
	check("open dir", errno, 0)
	var names []string
	for {
		entries, errno := dir.Readdir(2)
		check("readdir", errno, 0)
		for _, e := range entries {
			names = append(names, e.Name)
		}
		if len(entries) < 2 {
			break
		}
	}
	if got := strings.Join(slices.Sorted(slices.Values(names)), ","); got != "evidence.wasm,evil.wasm,hello.wasm,sleeper.wasm" {
		t.Errorf("readdir: %s", got)
	}
	_, errno = dir.Seek(0, 0)
	check("rewind dir", errno, 0)
	again, errno := dir.Readdir(-1)
	check("readdir after rewind", errno, 0)
	if len(again) != len(names) {
		t.Errorf("after rewind %d entries, want %d", len(again), len(names))
	}
	_, errno = dir.Read(buf)
	check("read a dir", errno, experimentalsys.EISDIR)
	dir.Close()

	// Stat follows symlinks inside the rootfs; Lstat does not follow.
	st, errno := root.Stat("etc/rel")
	check("stat etc/rel", errno, 0)
	if st.Ino == hostInfo.Sys().(*syscall.Stat_t).Ino {
		t.Error("stat etc/rel reached the host secret")
	}
	lst, errno := root.Lstat("etc/rel")
	check("lstat etc/rel", errno, 0)
	if lst.Mode&fs.ModeSymlink == 0 {
		t.Errorf("lstat etc/rel mode %v, want a symlink", lst.Mode)
	}
	target, errno := root.Readlink("etc/abs")
	check("readlink", errno, 0)
	if target != f.secret {
		t.Errorf("readlink %q", target)
	}
	_, errno = root.Readlink("etc")
	check("readlink of a dir", errno, experimentalsys.EINVAL)
	_, errno = root.Lstat("..")
	check("lstat ..", errno, 0)

	// Changes through symlinks that point out of the rootfs land inside it.
	check("mkdir", root.Mkdir("etc/hostdir/newdir", 0o755), 0)
	if _, err := os.Stat(filepath.Join(f.host, "newdir")); err == nil {
		t.Error("mkdir through a symlink created a host directory")
	}
	check("chmod through symlink", root.Chmod("etc/abs", 0o600), 0)
	if info, _ := os.Stat(f.secret); info.Mode().Perm() != hostInfo.Mode().Perm() {
		t.Errorf("chmod changed the host secret to %v", info.Mode())
	}
	check("utimens through symlink", root.Utimens("etc/rel", 0, 0), 0)
	if info, _ := os.Stat(f.secret); !info.ModTime().Equal(hostInfo.ModTime()) {
		t.Error("utimens changed the host secret")
	}
	check("link", root.Link("etc/hostname", "data/hostname-link"), 0)
	check("rename", root.Rename("data/hostname-link", "data/renamed"), 0)
	if _, err := os.Stat(filepath.Join(f.rootfs, "data", "renamed")); err != nil {
		t.Errorf("rename: %v", err)
	}
	check("unlink", root.Unlink("data/renamed"), 0)
	check("unlink a symlink, not its target", root.Unlink("etc/hostdir"), 0)
	if _, err := os.Stat(f.host); err != nil {
		t.Errorf("unlinking a symlink touched its target: %v", err)
	}
	check("mkdir data/d", root.Mkdir("data/d", 0o755), 0)
	check("rmdir data/d", root.Rmdir("data/d"), 0)
	check("rmdir a missing dir", root.Rmdir("data/d"), experimentalsys.ENOENT)
	check("symlink absolute", root.Symlink("/etc/hostname", "data/x"), experimentalsys.EPERM)
	check("symlink relative", root.Symlink("../etc/hostname", "data/x"), 0)
	check("rename onto ..", root.Rename("data/x", ".."), experimentalsys.EINVAL)
	check("mkdir /", root.Mkdir("/", 0o755), experimentalsys.EEXIST)

	created, errno := root.OpenFile("data/new.txt", experimentalsys.O_RDWR|experimentalsys.O_CREAT|experimentalsys.O_EXCL, 0o640)
	check("create", errno, 0)
	_, errno = created.Write([]byte("hello"))
	check("write", errno, 0)
	_, errno = created.Pwrite([]byte("J"), 0)
	check("pwrite", errno, 0)
	check("append on", created.SetAppend(true), 0)
	if !created.IsAppend() {
		t.Error("IsAppend false after SetAppend(true)")
	}
	_, errno = created.Seek(0, 0)
	check("seek", errno, 0)
	_, errno = created.Write([]byte("!"))
	check("append write", errno, 0)
	if b, _ := os.ReadFile(filepath.Join(f.rootfs, "data", "new.txt")); string(b) != "Jello!" {
		t.Errorf("after append: %q", b)
	}
	check("truncate", created.Truncate(4), 0)
	check("sync", created.Sync(), 0)
	check("datasync", created.Datasync(), 0)
	check("utimens", created.Utimens(experimentalsys.UTIME_OMIT, 1e9), 0)
	cst, errno := created.Stat()
	check("fstat", errno, 0)
	if cst.Size != 4 || cst.Mode.Perm() != 0o640 || cst.Mtim != 1e9 {
		t.Errorf("created file stat %+v", cst)
	}
	created.Close()
	if b, _ := os.ReadFile(filepath.Join(f.rootfs, "data", "new.txt")); string(b) != "Jell" {
		t.Errorf("file content %q", b)
	}
	_, errno = root.OpenFile("data/new.txt", experimentalsys.O_RDONLY|experimentalsys.O_CREAT|experimentalsys.O_EXCL, 0o640)
	check("exclusive create of an existing file", errno, experimentalsys.EEXIST)
	_, errno = root.OpenFile("etc/abs", experimentalsys.O_RDONLY|experimentalsys.O_NOFOLLOW, 0)
	check("open a symlink with nofollow", errno, experimentalsys.ELOOP)
}

func TestSplitParent(t *testing.T) {
	for _, tt := range []struct{ in, dir, base string }{
		{"", ".", ""},
		{"/", ".", ""},
		{"a", ".", "a"},
		{"/a", "/", "a"},
		{"a/b", "a", "b"},
		{"a/b/", "a", "b"},
		{"a/..", "a", ".."},
		{"a//b", "a/", "b"},
	} {
		dir, base := splitParent(tt.in)
		if dir != tt.dir || base != tt.base {
			t.Errorf("splitParent(%q) = %q, %q; want %q, %q", tt.in, dir, base, tt.dir, tt.base)
		}
	}
}
