package critest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

// envShimBinary overrides the shim under test (default <repo>/bin/containerd-shim-rune-v2).
const envShimBinary = "SHIM_BINARY"

// envFocus, when set, runs only the specs matching it (ginkgo -focus) and reports without
// gating: for debugging.
const envFocus = "CRITEST_FOCUS"

// runTimeout bounds one critest run (about two minutes here).
const runTimeout = 15 * time.Minute

// handlers are the runtime handlers critest runs against, runc first: the others are
// compared with it.
var handlers = []string{cri.HandlerRunc, cri.HandlerRune, cri.HandlerSimNative}

// setup is what every run of one containerd generation shares.
type setup struct {
	tools   cri.Tools
	critest string
	gen     int // containerd's major version
}

// prepare checks the prerequisites and builds (or finds cached) crictl, critest and, with
// generation 2, containerd 2.x.
func prepare(t *testing.T, gen int) setup {
	t.Helper()
	runeBin, tools := clients.Prerequisites(t, "containerd", "ctr", "runc", "busybox", "go", "unshare", "nsenter", "ip", "ipcmk")
	cache, err := clients.TestCacheDir()
	if err != nil {
		clients.Unavailable(t, "%v", err)
	}
	var containerd2 string
	if gen == 2 {
		if containerd2, err = clients.InstallContainerd2(tools["go"], cache); err != nil {
			clients.Unavailable(t, "containerd %s: %v", clients.Containerd2Version, err)
		}
		tools["containerd"], tools["ctr"] = filepath.Join(containerd2, "containerd"), filepath.Join(containerd2, "ctr")
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", plugin)); err != nil {
			clients.Unavailable(t, "CNI plugin %s (apt-get install containernetworking-plugins): %v", plugin, err)
		}
	}
	shim := os.Getenv(envShimBinary)
	if shim == "" {
		root, err := clients.RepoRoot()
		if err != nil {
			clients.Unavailable(t, "locate the shim: %v", err)
		}
		shim = filepath.Join(root, "bin", "containerd-shim-rune-v2")
	}
	if fi, err := os.Stat(shim); err != nil || fi.Mode().Perm()&0o111 == 0 {
		clients.Unavailable(t, "shim binary %s (run `make build` or set %s): %v", shim, envShimBinary, err)
	}
	crictl, err := cri.InstallCrictl(tools["go"], cache)
	if err != nil {
		clients.Unavailable(t, "crictl: %v", err)
	}
	critest, err := Install(tools["go"], cache)
	if err != nil {
		clients.Unavailable(t, "critest %s: %v", Version, err)
	}
	return setup{
		tools: cri.Tools{
			Containerd: tools["containerd"], Ctr: tools["ctr"], Runc: tools["runc"], Busybox: tools["busybox"],
			Go: tools["go"], Rune: runeBin, Shim: shim, Crictl: crictl, RuncShimDir: containerd2,
		},
		critest: critest,
		gen:     gen,
	}
}

// runIsolated runs critest against handler on a containerd of its own (isolated, with a CNI
// network and critest's images), removes it, and checks that nothing of it is left.
func (s setup) runIsolated(handler string, extra []string) (res *Result, err error) {
	e, err := cri.StartWith(s.tools, cri.Options{Isolated: true, CNI: true})
	var ids []string
	defer func() {
		if e == nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("%w\ncontainerd log tail:\n%s", err, e.LogTail(40))
		}
		if data, rerr := os.ReadFile(filepath.Join(e.Dir, "containerd.log")); rerr == nil {
			ids = idPattern.FindAllString(string(data), -1)
		}
		err = errors.Join(err, e.Close(), nothingLeft(ids))
	}()
	if err != nil {
		return nil, err
	}
	if err := ImportImages(e); err != nil {
		return nil, err
	}
	return Run(context.Background(), e, s.critest, handler, runTimeout, extra...)
}

// nothingLeft checks the host once an env is closed: no cgroup of its pods and containers (the
// only host objects they make; containerd's CRI puts them in /k8s.io/<id>), and no CNI bridge
// in the host's network (it was made in the env's network namespace).
func nothingLeft(ids []string) error {
	var left []string
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
	hierarchies = append(hierarchies, "/sys/fs/cgroup/k8s.io")
	for _, h := range hierarchies {
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(h, id)); err == nil {
				left = append(left, filepath.Join(h, id))
			}
		}
	}
	if _, err := os.Stat("/sys/class/net/cni-rune"); err == nil {
		left = append(left, "network device cni-rune")
	}
	if len(left) > 0 {
		return fmt.Errorf("left on the host: %s", strings.Join(left, ", "))
	}
	return nil
}

// TestCritest runs critest through Debian's containerd 1.6.
func TestCritest(t *testing.T) { runHandlers(t, 1) }

// TestCritestContainerd2 runs critest through containerd 2.x.
func TestCritestContainerd2(t *testing.T) { runHandlers(t, 2) }

// runHandlers runs critest against every handler, each on its own containerd, all at once:
// most of a run is spent in critest's polls (every 4 s) and each run has its own network
// namespace, so the fixed ports critest listens on do not collide. Then the gate.
func runHandlers(t *testing.T, gen int) {
	s := prepare(t, gen)
	var extra []string
	focus := os.Getenv(envFocus)
	if focus != "" {
		extra = append(extra, "-ginkgo.focus", focus)
	}
	results := make([]*Result, len(handlers))
	errs := make([]error, len(handlers))
	var wg sync.WaitGroup
	start := time.Now()
	for i, h := range handlers {
		wg.Go(func() { results[i], errs[i] = s.runIsolated(h, extra) })
	}
	wg.Wait()
	t.Logf("containerd %d.x: all handlers in %v", gen, time.Since(start).Round(time.Second))
	for i, h := range handlers {
		if errs[i] != nil {
			t.Errorf("handler %s: %v", h, errs[i])
		}
		if results[i] == nil || len(results[i].Specs) == 0 {
			continue
		}
		p, f, sk := results[i].Count()
		t.Logf("handler %s: %d passed, %d failed, %d skipped in %v", h, p, f, sk, results[i].Duration.Round(time.Second))
		for _, n := range results[i].Names() {
			st := results[i].Specs[n]
			switch {
			case failed(st):
				t.Logf("  %s: %s: %s", st.State, n, firstLine(st.Failure))
			case st.State == "skipped" && i == 0 && testing.Verbose():
				t.Logf("  skipped: %s", n)
			}
		}
	}
	if t.Failed() || focus != "" {
		return
	}
	for _, p := range Baseline(results[0], gen) {
		t.Error(p)
	}
	for _, r := range results[1:] {
		for _, p := range Gate(results[0], r, gen) {
			t.Error(p)
		}
	}
}
