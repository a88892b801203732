package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// fullDiskNamespace keeps the full-disk containers' bundles (and rune state) apart: they live
// on one small tmpfs mounted over the namespace's directories.
const fullDiskNamespace = "rune-shim-fulldisk"

// maxFullDiskPages bounds the sweep: a container needs far less room than this.
const maxFullDiskPages = 64

// testFullDisk runs a container with 0, 1, 2, … free pages on the filesystem holding its bundle
// and rune's state for it, until one runs. Whatever write a given amount of room makes fail
// (containerd's config.json, the shim's address or options, rune's pid file or state), each
// failing attempt must fail with "no space left on device" and leave nothing: no task, no
// bundle, no shim or container process, no rune state, no cgroup, no mount. The attempt that
// runs must run normally.
func testFullDisk(t *testing.T, s *suite, flags []string, cmd []string, wantOut string) {
	ns := fullDiskNamespace
	// containerd puts each container's cgroup below one named after the namespace.
	clients.RemoveEmptyCgroupsAtEnd(t, ns)
	tmpfs := filepath.Join(s.dir, "fulldisk-"+strings.ReplaceAll(t.Name(), "/", "-"))
	bundles := filepath.Join(s.state, "io.containerd.runtime.v2.task", ns)
	runeState := filepath.Join(s.runeRoot, ns)
	for _, d := range []string{tmpfs, bundles, runeState} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = clients.UnmountUnder(tmpfs) })
	for dst, sub := range map[string]string{bundles: "bundles", runeState: "rune"} {
		src := filepath.Join(tmpfs, sub)
		if err := os.Mkdir(src, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s: %v", dst, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
	}
	ctr := clients.Ctr{Bin: s.ctr, Sock: s.sock, Namespace: ns}.CtrCmd
	if res := ctr(t, "images", "import", "--base-name", strings.TrimSuffix(image, ":latest"), s.archiveOf(image)); res.ExitCode != 0 {
		t.Fatalf("import the image into namespace %s: %s", ns, res)
	}
	filler := filepath.Join(tmpfs, "filler")
	for pages := 0; pages <= maxFullDiskPages; pages++ {
		if err := fill(filler, tmpfs, pages); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("full-%d", pages)
		args := append([]string{"run", "--rm", "--runtime", runtimeType, "--fifo-dir", s.fifoDir}, flags...)
		res := ctr(t, append(append(args, image, id), cmd...)...)
		if res.ExitCode == 0 {
			if !strings.HasPrefix(res.Stdout, wantOut) {
				t.Fatalf("with %d free pages: ran, but printed %q, want %q first", pages, res.Stdout, wantOut)
			}
			t.Logf("the first container to run had %d free pages (4 KiB) for its bundle and rune state", pages)
			s.checkNothingLeft(t, ns, id, tmpfs)
			return
		}
		t.Logf("%d free pages: %s", pages, strings.TrimSpace(res.Stderr))
		if !strings.Contains(res.Stderr, "no space left on device") {
			t.Fatalf("with %d free pages: %s; want an error saying no space left on device", pages, res)
		}
		// ctr run --rm removes the container it created; a failed create leaves no task.
		if res := ctr(t, "container", "rm", id); res.ExitCode == 0 {
			t.Logf("with %d free pages: container record %s was left by ctr (removed)", pages, id)
		}
		s.checkNothingLeft(t, ns, id, tmpfs)
	}
	t.Fatalf("no container ran with up to %d free pages", maxFullDiskPages)
}

// fill makes the filesystem of dir have exactly pages free 4 KiB pages, with one file.
func fill(path, dir string, pages int) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if n := free - int64(pages)*4096; n > 0 {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
			return fmt.Errorf("fallocate %d bytes in %s: %w", n, dir, err)
		}
	}
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if got := int64(st.Bavail) * st.Bsize; got != int64(pages)*4096 {
		return fmt.Errorf("%s has %d bytes free, want %d", dir, got, pages*4096)
	}
	return nil
}

// checkNothingLeft: no task, no bundle, no process, no rune state, no cgroup and no mount of
// container id in namespace ns.
func (s *suite) checkNothingLeft(t *testing.T, ns, id, tmpfs string) {
	t.Helper()
	if clients.HasLine(clients.Ctr{Bin: s.ctr, Sock: s.sock, Namespace: ns}.MustCtr(t, "task", "ls", "-q"), id) {
		t.Errorf("%s: task still listed", id)
	}
	bundle := filepath.Join(s.state, "io.containerd.runtime.v2.task", ns, id)
	for _, p := range []string{bundle, filepath.Join(s.runeRoot, ns, id)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s: %s left behind", id, p)
		}
	}
	entries, _ := os.ReadDir(tmpfs)
	for _, e := range entries {
		if e.Name() != "filler" && e.Name() != "bundles" && e.Name() != "rune" {
			t.Errorf("%s: %s left on the full filesystem", id, e.Name())
		}
	}
	for _, sub := range []string{"bundles", "rune"} {
		if left, _ := os.ReadDir(filepath.Join(tmpfs, sub)); len(left) > 0 {
			t.Errorf("%s: %s left in %s", id, left[0].Name(), sub)
		}
	}
	// A shim whose start containerd gave up on is stopped asynchronously: give it time to go
	// before calling it left behind (a bound on a wait, not on speed: CI once needed more than 5 s
	// on a loaded machine).
	pids, _ := processesNaming(id, ns)
	start := time.Now()
	for deadline := start.Add(30 * time.Second); len(pids) > 0 && time.Now().Before(deadline); pids, _ = processesNaming(id, ns) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(pids) > 0 {
		t.Errorf("%s: processes left after %v: %v %q", id, time.Since(start).Round(time.Second), pids, processCmdline(pids[0]))
	}
	for _, h := range []string{"memory", "pids", "cpu", "freezer", "devices"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, ns, id)); err == nil {
			t.Errorf("%s: cgroup %s/%s/%s left behind", id, h, ns, id)
		}
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(data), bundle) {
		t.Errorf("%s: a mount under %s is left", id, bundle)
	}
}

// processesNaming lists processes whose command line holds both id and ns (a shim serving the
// container has -namespace ns -id id; rune processes name the id and the root).
func processesNaming(id, ns string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		argv := strings.Split(processCmdline(pid), " ")
		var hasID, hasNS bool
		for _, a := range argv {
			hasID = hasID || a == id
			hasNS = hasNS || a == ns || strings.Contains(a, "/"+ns+"/") || strings.HasSuffix(a, "/"+ns)
		}
		if hasID && hasNS {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
