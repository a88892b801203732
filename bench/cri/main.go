// Command cri measures containerd-shim-rune-v2 against containerd-shim-runc-v2 through
// containerd 1.6's CRI plugin (the private containerd of tests/cri): pod sandboxes started
// per second (RunPodSandbox until ready, StopPodSandbox, RemovePodSandbox; handlers
// alternating) and the resident memory of the shim serving a running pod with one
// container. It talks CRI over gRPC itself, so no client process start is measured.
//
// It must never touch anything it did not create: the containerd, its pods and its
// directory are its own and are removed at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/inclavare-containers/inclavare-go/tests/clients"
	"github.com/inclavare-containers/inclavare-go/tests/cri"
)

func main() {
	iterations := flag.Int("n", 20, "pod start cycles per handler")
	rssPods := flag.Int("rss-pods", 5, "pods per handler whose shim RSS is measured")
	flag.Parse()
	if err := run(*iterations, *rssPods); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cri:", err)
		os.Exit(1)
	}
}

func run(iterations, rssPods int) error {
	if iterations < 1 || rssPods < 1 {
		return errors.New("-n and -rss-pods must be at least 1")
	}
	tools, err := resolveTools()
	if err != nil {
		return err
	}
	env, err := cri.Start(tools, false)
	defer func() {
		if cerr := env.Close(); cerr != nil {
			fmt.Fprintln(os.Stderr, "bench/cri: cleanup:", cerr)
		}
	}()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+env.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to CRI: %w", err)
	}
	defer conn.Close()
	b := &bench{env: env, rt: runtimeapi.NewRuntimeServiceClient(conn)}
	handlers := []string{cri.HandlerRune, cri.HandlerRunc}

	// One unmeasured cycle each: first use loads binaries and snapshots into the page cache.
	for _, h := range handlers {
		if _, _, err := b.podCycle(h, "warmup"); err != nil {
			return err
		}
	}
	ready := map[string][]float64{}
	cycle := map[string][]float64{}
	for i := 0; i < iterations; i++ {
		order := handlers
		if i%2 == 1 {
			order = []string{handlers[1], handlers[0]}
		}
		for _, h := range order {
			r, c, err := b.podCycle(h, strconv.Itoa(i))
			if err != nil {
				return err
			}
			ready[h] = append(ready[h], ms(r))
			cycle[h] = append(cycle[h], ms(c))
		}
	}
	rss := map[string][]float64{}
	pss := map[string][]float64{}
	for i := 0; i < rssPods; i++ {
		for _, h := range handlers {
			r, p, err := b.shimMemory(h, strconv.Itoa(i))
			if err != nil {
				return err
			}
			rss[h] = append(rss[h], r)
			pss[h] = append(pss[h], p)
		}
	}

	fmt.Printf("containerd 1.6 CRI, host-network pods, %d cycles per handler (alternating), %d pods for memory\n\n", iterations, rssPods)
	fmt.Printf("%-6s %14s %14s %10s %14s %14s\n", "", "runp→ready ms", "cycle ms", "pods/s", "shim RSS KiB", "shim PSS KiB")
	for _, h := range handlers {
		fmt.Printf("%-6s %14.1f %14.1f %10.2f %14.0f %14.0f\n", h, median(ready[h]), median(cycle[h]), 1000/median(cycle[h]), median(rss[h]), median(pss[h]))
	}
	fmt.Printf("\nrune/runc: pods/s %.2f, runp→ready time %.2f, shim RSS %.2f, shim PSS %.2f (medians)\n",
		median(cycle[cri.HandlerRunc])/median(cycle[cri.HandlerRune]),
		median(ready[cri.HandlerRune])/median(ready[cri.HandlerRunc]),
		median(rss[cri.HandlerRune])/median(rss[cri.HandlerRunc]),
		median(pss[cri.HandlerRune])/median(pss[cri.HandlerRunc]))
	return nil
}

// resolveTools finds what tests/cri needs, the way its test does.
func resolveTools() (cri.Tools, error) {
	if os.Geteuid() != 0 {
		return cri.Tools{}, errors.New("needs root")
	}
	var t cri.Tools
	for _, x := range []struct {
		name string
		dst  *string
	}{{"containerd", &t.Containerd}, {"ctr", &t.Ctr}, {"runc", &t.Runc}, {"go", &t.Go}} {
		p, err := clients.LookBinary(x.name)
		if err != nil {
			return t, fmt.Errorf("%w (apt-get install containerd runc)", err)
		}
		*x.dst = p
	}
	var err error
	if t.Busybox, err = clients.BusyboxBinary(); err != nil {
		return t, fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	if t.Rune, err = clients.RuneBinary(); err != nil {
		return t, err
	}
	t.Shim = filepath.Join(filepath.Dir(t.Rune), "containerd-shim-rune-v2")
	if _, err := os.Stat(t.Shim); err != nil {
		return t, fmt.Errorf("shim (run `make build`): %w", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	t.Crictl, err = cri.InstallCrictl(t.Go, filepath.Join(cache, "inclavare-go-tests"))
	return t, err
}

type bench struct {
	env *cri.Env
	rt  runtimeapi.RuntimeServiceClient
}

func (b *bench) podConfig(handler, name string) *runtimeapi.PodSandboxConfig {
	name = "bench-" + handler + "-" + name
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "bench"},
		LogDirectory: filepath.Join(b.env.PodLogs, name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// runPod starts a pod sandbox and checks that it is ready.
func (b *bench) runPod(handler string, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	c, cancel := ctx()
	defer cancel()
	r, err := b.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return "", fmt.Errorf("RunPodSandbox (%s): %w", handler, err)
	}
	st, err := b.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.PodSandboxId})
	if err != nil {
		return r.PodSandboxId, fmt.Errorf("PodSandboxStatus (%s): %w", handler, err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return r.PodSandboxId, fmt.Errorf("pod %s (%s) is %s, want ready", r.PodSandboxId, handler, st.Status.State)
	}
	return r.PodSandboxId, nil
}

func (b *bench) removePod(id string) error {
	c, cancel := ctx()
	defer cancel()
	if _, err := b.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := b.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

// podCycle runs, stops and removes one pod: the time until it was ready, and in all.
func (b *bench) podCycle(handler, name string) (time.Duration, time.Duration, error) {
	start := time.Now()
	id, err := b.runPod(handler, b.podConfig(handler, name))
	ready := time.Since(start)
	if id != "" {
		if rerr := b.removePod(id); err == nil {
			err = rerr
		}
	}
	return ready, time.Since(start), err
}

// shimMemory starts a pod with one busybox container and returns the RSS and PSS (KiB)
// of the shim serving it (the parent of the container's init).
func (b *bench) shimMemory(handler, name string) (rss, pss float64, err error) {
	cfg := b.podConfig(handler, "mem-"+name)
	pod, err := b.runPod(handler, cfg)
	if pod != "" {
		defer func() {
			if rerr := b.removePod(pod); err == nil {
				err = rerr
			}
		}()
	}
	if err != nil {
		return 0, 0, err
	}
	c, cancel := ctx()
	defer cancel()
	cr, err := b.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
			Image:    &runtimeapi.ImageSpec{Image: cri.WorkloadImage},
			Command:  []string{"sleep", "600"},
			LogPath:  "sleeper.log",
			Linux:    &runtimeapi.LinuxContainerConfig{},
		},
		SandboxConfig: cfg,
	})
	if err != nil {
		return 0, 0, fmt.Errorf("CreateContainer (%s): %w", handler, err)
	}
	defer func() {
		// Stop and remove the container before its pod (a ttrpc: closed race otherwise).
		c, cancel := ctx()
		defer cancel()
		if _, rerr := b.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: cr.ContainerId, Timeout: 1}); rerr != nil && err == nil {
			err = fmt.Errorf("StopContainer: %w", rerr)
		}
		if _, rerr := b.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: cr.ContainerId}); rerr != nil && err == nil {
			err = fmt.Errorf("RemoveContainer: %w", rerr)
		}
	}()
	if _, err := b.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		return 0, 0, fmt.Errorf("StartContainer (%s): %w", handler, err)
	}
	st, err := b.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId, Verbose: true})
	if err != nil {
		return 0, 0, fmt.Errorf("ContainerStatus (%s): %w", handler, err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		return 0, 0, fmt.Errorf("container pid from ContainerStatus info (%v): %q", err, st.Info["info"])
	}
	shim, err := parentOf(info.Pid)
	if err != nil {
		return 0, 0, err
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", shim))
	if want := map[string]string{cri.HandlerRune: "containerd-shim-rune-v2", cri.HandlerRunc: "containerd-shim-runc-v2"}[handler]; filepath.Base(exe) != want {
		return 0, 0, fmt.Errorf("container of handler %s is served by %q, want %s", handler, exe, want)
	}
	if rss, err = statusKiB(fmt.Sprintf("/proc/%d/status", shim), "VmRSS:"); err != nil {
		return 0, 0, err
	}
	if pss, err = statusKiB(fmt.Sprintf("/proc/%d/smaps_rollup", shim), "Pss:"); err != nil {
		return 0, 0, err
	}
	return rss, pss, nil
}

func parentOf(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start after the last ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("short stat of %d: %q", pid, data)
	}
	return strconv.Atoi(f[1])
}

// statusKiB reads a "Key:  N kB" line of a /proc file.
func statusKiB(path, key string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s line", path, key)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
