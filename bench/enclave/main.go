// Command enclave-bench measures the lifecycle (create → start → wait → delete) of the same hello
// workload as an enclave container (builtin:wasm on the sim TEE), with the compiled-module cache cold
// and warm and on wazero's interpreter (engine=interpreter: nothing compiled), and as an ordinary
// container (a native binary), alternating them in one run, and prints
// medians and ratios.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type variant struct {
	name   string
	bundle string
	// cold empties the compiled-module cache before every create.
	cold    bool
	samples []sample
}

type sample struct{ create, start, wait, delete time.Duration }

func (s sample) total() time.Duration { return s.create + s.start + s.wait + s.delete }

func main() {
	runeBin := flag.String("rune", "", "rune binary")
	plain := flag.String("plain", "", "bundle of the ordinary container")
	encl := flag.String("enclave", "", "bundle of the enclave container (its rootfs gets /app/tiny.wasm too)")
	n := flag.Int("n", 30, "measured cycles per variant")
	warm := flag.Int("warmup", 2, "unmeasured cycles per variant")
	flag.Parse()
	if *runeBin == "" || *plain == "" || *encl == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	work, err := os.MkdirTemp("", "enclave-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	tiny, err := derivedBundle(*encl, filepath.Join(work, "tiny"), func(process map[string]any) {
		process["args"] = []string{"/app/tiny.wasm"}
	})
	if err == nil {
		err = os.WriteFile(filepath.Join(*encl, "rootfs", "app", "tiny.wasm"), tinyHello("Hello from an enclave container!\n"), 0o644)
	}
	if err != nil {
		fail(err)
	}
	interp, err := derivedBundle(*encl, filepath.Join(work, "interp"), func(process map[string]any) {
		process["env"] = append(process["env"].([]any), "ENCLAVE_RUNTIME_ARGS=engine=interpreter")
	})
	if err != nil {
		fail(err)
	}
	vs := []*variant{
		{name: "ordinary (native hello)", bundle: *plain},
		{name: "enclave Go hello.wasm, warm", bundle: *encl},
		{name: "enclave Go hello.wasm, cold", bundle: *encl, cold: true},
		{name: "enclave tiny hello, warm", bundle: tiny},
		{name: "enclave Go hello.wasm, interpreter", bundle: interp},
	}
	cache := filepath.Join(work, "cache")
	os.Setenv("RUNE_CACHE_DIR", cache)
	os.Setenv("RUNE_SIM_PLATFORM_KEY", filepath.Join(work, "platform-key.pem"))
	root := filepath.Join(work, "state")
	for round := 0; round < *n+*warm; round++ {
		for i := range vs {
			v := vs[(round+i)%len(vs)]
			if v.cold {
				os.RemoveAll(cache)
			}
			s, err := cycle(*runeBin, root, v.bundle, fmt.Sprintf("eb-%d-%d", round, i))
			if err != nil {
				fail(fmt.Errorf("%s: %w", v.name, err))
			}
			if round >= *warm {
				v.samples = append(v.samples, s)
			}
		}
	}
	report(vs)
}

func cycle(runeBin, root, bundle, id string) (sample, error) {
	var s sample
	pidFile := filepath.Join(os.TempDir(), id+".pid")
	defer os.Remove(pidFile)
	var err error
	if s.create, err = timed(runeBin, "--root", root, "create", "--bundle", bundle, "--pid-file", pidFile, id); err != nil {
		return s, err
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return s, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	if s.start, err = timed(runeBin, "--root", root, "start", id); err != nil {
		return s, err
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		return s, fmt.Errorf("wait for %d: %w", pid, err)
	}
	if ws.ExitStatus() != 0 {
		return s, fmt.Errorf("workload exited with %d", ws.ExitStatus())
	}
	s.wait = time.Since(t0) - s.start
	if s.delete, err = timed(runeBin, "--root", root, "delete", id); err != nil {
		return s, err
	}
	return s, nil
}

func timed(name string, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	// A file, not a pipe: a created container keeps rune's stderr open, so a pipe never ends.
	stderr, err := os.CreateTemp("", "enclave-bench-stderr")
	if err != nil {
		return 0, err
	}
	defer os.Remove(stderr.Name())
	defer stderr.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, stderr
	t0 := time.Now()
	err = cmd.Run()
	d := time.Since(t0)
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg, _ := os.ReadFile(stderr.Name())
			return d, fmt.Errorf("%s %v: %v: %s", name, args, err, msg)
		}
		return d, err
	}
	return d, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func pick(v *variant, f func(sample) time.Duration) time.Duration {
	ds := make([]time.Duration, len(v.samples))
	for i, s := range v.samples {
		ds[i] = f(s)
	}
	return median(ds)
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }

func report(vs []*variant) {
	fmt.Printf("%-36s %8s %8s %8s %8s %8s %6s\n", "median ms", "create", "start", "wait", "delete", "total", "n")
	for _, v := range vs {
		fmt.Printf("%-36s %8s %8s %8s %8s %8s %6d\n", v.name,
			ms(pick(v, func(s sample) time.Duration { return s.create })),
			ms(pick(v, func(s sample) time.Duration { return s.start })),
			ms(pick(v, func(s sample) time.Duration { return s.wait })),
			ms(pick(v, func(s sample) time.Duration { return s.delete })),
			ms(pick(v, sample.total)), len(v.samples))
	}
	base := float64(pick(vs[0], sample.total))
	for _, v := range vs[1:] {
		fmt.Printf("ratio %s / ordinary: %.2fx\n", v.name, float64(pick(v, sample.total))/base)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "enclave-bench:", err)
	os.Exit(1)
}

// derivedBundle writes, in dir, a bundle with the enclave bundle's config and rootfs (read-only),
// its process changed by edit.
func derivedBundle(encl, dir string, edit func(process map[string]any)) (string, error) {
	cfg, err := os.ReadFile(filepath.Join(encl, "config.json"))
	if err != nil {
		return "", err
	}
	var spec map[string]any
	if err := json.Unmarshal(cfg, &spec); err != nil {
		return "", err
	}
	edit(spec["process"].(map[string]any))
	root, _ := filepath.Abs(filepath.Join(encl, "rootfs"))
	spec["root"] = map[string]any{"path": root, "readonly": true}
	out, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644)
}
