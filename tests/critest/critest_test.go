package critest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

// envShimBinary overrides the shim under test (default <repo>/bin/containerd-shim-rune-v2).
const envShimBinary = "SHIM_BINARY"

// envFocus, when set, runs only the specs matching it (ginkgo -focus), for debugging; the
// gate then compares only those.
const envFocus = "CRITEST_FOCUS"

// runTimeout bounds one critest run.
const runTimeout = 20 * time.Minute

// startEnv starts an isolated CRI containerd (Debian's 1.6, or containerd 2.x with
// generation2) with a CNI network and critest's images, and returns it with critest.
func startEnv(t *testing.T, generation2 bool) (*cri.Env, string) {
	t.Helper()
	runeBin, tools := clients.Prerequisites(t, "containerd", "ctr", "runc", "busybox", "go", "unshare", "nsenter", "ip", "ipcmk")
	cache, err := clients.TestCacheDir()
	if err != nil {
		clients.Unavailable(t, "%v", err)
	}
	var containerd2 string
	if generation2 {
		if containerd2, err = clients.InstallContainerd2(tools["go"], cache); err != nil {
			clients.Unavailable(t, "containerd %s: %v", clients.Containerd2Version, err)
		}
		tools["containerd"], tools["ctr"] = filepath.Join(containerd2, "containerd"), filepath.Join(containerd2, "ctr")
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		clients.Unavailable(t, "CNI plugins (apt-get install containernetworking-plugins): %v", err)
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
	e, err := cri.StartWith(cri.Tools{
		Containerd: tools["containerd"], Ctr: tools["ctr"], Runc: tools["runc"], Busybox: tools["busybox"],
		Go: tools["go"], Rune: runeBin, Shim: shim, Crictl: crictl, RuncShimDir: containerd2,
	}, cri.Options{Isolated: true, CNI: true})
	t.Cleanup(func() {
		if t.Failed() && e != nil {
			t.Logf("containerd log tail:\n%s", e.LogTail(60))
		}
		if e != nil {
			if err := e.Close(); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ImportImages(e); err != nil {
		t.Fatal(err)
	}
	return e, critest
}

// TestCritest runs critest through Debian's containerd 1.6.
func TestCritest(t *testing.T) { runHandlers(t, false) }

// TestCritestContainerd2 runs critest through containerd 2.x.
func TestCritestContainerd2(t *testing.T) { runHandlers(t, true) }

func runHandlers(t *testing.T, generation2 bool) {
	e, critest := startEnv(t, generation2)
	var extra []string
	if f := os.Getenv(envFocus); f != "" {
		extra = append(extra, "-ginkgo.focus", f)
	}
	results := map[string]*Result{}
	handlers := []string{cri.HandlerRunc, cri.HandlerRune, cri.HandlerSimNative}
	if h := os.Getenv("CRITEST_HANDLERS"); h != "" {
		handlers = strings.Split(h, ",")
	}
	for _, h := range handlers {
		res, err := Run(context.Background(), e, critest, h, runTimeout, extra...)
		if err != nil {
			t.Fatalf("critest %s: %v", h, err)
		}
		results[h] = res
		p, f, s := res.Count()
		t.Logf("handler %s: %d passed, %d failed, %d skipped in %v", h, p, f, s, res.Duration.Round(time.Second))
		for _, n := range res.Names() {
			if st := res.Specs[n]; st.State != "passed" && st.State != "skipped" {
				t.Logf("  %s %s: %s", st.State, n, firstLine(st.Failure))
			}
		}
	}
	if len(results) < 3 {
		return
	}
	var b strings.Builder
	for _, n := range results[cri.HandlerRunc].Names() {
		a, r, s := results[cri.HandlerRunc].Specs[n].State, results[cri.HandlerRune].Specs[n].State, results[cri.HandlerSimNative].Specs[n].State
		if a != r || a != s {
			fmt.Fprintf(&b, "  runc %s, rune %s, sim-native %s: %s\n", a, r, s, n)
		}
	}
	t.Logf("differences:\n%s", b.String())
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
