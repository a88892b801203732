package pal_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

var (
	builder  *paltest.Builder
	showargs string // the testdata/showargs program
)

func TestMain(m *testing.M) {
	// Re-executed as a crash victim (see TestPALCrashIsolated)?
	if lib := os.Getenv(crashLibEnv); lib != "" {
		os.Exit(runCrashChild(lib, os.Getenv(crashArgsEnv)))
	}
	// v1 programs inherit the runelet's environment (TestLifecycle).
	os.Setenv("PAL_TEST_INHERITED", "from-runelet")
	dir, err := os.MkdirTemp("", "pal-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	builder = paltest.NewBuilder(dir)
	showargs = filepath.Join(dir, "showargs")
	if out, err := exec.Command("cc", "-Wall", "-Werror", "-o", showargs, "testdata/showargs.c").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testdata/showargs.c: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// refPath builds the reference PAL for o and returns a fresh copy of it in a
// test directory (a process loads a given PAL file once).
func refPath(t testing.TB, o paltest.Options) string {
	t.Helper()
	built, err := builder.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	p, err := paltest.Copy(built, t.TempDir(), "libpal.so")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loadRef(t testing.TB, o paltest.Options) *pal.Library {
	t.Helper()
	lib, err := pal.Load(refPath(t, o))
	if err != nil {
		t.Fatalf("Load reference PAL %+v: %v", o, err)
	}
	return lib
}
