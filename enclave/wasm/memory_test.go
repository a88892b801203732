package wasm

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

func TestParseRuntimeArgs(t *testing.T) {
	tests := []struct {
		args      []string
		wantPages uint32
		wantErr   string
	}{
		{args: nil},
		{args: []string{"", " "}},
		{args: []string{"memory=64M"}, wantPages: 1024},
		{args: []string{"memory=64m"}, wantPages: 1024},
		{args: []string{" memory=1G "}, wantPages: 16384},
		{args: []string{"memory=4G"}, wantPages: 65536},
		{args: []string{"memory=64K"}, wantPages: 1},
		{args: []string{"memory=131072"}, wantPages: 2},
		{args: []string{"memory=0"}, wantErr: "positive multiple of the 64K wasm page"},
		{args: []string{"memory=100K"}, wantErr: "positive multiple of the 64K wasm page"},
		{args: []string{"memory=5G"}, wantErr: "more than the 4G"},
		{args: []string{"memory=99999999999999999999"}, wantErr: "more than the 4G"},
		{args: []string{"memory=-1M"}, wantErr: "want a number of bytes"},
		{args: []string{"memory=1.5G"}, wantErr: "want a number of bytes"},
		{args: []string{"memory=M"}, wantErr: "want a number of bytes"},
		{args: []string{"memory=64MB"}, wantErr: "want a number of bytes"},
		{args: []string{"memory="}, wantErr: "want a number of bytes"},
		{args: []string{"memory"}, wantErr: "want key=value"},
		{args: []string{"memory=1M", "memory=2M"}, wantErr: "memory given twice"},
		{args: []string{"debug=1"}, wantErr: `unknown key "debug"`},
		{args: []string{"engine=compiler", "memory=64K"}, wantPages: 1},
		{args: []string{"engine=interpreter"}},
		{args: []string{"engine=jit"}, wantErr: `engine "jit" (known: compiler, interpreter)`},
		{args: []string{"engine="}, wantErr: `engine "" (known`},
		{args: []string{"engine=interpreter", "engine=compiler"}, wantErr: "engine given twice"},
	}
	for _, tt := range tests {
		got, err := parseRuntimeArgs(tt.args)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRuntimeArgs(%q) error %v, want %q", tt.args, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("parseRuntimeArgs(%q): %v", tt.args, err)
		case got.memoryLimitPages != tt.wantPages:
			t.Errorf("parseRuntimeArgs(%q) = %d pages, want %d", tt.args, got.memoryLimitPages, tt.wantPages)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	rootfs := newRootfs(t)
	writeFile(t, filepath.Join(rootfs, "app", "grow.wasm"), growModule(1000))   // to 1001 pages, 62.6 MiB
	writeFile(t, filepath.Join(rootfs, "app", "big.wasm"), commandModule(1000)) // starts at 1000 pages
	limited := newRuntime(t, rootfs, func(c *enclave.Config) { c.Args = []string{"memory=32M"} })
	unlimited := newRuntime(t, rootfs, nil)

	t.Run("memory.grow past the limit fails", func(t *testing.T) {
		if got := run(t, limited, enclave.Process{Path: "/app/grow.wasm"}, nil); got.status != TrapExitStatus {
			t.Errorf("limited: %+v, want the module's trap", got)
		}
		if got := run(t, unlimited, enclave.Process{Path: "/app/grow.wasm"}, nil); got.status != 0 {
			t.Errorf("unlimited: %+v", got)
		}
	})
	t.Run("a Go program allocating past the limit fails", func(t *testing.T) {
		got := run(t, limited, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "grow", "40"}}, nil)
		if got.status == 0 || !strings.Contains(got.stderr, "out of memory") {
			t.Errorf("limited: status %d, stdout %q, stderr %.200q", got.status, got.stdout, got.stderr)
		}
		got = run(t, limited, enclave.Process{Path: "/app/hello.wasm", Args: []string{"hello", "grow", "4"}}, nil)
		if got.status != 0 || got.stdout != "grew 4\n" {
			t.Errorf("within the limit: %+v", got)
		}
	})
	t.Run("a module whose initial memory exceeds the limit is refused", func(t *testing.T) {
		_, err := limited.Spawn(t.Context(), enclave.Process{Path: "/app/big.wasm"})
		if err == nil || !strings.Contains(err.Error(), "over limit of 512 pages") {
			t.Errorf("Spawn: %v", err)
		}
		if got := run(t, unlimited, enclave.Process{Path: "/app/big.wasm"}, nil); got.status != 0 {
			t.Errorf("unlimited: %+v", got)
		}
	})
}
