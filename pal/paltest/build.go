// Package paltest builds the reference PAL (pal/reference/reference_pal.c)
// with the system C compiler, for tests of rune, the runelet and package pal.
//
// It is test support: it must never be imported by a program that ships.
package paltest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Options select a reference PAL build.
type Options struct {
	// Version is the PAL API version implemented: 1, 2 or 3.
	Version int
	// ReportedVersion, when non-zero, is what pal_get_version returns
	// instead of Version (e.g. 4, to test that loaders refuse it).
	ReportedVersion int
	// Omit leaves these PAL symbols out of the dynamic symbol table (e.g.
	// "pal_kill"), as if the PAL did not define them.
	Omit []string
	// Fail, "CALL:ERRNO", makes CALL return -ERRNO (build-time default of
	// the fail= init arg).
	Fail string
	// Crash, a PAL call name, makes that call dereference NULL.
	Crash string
	// Needed adds DT_NEEDED entries with these names, verbatim (each the soname of an empty
	// stub library linked in): attack tests use names such as "../../../etc/shadow".
	Needed []string
	// Runpath, when set, is the PAL's DT_RUNPATH, verbatim ($ORIGIN included).
	Runpath string
}

var callName = regexp.MustCompile(`^pal_[a-z_]{1,40}$`)

func (o Options) defines() ([]string, error) {
	if o.Version < 1 || o.Version > 3 {
		return nil, fmt.Errorf("reference PAL: version %d is not 1, 2 or 3", o.Version)
	}
	d := []string{"-DPAL_VERSION=" + strconv.Itoa(o.Version)}
	if o.ReportedVersion != 0 {
		d = append(d, "-DREFERENCE_PAL_REPORTED_VERSION="+strconv.Itoa(o.ReportedVersion))
	}
	if o.Fail != "" {
		call, errno, ok := strings.Cut(o.Fail, ":")
		if _, err := strconv.Atoi(errno); !ok || err != nil || !callName.MatchString(call) {
			return nil, fmt.Errorf("reference PAL: fail %q is not CALL:ERRNO", o.Fail)
		}
		d = append(d, `-DREFERENCE_PAL_FAIL="`+o.Fail+`"`)
	}
	if o.Crash != "" {
		if !callName.MatchString(o.Crash) {
			return nil, fmt.Errorf("reference PAL: crash %q is not a PAL call name", o.Crash)
		}
		d = append(d, `-DREFERENCE_PAL_CRASH="`+o.Crash+`"`)
	}
	return d, nil
}

// SourceDir is the pal/ directory of this module: $INCLAVARE_PAL_SOURCE_DIR
// when set, else found from this file's location at build time.
func SourceDir() (string, error) {
	if d := os.Getenv("INCLAVARE_PAL_SOURCE_DIR"); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", errors.New("reference PAL: cannot locate the pal/ sources (built with -trimpath?); set INCLAVARE_PAL_SOURCE_DIR")
	}
	return filepath.Dir(filepath.Dir(file)), nil
}

// Builder compiles reference PALs into a directory, each distinct Options
// once.
type Builder struct {
	dir   string
	mu    sync.Mutex
	built map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// NewBuilder keeps its builds in dir.
func NewBuilder(dir string) *Builder {
	return &Builder{dir: dir, built: map[string]*build{}}
}

// Build returns the path of the reference PAL built with o. The C file is
// compiled once per distinct set of defines; leaving symbols out (Omit) only
// relinks, with a version script that makes them local.
func (b *Builder) Build(o Options) (string, error) {
	defs, err := o.defines()
	if err != nil {
		return "", err
	}
	omit := append([]string(nil), o.Omit...)
	sort.Strings(omit)
	for _, s := range omit {
		if !callName.MatchString(s) {
			return "", fmt.Errorf("reference PAL: %q is not a PAL symbol name", s)
		}
	}
	obj, err := b.once("obj "+strings.Join(defs, " "), func(out string) error {
		return b.compile(defs, out+".o")
	})
	if err != nil {
		return "", err
	}
	var stubs []string
	for _, n := range o.Needed {
		if n == "" || strings.ContainsAny(n, "\x00,") {
			return "", fmt.Errorf("reference PAL: needed name %q", n)
		}
		stub, err := b.Stub(n)
		if err != nil {
			return "", err
		}
		stubs = append(stubs, stub)
	}
	if strings.ContainsAny(o.Runpath, "\x00,") {
		return "", fmt.Errorf("reference PAL: runpath %q", o.Runpath)
	}
	key := "so " + strings.Join(defs, " ") + " omit " + strings.Join(omit, " ") + " needed " + strings.Join(o.Needed, "\x00") + " runpath " + o.Runpath
	so, err := b.once(key, func(out string) error {
		return b.link(obj+".o", omit, stubs, o.Runpath, out+".so")
	})
	return so + ".so", err
}

// Stub returns the path of an empty shared library whose DT_SONAME is name, linked once.
func (b *Builder) Stub(name string) (string, error) {
	p, err := b.once("stub "+name, func(out string) error { return b.stub(name, out+".so") })
	return p + ".so", err
}

func (b *Builder) stub(name, out string) error {
	cmd := exec.Command(cc(), "-shared", "-x", "c", "-o", out, "-Wl,-soname,"+name, "-")
	cmd.Stdin = strings.NewReader("")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("link stub library %q: %w\n%s", name, err, msg)
	}
	return nil
}

// once runs make for key once (concurrent callers wait) and returns the
// base path (no extension) it gave make.
func (b *Builder) once(key string, make func(out string) error) (string, error) {
	b.mu.Lock()
	bl, ok := b.built[key]
	if !ok {
		sum := sha256.Sum256([]byte(key))
		bl = &build{path: filepath.Join(b.dir, "libpal-reference-"+hex.EncodeToString(sum[:8]))}
		b.built[key] = bl
	}
	b.mu.Unlock()
	bl.once.Do(func() { bl.err = make(bl.path) })
	return bl.path, bl.err
}

func cc() string {
	if c := os.Getenv("CC"); c != "" {
		return c
	}
	return "cc"
}

func (b *Builder) compile(defs []string, out string) error {
	src, err := SourceDir()
	if err != nil {
		return err
	}
	args := append([]string{
		"-c", "-O1", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
		"-fPIC", "-fvisibility=hidden",
		"-I", filepath.Join(src, "include"),
	}, defs...)
	args = append(args, "-o", out, filepath.Join(src, "reference", "reference_pal.c"))
	if msg, err := exec.Command(cc(), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("compile reference PAL (%s): %w\n%s", strings.Join(defs, " "), err, msg)
	}
	return nil
}

func (b *Builder) link(obj string, omit, stubs []string, runpath, out string) error {
	args := []string{"-shared", "-o", out, obj}
	if len(stubs) > 0 {
		// Linked in whether or not the PAL uses them: DT_NEEDED takes each stub's soname.
		args = append(append(args, "-Wl,--no-as-needed"), stubs...)
	}
	if runpath != "" {
		args = append(args, "-Wl,--enable-new-dtags", "-Wl,-rpath,"+runpath)
	}
	if len(omit) > 0 {
		script := out + ".map"
		v := "{\n  local:\n"
		for _, s := range omit {
			v += "    " + s + ";\n"
		}
		v += "};\n"
		if err := os.WriteFile(script, []byte(v), 0o644); err != nil {
			return err
		}
		args = append(args, "-Wl,--version-script="+script)
	}
	if msg, err := exec.Command(cc(), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("link reference PAL without %v: %w\n%s", omit, err, msg)
	}
	return nil
}

// Copy copies the library at src into dir under name, as a new file: a
// process can load a given PAL file only once, so each test loads a copy.
func Copy(src, dir, name string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
}

// NewPALDir makes a fresh directory that passes the host's checks for a PAL directory
// ([enclave] pal_dirs): it and every directory above it belong to root and are writable by
// root only. It is made under /run, because the usual temporary directory (/tmp) is writable by
// everyone, which those checks refuse. Only root can make one; the caller removes it.
func NewPALDir() (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("a PAL directory must belong to root: run as root")
	}
	dir, err := os.MkdirTemp("/run", "inclavare-pal-test-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// WriteConfig writes, at path, a node configuration (config.toml) whose [enclave] pal_dirs are
// dirs, for rune's $RUNE_CONFIG.
func WriteConfig(path string, dirs ...string) error {
	var quoted []string
	for _, d := range dirs {
		if strings.ContainsAny(d, "\"\\\n") {
			return fmt.Errorf("PAL directory %q: quote or backslash in a test path", d)
		}
		quoted = append(quoted, `"`+d+`"`)
	}
	doc := "[enclave]\npal_dirs = [" + strings.Join(quoted, ", ") + "]\n"
	return os.WriteFile(path, []byte(doc), 0o644)
}
