package enclavehost

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/inclavare-containers/inclavare-go/enclave"
)

// TestResolvePAL: the pod author chooses ENCLAVE_RUNTIME_PATH. A path outside the allowed PAL
// directories, or inside but not a root-owned ELF library writable only by root, is refused, and
// every refusal reads the same (up to the path itself): no message tells a missing host file from
// an unreadable one or from one that is not an ELF library.
func TestResolvePAL(t *testing.T) {
	m := hostMachine(t)
	dir := palDir(t)
	good := writeELF(t, filepath.Join(dir, "libpal.so"), testELF{machine: m}, 0o755)
	nested := writeELF(t, filepath.Join(dir, "v1", "libpal.so"), testELF{machine: m}, 0o755)
	link := filepath.Join(dir, "libpal-link.so")
	os.Symlink("libpal.so", link)
	// A link elsewhere makes a PAL directory too (Occlum installs through such links).
	linkedDir := filepath.Join(palDir(t), "pal")
	os.Symlink(dir, linkedDir)
	loop := filepath.Join(dir, "loop.so")
	os.Symlink(loop, loop)
	text := filepath.Join(dir, "text.so")
	os.WriteFile(text, []byte("hello"), 0o755)
	exe := writeELF(t, filepath.Join(dir, "exe.so"), testELF{machine: m, typ: 2}, 0o755)
	gw := writeELF(t, filepath.Join(dir, "gw.so"), testELF{machine: m}, 0o775)
	foreign := writeELF(t, filepath.Join(dir, "foreign.so"), testELF{machine: m}, 0o755)
	os.Chown(foreign, 1000, 1000)
	userDir := filepath.Join(dir, "user")
	userPAL := writeELF(t, filepath.Join(userDir, "libpal.so"), testELF{machine: m}, 0o755)
	os.Chown(userDir, 1000, 1000)
	fifo := filepath.Join(dir, "fifo.so")
	syscall.Mkfifo(fifo, 0o644)
	outside := writeELF(t, filepath.Join(palDir(t), "libpal.so"), testELF{machine: m}, 0o755)
	escape := filepath.Join(dir, "escape.so")
	os.Symlink(outside, escape)
	dirs := []string{dir}

	for _, path := range []string{good, nested, link, filepath.Join(linkedDir, "libpal.so")} {
		if _, err := ResolvePAL(&enclave.Settings{Type: "sim", RuntimePath: path}, dirs); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	if _, err := ResolvePAL(&enclave.Settings{Type: "sim", RuntimePath: filepath.Join(linkedDir, "libpal.so")}, []string{linkedDir}); err != nil {
		t.Errorf("PAL directory given as a link: %v", err)
	}
	if _, err := ResolvePAL(&enclave.Settings{Type: "sim", RuntimePath: "builtin:wasm"}, nil); err != nil {
		t.Errorf("builtin: %v", err)
	}
	refused := map[string]string{
		"missing":                     filepath.Join(dir, "missing.so"),
		"directory":                   filepath.Join(dir, "v1"),
		"the PAL directory itself":    dir,
		"symbolic link loop":          loop,
		"not ELF":                     text,
		"ELF executable":              exe,
		"group-writable":              gw,
		"owned by a user":             foreign,
		"in a user's directory":       userPAL,
		"FIFO":                        fifo,
		"device":                      "/dev/null",
		"host file":                   "/etc/shadow",
		"host library":                "/lib/x86_64-linux-gnu/libc.so.6",
		"outside, same name":          outside,
		"link out of the directory":   escape,
		"dot-dot out":                 dir + "/../../etc/shadow",
		"relative":                    "libpal.so",
		"allowed directory not there": filepath.Join(dir, "x.so"),
	}
	want := ""
	for name, path := range refused {
		_, err := ResolvePAL(&enclave.Settings{Type: "sim", RuntimePath: path}, dirs)
		var na *NotAllowedPALError
		if !errors.As(err, &na) {
			t.Errorf("%s (%s): %v, want a NotAllowedPALError", name, path, err)
			continue
		}
		msg := strings.ReplaceAll(err.Error(), strconv.Quote(path), "PATH")
		if want == "" {
			want = msg
		}
		if msg != want {
			t.Errorf("%s: %q\nwant the same text as the others: %q", name, msg, want)
		}
	}
	if !strings.Contains(want, dir) || !strings.Contains(want, "pal_dirs") {
		t.Errorf("refusal %q does not name the allowed directories", want)
	}
	// No directory allowed: no PAL at all.
	if _, err := ResolvePAL(&enclave.Settings{Type: "sim", RuntimePath: good}, []string{}); err == nil || !strings.Contains(err.Error(), "none are configured") {
		t.Errorf("no PAL directories: %v", err)
	}
	// "/" is never a PAL directory, even when a configured directory resolves to it.
	rootLink := filepath.Join(palDir(t), "root")
	os.Symlink("/", rootLink)
	if _, err := ResolvePAL(&enclave.Settings{Type: "sim", RuntimePath: good}, []string{rootLink}); err == nil {
		t.Error("a PAL directory resolving to / allowed a PAL")
	}
}
