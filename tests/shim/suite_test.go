package shim

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/verdictd/verdictdtest"
)

const (
	// namespace keeps the suite's containers and cgroups (/<namespace>/<id>) apart.
	namespace = "rune-shim-tests"
	image     = "docker.io/library/rune-shim-busybox:latest"
	// runtimeType selects containerd-shim-rune-v2.
	runtimeType = "io.containerd.rune.v2"
	// clientTimeout bounds every single client command.
	clientTimeout = 90 * time.Second
	// envShimBinary overrides the shim under test (default <repo>/bin/containerd-shim-rune-v2).
	envShimBinary = "SHIM_BINARY"
	// envContainerd and envCtr override containerd and ctr (default: Debian's 1.6 on PATH),
	// to run the suite against another containerd, such as a 1.7 built from source.
	envContainerd = "CONTAINERD_BINARY"
	envCtr        = "CTR_BINARY"
	// envContainerd2 and envCtr2 name the containerd 2.x to test against (default: built
	// with go install into the test cache).
	envContainerd2 = "CONTAINERD2_BINARY"
	envCtr2        = "CTR2_BINARY"
)

// suite is one private containerd whose PATH leads to the shim under test.
type suite struct {
	rune       string // rune binary the shim is configured with
	shim       string // shim binary under test
	containerd string
	ctr        string
	dir        string
	config     string // containerd config
	shimConfig string // shim config (INCLAVARE_SHIM_CONFIG)
	state      string // containerd state (task bundles below)
	sock       string
	runeRoot   string // rune.root of the shim config
	fifoDir    string
	logDir     string
	daemon     *clients.Daemon
	cd         *clients.Containerd
	taskAPI    int // the task API version containerd must use, when known
	clients.Ctr
}

// shimBinary returns the shim under test.
func shimBinary(t *testing.T) string {
	path := os.Getenv(envShimBinary)
	if path == "" {
		root, err := clients.RepoRoot()
		if err != nil {
			clients.Unavailable(t, "locate the shim: %v", err)
		}
		path = filepath.Join(root, "bin", "containerd-shim-rune-v2")
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(abs); err == nil && fi.Mode().Perm()&0o111 == 0 {
			err = fmt.Errorf("%s is not executable", abs)
		}
	}
	if err != nil {
		clients.Unavailable(t, "shim binary (run `make build` or set %s): %v", envShimBinary, err)
	}
	return abs
}

// startSuite starts the suite on containerd 1.x: Debian's 1.6, or the containerd and ctr
// named by CONTAINERD_BINARY and CTR_BINARY (such as a 1.7 built from source).
func startSuite(t *testing.T) *suite {
	t.Helper()
	_, tools := clients.Prerequisites(t, "containerd", "ctr")
	containerd, ctr := tools["containerd"], tools["ctr"]
	if v := os.Getenv(envContainerd); v != "" {
		containerd = v
	}
	if v := os.Getenv(envCtr); v != "" {
		ctr = v
	}
	return startSuiteOn(t, containerd, ctr)
}

// startSuiteOn starts the suite on the given containerd and ctr.
func startSuiteOn(t *testing.T, containerd, ctr string) *suite {
	t.Helper()
	runeBin, tools := clients.Prerequisites(t, "busybox", "go")
	dir, err := os.MkdirTemp("", "rune-shim-")
	if err != nil {
		t.Fatalf("create suite dir: %v", err)
	}
	s := &suite{
		rune:       runeBin,
		shim:       shimBinary(t),
		containerd: containerd,
		ctr:        ctr,
		dir:        dir,
		shimConfig: filepath.Join(dir, "shim.toml"),
		runeRoot:   filepath.Join(dir, "rune"),
		fifoDir:    filepath.Join(dir, "fifo"),
		logDir:     filepath.Join(dir, "logs"),
	}
	s.cd = clients.NewContainerd(containerd, ctr, dir)
	s.config, s.state, s.sock = s.cd.Config, s.cd.State, s.cd.Sock
	s.Ctr = clients.Ctr{Bin: ctr, Sock: s.sock, Namespace: namespace}
	t.Cleanup(func() { s.teardown(t) })
	for _, d := range []string{s.fifoDir, s.logDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("create %s: %v", d, err)
		}
	}
	if err := s.cd.WriteConfig("", false, true); err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.shimConfig, fmt.Sprintf("log_level = \"debug\"\n\n[rune]\npath = %q\nroot = %q\n", s.rune, s.runeRoot))
	s.startDaemon(t, "containerd")

	s.importImage(t, tools["busybox"], image, map[string][]byte{
		"app/hello.wasm": buildWasm(t, tools["go"], "./examples/hello"),
		"app/prog.wasm":  buildWasm(t, tools["go"], "./tests/integration/testdata/enclaveprog"),
	})
	return s
}

// importImage imports into the suite's containerd, as image (a "name:latest" reference), a
// busybox rootfs with files added. The archive stays in the suite's directory (archiveOf: the
// full-disk tests import the suite's image again).
func (s *suite) importImage(t *testing.T, busybox, image string, files map[string][]byte) {
	t.Helper()
	layer, err := clients.BusyboxRootfsTar(busybox)
	if err == nil {
		layer, err = clients.WithFiles(layer, files)
	}
	var archive []byte
	if err == nil {
		archive, err = clients.OCIArchive(layer, "latest")
	}
	if err != nil {
		t.Fatalf("build image %s: %v", image, err)
	}
	archivePath := s.archiveOf(image)
	if err := os.WriteFile(archivePath, archive, 0o644); err != nil {
		t.Fatalf("write OCI archive: %v", err)
	}
	s.MustCtr(t, "images", "import", "--base-name", strings.TrimSuffix(image, ":latest"), archivePath)
}

// planBroker prepares a verdictd that a test starts once it knows its policy (the measurements of
// the containers it created): the free loopback address it will listen on, the leaf of its TLS
// identity (which containers pin), and its process options with the listen address, the sim
// platform certificate rune's enclaves are endorsed under and that identity filled in.
func (s *suite) planBroker(t *testing.T) (addr string, leaf *x509.Certificate, opts verdictdtest.ProcessOptions) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	simRoot, err := clients.Run(context.Background(), clientTimeout, nil, s.rune, "sim-platform-cert")
	if err != nil || simRoot.ExitCode != 0 {
		t.Fatalf("rune sim-platform-cert: %v %s", err, simRoot)
	}
	identity, leaf := verdictdtest.TLSIdentity(t)
	identity.Leaf = leaf
	return addr, leaf, verdictdtest.ProcessOptions{Listen: addr, SimRootPEM: []byte(simRoot.Stdout), Identity: &identity}
}

// archiveOf is where importImage keeps image's archive.
func (s *suite) archiveOf(image string) string {
	return filepath.Join(s.dir, filepath.Base(strings.TrimSuffix(image, ":latest"))+".tar")
}

// startDaemon starts containerd with the shim's directory first on its PATH (containerd
// looks up containerd-shim-rune-v2 there) and the suite's shim configuration.
// name names its log file, <dir>/<name>.log.
func (s *suite) startDaemon(t *testing.T, name string) {
	t.Helper()
	err := s.cd.Start(name, 15*time.Minute,
		"PATH="+filepath.Dir(s.shim)+":"+os.Getenv("PATH"),
		"INCLAVARE_SHIM_CONFIG="+s.shimConfig)
	s.daemon = s.cd.Daemon
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// buildWasm builds a package of the repository for WASI.
func buildWasm(t *testing.T, goBin, pkg string) []byte {
	t.Helper()
	root, err := clients.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "m.wasm")
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s for wasip1: %v\n%s", pkg, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// enclaveEnv makes a container an enclave container running builtin:wasm on the sim TEE.
var enclaveEnv = []string{"--env", "ENCLAVE_TYPE=sim", "--env", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}

// runArgs builds `ctr run` arguments selecting the shim under test.
func (s *suite) runArgs(flags []string, id string, cmd ...string) []string {
	args := append([]string{"run", "--runtime", runtimeType, "--fifo-dir", s.fifoDir}, flags...)
	return append(append(args, image, id), cmd...)
}

// startDetached runs `ctr run -d` with output in a log file, removes task and container
// when the test ends, and returns the log path.
func (s *suite) startDetached(t *testing.T, flags []string, id string, cmd ...string) string {
	t.Helper()
	logPath := filepath.Join(s.logDir, id+".log")
	t.Cleanup(func() { s.Remove(t, id) })
	s.MustCtr(t, s.runArgs(append([]string{"-d", "--log-uri", "file://" + logPath}, flags...), id, cmd...)...)
	return logPath
}

// bundle is where containerd keeps task id's bundle.
func (s *suite) bundle(id string) string {
	return filepath.Join(s.state, "io.containerd.runtime.v2.task", namespace, id)
}

// runeStateRoot is the --root the shim gives rune: rune.root plus the namespace.
func (s *suite) runeStateRoot() string { return filepath.Join(s.runeRoot, namespace) }

// shimPid is the parent of a task's init: the shim is the subreaper of its containers.
func shimPid(t *testing.T, initPid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", initPid))
	if err != nil {
		t.Fatalf("read stat of init %d: %v", initPid, err)
	}
	// The command name may hold spaces and parentheses: fields start after the last ")".
	rest := string(data[bytes.LastIndexByte(data, ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 2 {
		t.Fatalf("short /proc/%d/stat: %q", initPid, data)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("parent pid of %d: %v", initPid, err)
	}
	return ppid
}

func processCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// shimCrash matches what a crashing or racy shim writes to its stderr, which containerd
// copies into its log verbatim (its own lines start with time=).
var shimCrash = regexp.MustCompile(`(?m)^(panic: |fatal error: |WARNING: DATA RACE)`)

// checkShimCrashes fails the suite if any shim panicked, crashed or (when built with
// -race) raced while the daemons ran.
func (s *suite) checkShimCrashes(t *testing.T) {
	logs, _ := filepath.Glob(filepath.Join(s.dir, "containerd*.log"))
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			t.Errorf("read %s: %v", l, err)
			continue
		}
		if loc := shimCrash.FindIndex(data); loc != nil {
			end := min(len(data), loc[0]+4000)
			t.Errorf("%s reports a shim crash or data race:\n%s", filepath.Base(l), data[loc[0]:end])
		}
	}
}

func (s *suite) teardown(t *testing.T) {
	ctx := context.Background()
	if s.daemon != nil {
		if res, err := s.Exec(ctx, nil, "container", "ls", "-q"); err == nil && res.ExitCode == 0 {
			for _, id := range strings.Fields(res.Stdout) {
				s.Remove(t, id)
			}
		}
		if t.Failed() {
			t.Logf("containerd log tail:\n%s", s.daemon.LogTail(60))
		}
		if err := s.daemon.Stop(30 * time.Second); err != nil {
			t.Errorf("teardown: %v", err)
		}
		s.checkShimCrashes(t)
	}
	if err := clients.ForceDeleteAll(ctx, s.rune, s.runeStateRoot()); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if pids, err := clients.KillProcessesUnder(s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	} else if len(pids) > 0 {
		t.Logf("teardown: killed leftover processes %v", pids)
	}
	if err := clients.UnmountUnder(s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Errorf("teardown: remove %s: %v", s.dir, err)
	}
	clients.RemoveEmptyCgroups(namespace)
}
