package critest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

// The images critest v1.34.0 runs outside its "Image Manager" specs, under the names it asks
// for, made here from Debian's static busybox and small stand-in programs
// (testdata/webserver, testdata/nonewprivs) instead of being pulled.
const (
	// ImageBusybox is critest's default container image. Debian's busybox has neither pgrep
	// nor ipcs, which specs run: shell-script stand-ins (pgrepScript, ipcsScript) provide them.
	ImageBusybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	// ImageNginx is the web server of the networking, port-forward and PID-namespace specs:
	// testdata/webserver as /usr/sbin/nginx, port 80, with nginx's PID file and "master
	// process" command line.
	ImageNginx = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
	// ImageHostNetNginx is the web server of the host-network port-forward spec, port 12003.
	ImageHostNetNginx = "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"
	// ImageHttpd is the multi-container specs' server: testdata/webserver as httpd, port 80,
	// logging "httpd".
	ImageHttpd = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
	// ImageNoNewPrivs runs testdata/nonewprivs, set-user-ID root.
	ImageNoNewPrivs = "registry.k8s.io/e2e-test-images/nonewprivs:1.3"
	// ImagePredefinedGroup is busybox whose /etc/group puts user 1000 in group 50000 (the
	// SupplementalGroupsPolicy specs; containerd 2.x runs them).
	ImagePredefinedGroup = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
)

// pgrepScript prints the PIDs of the processes named $1 (procps' pgrep NAME), from /proc.
const pgrepScript = `#!/bin/sh
# Stand-in for procps' pgrep NAME (this busybox has none): the PIDs of the processes named NAME.
status=1
for d in /proc/[0-9]*; do
	read -r comm < "$d/comm" 2>/dev/null || continue
	if [ "$comm" = "$1" ]; then echo "${d#/proc/}"; status=0; fi
done
exit $status
`

// ipcsScript prints the System V shared memory segments of the caller's IPC namespace in
// util-linux's `ipcs -m` layout, from /proc/sysvipc/shm.
const ipcsScript = `#!/bin/sh
# Stand-in for util-linux's ipcs -m (this busybox has none), read from /proc/sysvipc/shm.
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
	printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
`

// entry is one file of a layer.
type entry struct {
	mode int64 // permission bits, with set-user-ID and the like
	data []byte
	link string // a hard link to the archive's file link when set
}

// layer returns an uncompressed tar of files (path → entry, without a leading slash) and of
// dirs (mode 0755 unless given), every parent directory included, owned by root, in path
// order so that the same input makes the same image.
func layer(dirs map[string]int64, files map[string]entry) ([]byte, error) {
	all := map[string]int64{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = 0o755
			}
		}
	}
	for d, mode := range dirs {
		all[d] = mode
		addParents(d)
	}
	for f := range files {
		addParents(f)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range slices.Sorted(maps.Keys(all)) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: all[d]}); err != nil {
			return nil, fmt.Errorf("write dir %s: %w", d, err)
		}
	}
	// Files before links: a hard link names a file the archive has already.
	names := slices.SortedFunc(maps.Keys(files), func(a, b string) int {
		if (files[a].link == "") != (files[b].link == "") {
			if files[a].link == "" {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		f := files[name]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: f.mode, Size: int64(len(f.data))}
		if f.link != "" {
			// Extractors (containerd's) apply a link's mode to the file it links to.
			hdr = &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: f.link, Mode: files[f.link].mode}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}

// busyboxFiles is the root file system of ImageBusybox: busybox with a hard link per applet
// in /bin, as busybox's own images have them (masking /bin/ls must not mask what a symbolic
// link would lead to, /bin/busybox), the stand-in scripts, and the users critest names
// (nobody for RunAsUserName).
func busyboxFiles(busybox string, bin []byte) (map[string]int64, map[string]entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	dirs := map[string]int64{
		"bin": 0o755, "etc": 0o755, "root": 0o700, "tmp": 0o1777, "var/run": 0o755,
		"usr/sbin": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555,
	}
	files := map[string]entry{
		"bin/busybox": {mode: 0o755, data: bin},
		"bin/pgrep":   {mode: 0o755, data: []byte(pgrepScript)},
		"bin/ipcs":    {mode: 0o755, data: []byte(ipcsScript)},
		"etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
			"nobody:x:65534:65534:nobody:/home:/bin/false\n")},
		"etc/group": {mode: 0o644, data: []byte("root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n")},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if _, ok := files["bin/"+applet]; !ok {
			files["bin/"+applet] = entry{link: "bin/busybox"}
		}
	}
	return dirs, files, nil
}

// ImportImages builds the images critest needs and imports them into e's containerd.
func ImportImages(e *cri.Env) error {
	bin, err := os.ReadFile(e.Busybox)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	baseDirs, baseFiles, err := busyboxFiles(e.Busybox, bin)
	if err != nil {
		return err
	}
	webserver, err := e.Build(nil, "./tests/critest/testdata/webserver")
	if err != nil {
		return err
	}
	nonewprivs, err := e.Build(nil, "./tests/critest/testdata/nonewprivs")
	if err != nil {
		return err
	}
	path := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	web := func(name, exe string, port int, extra ...string) ocispec.ImageConfig {
		return ocispec.ImageConfig{Env: path, WorkingDir: "/", Entrypoint: append([]string{exe,
			"-name", name, "-port", fmt.Sprint(port)}, extra...)}
	}
	nginxArgs := []string{"-pidfile", "/var/run/nginx.pid", "-exe", "/usr/sbin/nginx", "-title", "nginx: master process nginx -g daemon off;"}
	images := []struct {
		ref    string
		files  map[string]entry
		config ocispec.ImageConfig
	}{
		{ImageBusybox, nil, ocispec.ImageConfig{Env: path, WorkingDir: "/", Cmd: []string{"sh"}}},
		{ImageNginx, map[string]entry{"usr/sbin/nginx": {mode: 0o755, data: webserver}}, web("nginx", "/usr/sbin/nginx", 80, nginxArgs...)},
		{ImageHostNetNginx, map[string]entry{"usr/sbin/nginx": {mode: 0o755, data: webserver}}, web("nginx", "/usr/sbin/nginx", 12003, nginxArgs...)},
		{ImageHttpd, map[string]entry{"usr/local/bin/httpd": {mode: 0o755, data: webserver}}, web("httpd", "/usr/local/bin/httpd", 80)},
		{ImageNoNewPrivs, map[string]entry{"usr/local/bin/nnp": {mode: 0o4755, data: nonewprivs}},
			ocispec.ImageConfig{Env: path, WorkingDir: "/", Entrypoint: []string{"/usr/local/bin/nnp"}}},
		{ImagePredefinedGroup, map[string]entry{
			"etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n")},
			"etc/group":  {mode: 0o644, data: []byte("root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")},
		}, ocispec.ImageConfig{Env: path, WorkingDir: "/", User: "1000", Cmd: []string{"sh"}}},
	}
	for _, img := range images {
		files := maps.Clone(baseFiles)
		maps.Copy(files, img.files)
		l, err := layer(baseDirs, files)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.ref, err)
		}
		if err := e.ImportImage(img.ref, l, img.config); err != nil {
			return err
		}
	}
	return nil
}
