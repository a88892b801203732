package pal_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/pal"
	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

func TestLoadRefusesBadPaths(t *testing.T) {
	dir := t.TempDir()
	loop1, loop2 := filepath.Join(dir, "loop1"), filepath.Join(dir, "loop2")
	must(t, os.Symlink(loop2, loop1))
	must(t, os.Symlink(loop1, loop2))
	text := filepath.Join(dir, "script.so")
	must(t, os.WriteFile(text, []byte("#!/bin/sh\necho not a library\n"), 0o755))
	empty := filepath.Join(dir, "empty.so")
	must(t, os.WriteFile(empty, nil, 0o755))
	dangling := filepath.Join(dir, "dangling")
	must(t, os.Symlink(filepath.Join(dir, "nowhere.so"), dangling))

	for _, tc := range []struct {
		name, path, want string
	}{
		{"empty path", "", "empty path"},
		{"nonexistent", filepath.Join(dir, "nonexistent.so"), "no such file"},
		{"dangling symlink", dangling, "no such file"},
		{"directory", dir, "is a directory"},
		{"symlink loop", loop1, "symbolic link loop"},
		{"device", "/dev/null", "not a regular file"},
		{"non-ELF", text, `not an ELF shared library (file starts with "#!/b")`},
		{"empty file", empty, "not an ELF shared library"},
		{"ELF executable", "/bin/true", "dlopen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib, err := pal.Load(tc.path)
			if err == nil {
				t.Fatalf("Load(%q) succeeded (version %d)", tc.path, lib.Version())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load(%q) = %v, want an error containing %q", tc.path, err, tc.want)
			}
		})
	}
}

func TestLoadReportsDlerror(t *testing.T) {
	// A library with an unresolved symbol: dlopen(RTLD_NOW) refuses it and
	// the error must carry dlerror's words.
	dir := t.TempDir()
	src := filepath.Join(dir, "undef.c")
	must(t, os.WriteFile(src, []byte(`
extern int symbol_nobody_defines(void);
__attribute__((visibility("default"))) int pal_get_version(void) { return symbol_nobody_defines(); }
`), 0o644))
	lib := filepath.Join(dir, "libundef.so")
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	_, err := pal.Load(lib)
	if err == nil || !strings.Contains(err.Error(), "dlopen") || !strings.Contains(err.Error(), "undefined symbol: symbol_nobody_defines") {
		t.Fatalf("Load = %v, want dlopen's undefined symbol error", err)
	}
}

func TestLoadChecksVersionAndSymbols(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts paltest.Options
		want string // "" means Load must succeed
		ver  int
	}{
		{"v4 refused", paltest.Options{Version: 3, ReportedVersion: 4}, "PAL API v4; this rune supports v1 to v3", 0},
		{"v1 without pal_get_version is v1", paltest.Options{Version: 1, Omit: []string{"pal_get_version"}}, "", 1},
		{"v1 missing pal_exec", paltest.Options{Version: 1, Omit: []string{"pal_exec"}}, "PAL API v1 requires pal_exec", 0},
		{"v1 missing pal_init and pal_destroy", paltest.Options{Version: 1, Omit: []string{"pal_init", "pal_destroy"}}, "requires pal_init, pal_destroy", 0},
		{"v2 missing pal_kill", paltest.Options{Version: 2, Omit: []string{"pal_kill"}}, "PAL API v2 requires pal_kill", 0},
		{"v2 missing pal_create_process", paltest.Options{Version: 2, Omit: []string{"pal_create_process"}}, "requires pal_create_process", 0},
		{"v3 missing pal_get_local_report", paltest.Options{Version: 3, Omit: []string{"pal_get_local_report"}}, "PAL API v3 requires pal_get_local_report", 0},
		{"v2 without pal_get_version", paltest.Options{Version: 2, Omit: []string{"pal_get_version"}}, "but no pal_get_version", 0},
		{"v3 claiming v2", paltest.Options{Version: 3, ReportedVersion: 2}, "", 2},
		{"v2 claiming v3", paltest.Options{Version: 2, ReportedVersion: 3}, "PAL API v3 requires pal_get_local_report", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lib, err := pal.Load(refPath(t, tc.opts))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if lib.Version() != tc.ver {
					t.Fatalf("Version() = %d, want %d", lib.Version(), tc.ver)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadFollowsSymlinksAndLoadsOnce(t *testing.T) {
	path := refPath(t, paltest.Options{Version: 2})
	link := filepath.Join(t.TempDir(), "link.so")
	must(t, os.Symlink(path, link))
	lib, err := pal.Load(link)
	if err != nil {
		t.Fatalf("Load via symlink: %v", err)
	}
	if lib.Path() != path {
		t.Errorf("Path() = %q, want the resolved %q", lib.Path(), path)
	}
	if _, err := pal.Load(path); err == nil || !strings.Contains(err.Error(), "already loaded") {
		t.Fatalf("second Load of the same file = %v, want an 'already loaded' error", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
