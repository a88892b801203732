package wasm

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// TestInterpreterEngine: engine=interpreter runs a Go-built module with the same output and the
// same measurement as the compiler, writes and reads no code cache even when the runtime is
// given one, and a spinning guest still stops on a signal (wazero's termination checks are on
// in the interpreter too).
func TestInterpreterEngine(t *testing.T) {
	rootfs := newRootfs(t)
	cache := t.TempDir()
	rt := newRuntime(t, rootfs, func(c *enclave.Config) {
		c.Args = []string{"engine=interpreter"}
		c.CacheDir = cache
	})
	compiled := newRuntime(t, rootfs, nil)
	p := enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello"}}
	if got := run(t, rt, p, nil); got.status != 0 || got.stdout != "hello\n" {
		t.Fatalf("hello on the interpreter: %+v", got)
	}
	mi, err := rt.Measurement(p)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := compiled.Measurement(p)
	if err != nil || mi != mc {
		t.Fatalf("measurement on the interpreter %s, on the compiler %s (%v): the engine is not measured", mi, mc, err)
	}
	if entries, err := os.ReadDir(cache); err != nil || len(entries) != 0 {
		t.Fatalf("the interpreter touched the code cache: %v %v", entries, err)
	}
	if rt.cache != nil || rt.cacheEntry != "" {
		t.Fatalf("the interpreter opened a code cache")
	}

	proc := startSleeper(t, rt, "spin")
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status, err := proc.Wait(); err != nil || status != 143 {
		t.Fatalf("spinning guest on the interpreter after SIGTERM: %d, %v", status, err)
	}
}

// TestInterpreted: Interpreted (prepare's question: compile or not) reads engine= as the runtime does.
func TestInterpreted(t *testing.T) {
	for args, want := range map[string]bool{"": false, "engine=compiler": false, "engine=interpreter": true, "memory=64K,engine=interpreter": true} {
		got, err := Interpreted(strings.Split(args, ","))
		if err != nil || got != want {
			t.Errorf("Interpreted(%q) = %v, %v; want %v", args, got, err, want)
		}
	}
	if _, err := Interpreted([]string{"engine=fast"}); err == nil {
		t.Errorf("Interpreted accepted engine=fast")
	}
}
