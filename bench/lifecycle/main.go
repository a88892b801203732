// Command lifecycle measures the OCI container lifecycle of several
// runc-compatible runtimes side by side: create → start → wait for the
// container process to exit → delete, on one busybox bundle, alternating the
// runtimes every iteration so that machine noise falls on all of them alike.
// It reports per-operation medians, ratios to a reference runtime and the
// peak RSS of each runtime command (from wait4 rusage).
//
// It is a benchmark driver, not a test: it asserts nothing about speed. It
// must never touch containers it did not create (every ID it uses carries
// its own PID) and never leaves one behind on error or interrupt.
//
// Usage (normally through run.sh, which prepares the bundle):
//
//	lifecycle -bundle DIR [-n 50] [-warmup 3] [-ref runc] [-samples out.csv] RUNTIME...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "lifecycle: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	bundle := flag.String("bundle", "", "OCI bundle whose rootfs has /bin/true (config.json is rewritten to run `true` without a terminal)")
	iterations := flag.Int("n", 50, "measured iterations per runtime")
	warmup := flag.Int("warmup", 3, "unmeasured iterations per runtime before measuring")
	reference := flag.String("ref", "runc", "label of the runtime the others are compared with")
	samplesPath := flag.String("samples", "", "write every measured cycle to this CSV file")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -bundle DIR [flags] RUNTIME...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *bundle == "" || flag.NArg() == 0 {
		flag.Usage()
		return errors.New("need -bundle and at least one runtime")
	}
	if *iterations < 1 || *warmup < 0 {
		return fmt.Errorf("bad iteration counts: -n %d -warmup %d", *iterations, *warmup)
	}
	bundleDir, err := filepath.Abs(*bundle)
	if err != nil {
		return fmt.Errorf("resolve bundle: %w", err)
	}
	if err := rewriteBundleConfig(filepath.Join(bundleDir, "config.json")); err != nil {
		return err
	}
	runtimes, err := newRuntimes(flag.Args())
	if err != nil {
		return err
	}

	// As a subreaper this process inherits each container's init once the
	// runtime's create command exits (as a containerd shim does), so "wait"
	// is a wait4 on the init and observes its exit status.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}

	workDir, err := os.MkdirTemp("", "lifecycle-bench")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(workDir)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b := &bench{bundle: bundleDir, workDir: workDir, runtimes: runtimes}
	fmt.Printf("lifecycle: %d measured + %d warm-up cycles per runtime, busybox `true`, runtimes rotated every iteration\n",
		*iterations, *warmup)
	if err := b.run(ctx, *iterations, *warmup); err != nil {
		return err
	}
	report(os.Stdout, runtimes, *reference)
	if *samplesPath != "" {
		if err := writeSamples(*samplesPath, runtimes); err != nil {
			return err
		}
	}
	for _, rt := range runtimes {
		if rt.err != nil {
			return fmt.Errorf("%s could not complete the lifecycle", rt.label)
		}
	}
	return nil
}
