package enclavehost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/inclavare-containers/inclavare-go/agent"
	"github.com/inclavare-containers/inclavare-go/attestation/tee"
	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Injected is an enclave container whose spec was rewritten to run the runelet as PID 1, and the
// Config that PID 1 is to get.
type Injected struct {
	Config agent.Config
}

// SecretsDirSize bounds each in-memory directory of broker secrets (bytes).
const SecretsDirSize = 16 << 20

// InjectOptions are the host facts Inject needs.
type InjectOptions struct {
	// Runelet is the host path of the init-runelet binary.
	Runelet string
	// PAL is the resolved host path of the PAL that ResolvePAL accepted; "" for a built-in runtime.
	PAL string
	// CacheDir, when set, is a host directory of runtime artefacts to expose, read-only and
	// immutable, at agent.CacheDir.
	CacheDir string
	// PALDirs are the host's allowed PAL directories ([enclave] pal_dirs): the PAL must lie in
	// one, and a PAL's DT_RUNPATH is honoured inside them (see ResolveClosure).
	PALDirs []string
	// CopyDir is where the private copies of the injected files are kept; "" is DefaultCopyDir.
	CopyDir string
}

// Inject rewrites spec so that PID 1 is the runelet: it gives the container, at agent.ReadOnlyDir, the
// runelet, the host's dynamic loader, their libraries and the PAL, adds the TEE's devices, and
// moves the original process into the runelet's Config. The spec's confinement (namespaces,
// cgroups, capabilities, seccomp, user, no-new-privileges) is left exactly as the user wrote it.
//
// No host file is bind-mounted: a container with CAP_SYS_ADMIN could remount a bind read-write and
// write the host's file. The files are private copies (copyStore), and agent.ReadOnlyDir (like agent.CacheDir)
// is an overlayfs mount with lower layers only: the kernel refuses to make such a mount writable,
// whatever the container's privileges.
func Inject(spec *specs.Spec, s *enclave.Settings, o InjectOptions) (*Injected, error) {
	if spec.Process == nil {
		return nil, errors.New("enclave container without a process")
	}
	bins := []string{o.Runelet}
	if (o.PAL != "") != s.Runtime().IsPAL() {
		return nil, fmt.Errorf("enclave runtime %s: the PAL was not checked (ResolvePAL)", s.RuntimePath)
	}
	if o.PAL != "" {
		bins = append(bins, o.PAL)
	}
	closure, err := ResolveClosure(o.PALDirs, bins...)
	if err != nil {
		return nil, err
	}
	if closure.Interpreter == "" {
		return nil, fmt.Errorf("%s is statically linked; the runelet needs the dynamic loader to load PALs", o.Runelet)
	}
	runelet, err := filepath.EvalSymlinks(o.Runelet)
	if err != nil {
		return nil, fmt.Errorf("init-runelet: %w", err)
	}
	files := []struct{ src, rel string }{
		{closure.Interpreter, filepath.Base(agent.Loader)},
		{runelet, filepath.Base(agent.Binary)},
	}
	names := make([]string, 0, len(closure.Libraries))
	for n := range closure.Libraries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, struct{ src, rel string }{closure.Libraries[n], filepath.Join(filepath.Base(agent.LibDir), n)})
	}
	p := &Injected{Config: agent.Config{
		Settings:   *s,
		Entrypoint: agent.Launch{Args: spec.Process.Args, Env: spec.Process.Env, Cwd: spec.Process.Cwd},
	}}
	if o.PAL != "" {
		base := filepath.Base(s.RuntimePath)
		p.Config.RuntimePath = filepath.Join(agent.PALDir, base)
		files = append(files, struct{ src, rel string }{o.PAL, filepath.Join(filepath.Base(agent.PALDir), base)})
	}
	copyDir := o.CopyDir
	if copyDir == "" {
		copyDir = DefaultCopyDir
	}
	store, err := openCopyStore(copyDir)
	if err != nil {
		return nil, err
	}
	defer store.close()
	layers := make([]string, 0, len(files))
	for _, f := range files {
		l, err := store.layer(f.src, f.rel)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	ro, err := readOnlyOverlay(agent.ReadOnlyDir, layers)
	if err != nil {
		return nil, err
	}
	// The directory belongs to the container's user: PID 1 runs as that user and creates its
	// agent socket here (the read-only parts are mounts on top, which the user cannot change).
	owner := func(opts ...string) []string {
		if u := spec.Process.User; u.UID != 0 || u.GID != 0 {
			opts = append(opts, fmt.Sprintf("uid=%d", u.UID), fmt.Sprintf("gid=%d", u.GID))
		}
		return opts
	}
	mounts := []specs.Mount{
		{Destination: agent.Dir, Type: "tmpfs", Source: "tmpfs", Options: owner("nosuid", "nodev", "noexec", "mode=755", "size=1m")},
		ro,
	}
	// Each directory that receives broker secrets is a private, in-memory file system of the
	// workload's user (its image content, if any, is hidden): the plaintext never touches a disk
	// the host keeps, and other users of the container cannot read it.
	for _, d := range s.KBS.SecretDirs() {
		mounts = append(mounts, specs.Mount{Destination: d, Type: "tmpfs", Source: "tmpfs",
			Options: owner("nosuid", "nodev", "noexec", "mode=700", "size="+strconv.Itoa(SecretsDirSize))})
	}
	// Each encrypted layer's target is a private, in-memory file system that the enclave fills
	// after attesting: the layer's plaintext never touches a disk the host keeps. Its code may
	// run (no noexec).
	if s.KBS != nil {
		for _, l := range s.KBS.Layers {
			mounts = append(mounts, specs.Mount{Destination: l.Target, Type: "tmpfs", Source: "tmpfs",
				Options: owner("nosuid", "nodev", "mode=755")})
		}
	}
	if o.CacheDir != "" {
		p.Config.CacheDir = agent.CacheDir
		cache, err := readOnlyOverlay(agent.CacheDir, []string{o.CacheDir, store.empty})
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, cache)
	}
	// The aesmd socket lets an SGX PAL reach the quoting enclave, as in the original rune.
	if s.Type == tee.SGX {
		if fi, err := os.Stat(tee.AESMSocketDir); err == nil && fi.IsDir() {
			mounts = append(mounts, specs.Mount{Destination: tee.AESMSocketDir, Type: "bind", Source: tee.AESMSocketDir, Options: []string{"rbind", "rprivate"}})
		}
	}
	spec.Mounts = append(spec.Mounts, mounts...)
	if err := addTEEDevices(spec, s.Type); err != nil {
		return nil, err
	}
	spec.Process.Args = agent.InitArgs()
	return p, nil
}

// maxMountData is what mount(2) accepts as the options of an overlayfs mount (one page, less the
// options other than lowerdir).
const maxMountData = 4096 - 128

// readOnlyOverlay is an overlayfs mount at dest of the layers (the first on top), with no upper
// layer: overlayfs then refuses every write and every remount read-write (EROFS), whatever the
// mount flags and the caller's capabilities.
func readOnlyOverlay(dest string, layers []string) (specs.Mount, error) {
	esc := make([]string, len(layers))
	for i, l := range layers {
		// overlayfs splits options at ',' and layers at ':'; a backslash escapes either.
		esc[i] = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`).Replace(l)
	}
	lower := "lowerdir=" + strings.Join(esc, ":")
	if len(lower) > maxMountData {
		return specs.Mount{}, fmt.Errorf("%s: %d layers are too many for one overlayfs mount (%d bytes of options, at most %d)", dest, len(layers), len(lower), maxMountData)
	}
	return specs.Mount{Destination: dest, Type: "overlay", Source: "overlay", Options: []string{"ro", "nosuid", "nodev", lower}}, nil
}

func addTEEDevices(spec *specs.Spec, t tee.TEE) error {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	for _, path := range tee.Devices(t) {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		mode := os.FileMode(0o666)
		spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: path, Type: "c", Major: major, Minor: minor, FileMode: &mode})
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"})
	}
	return nil
}
