package k8s

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
)

// Images the cluster imports into containerd; none is ever pulled.
const (
	// PauseImage is containerd's sandbox_image, the pause program of tests/cri.
	PauseImage = "docker.io/inclavare-tests/pause:local"
	// WorkloadImage holds busybox and, under /app, hello.wasm, prog.wasm (enclaveprog for
	// WASI), enclaveprog (for Linux, the native enclave runtime), confidential-service and
	// inclavared.
	WorkloadImage = "docker.io/inclavare-tests/k8s-workload:local"
	// NodeImage and HelloWasmImage are the images deploy/ names, built here with what
	// deploy/image/Dockerfile puts in them, so that the manifests run as shipped.
	NodeImage      = "ghcr.io/inclavare-containers/inclavare-node:0.1.0"
	HelloWasmImage = "ghcr.io/inclavare-containers/hello-wasm:0.1.0"
)

// Artifacts are the files the images are made of, built once per test binary.
type Artifacts struct {
	Dir   string
	files map[string][]byte // by name: pause, hello.wasm, prog.wasm, enclaveprog, confidential-service, inclavared, rune-device-plugin
}

// BuildArtifacts builds the programs of the images from the repository into dir, statically
// (the images have no C library).
func BuildArtifacts(goBin, dir string) (*Artifacts, error) {
	root, err := clients.RepoRoot()
	if err != nil {
		return nil, err
	}
	a := &Artifacts{Dir: dir, files: map[string][]byte{}}
	builds := []struct {
		name, pkg string
		env       []string
	}{
		{"pause", "./tests/cri/testdata/pause", nil},
		{"hello.wasm", "./examples/hello", []string{"GOOS=wasip1", "GOARCH=wasm"}},
		{"prog.wasm", "./tests/integration/testdata/enclaveprog", []string{"GOOS=wasip1", "GOARCH=wasm"}},
		{"enclaveprog", "./tests/integration/testdata/enclaveprog", nil},
		{"confidential-service", "./examples/confidential-service", nil},
		{"inclavared", "./cmd/inclavared", nil},
		{"rune-device-plugin", "./cmd/rune-device-plugin", nil},
	}
	for _, b := range builds {
		out := filepath.Join(dir, b.name)
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"), b.env...)
		if o, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s %v: %w\n%s", b.pkg, b.env, err, o)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		a.files[b.name] = data
	}
	return a, nil
}

// File is the built program name.
func (a *Artifacts) File(name string) string { return filepath.Join(a.Dir, name) }

// ImportImages imports every image into the CRI namespace.
func (c *Cluster) ImportImages(a *Artifacts, busybox string) error {
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	pause, err := clients.WithFiles(nil, map[string][]byte{"pause": a.files["pause"]})
	if err != nil {
		return err
	}
	if err := c.importImage(PauseImage, pause, ocispec.ImageConfig{Entrypoint: []string{"/pause"}}); err != nil {
		return err
	}

	bb, err := busyboxLayer(busybox)
	if err != nil {
		return err
	}
	app := map[string][]byte{}
	for _, name := range []string{"hello.wasm", "prog.wasm", "enclaveprog", "confidential-service", "inclavared"} {
		app["app/"+name] = a.files[name]
	}
	workload, err := clients.WithFiles(bb, app)
	if err != nil {
		return err
	}
	if err := c.importImage(WorkloadImage, workload, ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}, WorkingDir: "/"}); err != nil {
		return err
	}

	// deploy/image/Dockerfile's hello-wasm: the module alone.
	hello, err := clients.WithFiles(nil, map[string][]byte{"app/hello.wasm": a.files["hello.wasm"]})
	if err != nil {
		return err
	}
	if err := c.importImage(HelloWasmImage, hello, ocispec.ImageConfig{Cmd: []string{"/app/hello.wasm"}}); err != nil {
		return err
	}

	// deploy/image/Dockerfile's node: the installer with its artifacts (the node binaries
	// this build made: bin/, and the containerd drop-ins), and the device plugin.
	node := map[string][]byte{"usr/local/bin/rune-device-plugin": a.files["rune-device-plugin"]}
	for _, b := range []string{"rune", "init-runelet", "containerd-shim-rune-v2", "rune-carrier-helper"} {
		data, err := os.ReadFile(filepath.Join(c.Bin, b))
		if err != nil {
			return fmt.Errorf("node image: %w (run make build)", err)
		}
		node["opt/inclavare-containers/artifacts/bin/"+b] = data
	}
	for _, f := range []string{"containerd-1.6-1.7.toml", "containerd-2.x.toml"} {
		data, err := os.ReadFile(filepath.Join(root, "deploy", "containerd", f))
		if err != nil {
			return err
		}
		node["opt/inclavare-containers/artifacts/containerd/"+f] = data
	}
	installer, err := os.ReadFile(filepath.Join(root, "deploy", "installer", "install.sh"))
	if err != nil {
		return err
	}
	node["usr/local/bin/rune-deploy"] = installer
	nodeLayer, err := clients.WithFiles(bb, node)
	if err != nil {
		return err
	}
	return c.importImage(NodeImage, nodeLayer, ocispec.ImageConfig{
		Env: []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"/usr/local/bin/rune-deploy", "run"}, WorkingDir: "/",
	})
}

// busyboxLayer is a root filesystem with the static busybox and every applet it has (the
// installer's shell script needs awk, sed, cmp, nsenter…), /tmp and the usual mount points.
func busyboxLayer(busybox string) ([]byte, error) {
	base, err := clients.BusyboxRootfsTar(busybox)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	have := map[string]bool{}
	for _, a := range clients.BusyboxApplets {
		have[a] = true
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(base))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the busybox rootfs: %w", err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	for _, a := range strings.Fields(string(out)) {
		if have[a] || a == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// importImage imports a one-layer image into the CRI namespace as ref (name:tag).
func (c *Cluster) importImage(ref string, layer []byte, config ocispec.ImageConfig) error {
	name, tag, _ := strings.Cut(ref, ":")
	archive, err := clients.OCIArchiveWithConfig(layer, tag, config)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	path := filepath.Join(c.Dir, "image.tar")
	if err := os.WriteFile(path, archive, 0o644); err != nil {
		return fmt.Errorf("write image %s: %w", ref, err)
	}
	defer os.Remove(path)
	if _, err := c.Ctr("images", "import", "--base-name", name, path); err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	return nil
}
