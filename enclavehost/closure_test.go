package enclavehost

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/pal/paltest"
)

// testELF describes a synthetic 64-bit little-endian ELF object: enough for the loader's view
// (header, PT_LOAD, PT_DYNAMIC, PT_INTERP, dynamic entries, string table), not loadable.
type testELF struct {
	machine uint16
	typ     uint16 // 0: ET_DYN
	interp  string
	needed  []string
	runpath string
	rpath   string
	// hidden are DT_NEEDED entries placed after DT_NULL: the loader never reads them.
	hidden []string
	// noNull leaves DT_NULL out.
	noNull bool
}

func (e testELF) bytes() []byte {
	strtab := []byte{0}
	str := func(s string) uint64 {
		off := uint64(len(strtab))
		strtab = append(append(strtab, s...), 0)
		return off
	}
	type dyn struct{ tag, val uint64 }
	var dyns, after []dyn
	for _, n := range e.needed {
		dyns = append(dyns, dyn{dtNeeded, str(n)})
	}
	if e.runpath != "" {
		dyns = append(dyns, dyn{dtRunpath, str(e.runpath)})
	}
	if e.rpath != "" {
		dyns = append(dyns, dyn{dtRpath, str(e.rpath)})
	}
	for _, n := range e.hidden {
		after = append(after, dyn{dtNeeded, str(n)})
	}
	interpOff := uint64(0)
	if e.interp != "" {
		interpOff = str(e.interp)
	}
	phnum := 2
	if e.interp != "" {
		phnum = 3
	}
	strOff := uint64(64 + 56*phnum)
	dynOff := strOff + uint64(len(strtab)) + 2*8 // room for DT_STRTAB, DT_STRSZ counted below
	dynOff = (dynOff + 7) &^ 7
	dyns = append(dyns, dyn{dtStrtab, strOff}, dyn{dtStrsz, uint64(len(strtab))})
	if !e.noNull {
		dyns = append(dyns, dyn{dtNull, 0})
	}
	dyns = append(dyns, after...)
	dynSize := uint64(16 * len(dyns))
	total := dynOff + dynSize
	b := make([]byte, total)
	le := binary.LittleEndian
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = elfClass64, elfData2LSB, 1
	typ := e.typ
	if typ == 0 {
		typ = elfTypeDyn
	}
	le.PutUint16(b[16:], typ)
	le.PutUint16(b[18:], e.machine)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], 64) // e_phoff
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[56:], uint16(phnum))
	ph := func(i int, typ uint32, off, size uint64) {
		p := b[64+56*i:]
		le.PutUint32(p, typ)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], off) // vaddr = offset: the PT_LOAD below maps the file at 0
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
	}
	ph(0, ptLoad, 0, total)
	ph(1, ptDynamic, dynOff, dynSize)
	if e.interp != "" {
		ph(2, ptInterp, strOff+interpOff, uint64(len(e.interp)+1))
	}
	copy(b[strOff:], strtab)
	for i, d := range dyns {
		le.PutUint64(b[dynOff+uint64(16*i):], d.tag)
		le.PutUint64(b[dynOff+uint64(16*i)+8:], d.val)
	}
	return b
}

// hostMachine is the e_machine of this test binary: the libraries it resolves must match it.
func hostMachine(t testing.TB) uint16 {
	t.Helper()
	o, err := openELF("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	return o.machine
}

func TestReadELF(t *testing.T) {
	m := hostMachine(t)
	t.Run("entries after DT_NULL are not read", func(t *testing.T) {
		data := testELF{machine: m, needed: []string{"libc.so.6"}, hidden: []string{"../../../etc/shadow"}}.bytes()
		o, err := readELF(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(o.needed, " ") != "libc.so.6" {
			t.Errorf("needed %q, want only libc.so.6", o.needed)
		}
	})
	t.Run("section table is not read", func(t *testing.T) {
		data := testELF{machine: m, needed: []string{"libc.so.6"}}.bytes()
		// A section table that points outside the file: the loader does not care, debug/elf does.
		binary.LittleEndian.PutUint64(data[40:], 1<<40)
		binary.LittleEndian.PutUint16(data[58:], 64)
		binary.LittleEndian.PutUint16(data[60:], 3)
		if _, err := elf.NewFile(bytes.NewReader(data)); err == nil {
			t.Log("debug/elf accepted the broken section table")
		}
		o, err := readELF(bytes.NewReader(data), int64(len(data)))
		if err != nil || len(o.needed) != 1 {
			t.Errorf("readELF = %+v, %v", o, err)
		}
	})
	t.Run("interpreter, runpath, rpath", func(t *testing.T) {
		data := testELF{machine: m, interp: "/lib/ld.so", needed: []string{"a", "b"}, runpath: "/x:$ORIGIN/y", rpath: "/z"}.bytes()
		o, err := readELF(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if o.interp != "/lib/ld.so" || strings.Join(o.needed, ",") != "a,b" || strings.Join(o.runpath, ",") != "/x,$ORIGIN/y" ||
			strings.Join(o.rpath, ",") != "/z" || !o.hasRunpath || o.machine != m || o.typ != elfTypeDyn {
			t.Errorf("readELF = %+v", o)
		}
	})
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"no DT_NULL":  {testELF{machine: m, needed: []string{"a"}, noNull: true}.bytes(), "no DT_NULL"},
		"not ELF":     {[]byte("#!/bin/sh\n"), "not an ELF"},
		"empty":       {nil, "not an ELF"},
		"truncated":   {testELF{machine: m, needed: []string{"a"}}.bytes()[:100], "outside"},
		"bad class":   {append([]byte("\x7fELF\x07\x01\x01"), make([]byte, 80)...), "class"},
		"big endian?": {append([]byte("\x7fELF\x02\x05\x01"), make([]byte, 80)...), "data encoding"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readELF(bytes.NewReader(tc.data), int64(len(tc.data)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("readELF: %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("string offset outside DT_STRTAB", func(t *testing.T) {
		data := testELF{machine: m, needed: []string{"a"}}.bytes()
		// The first dynamic entry is DT_NEEDED; point it far past the string table.
		dynOff := binary.LittleEndian.Uint64(data[64+56+8:]) // p_offset of PT_DYNAMIC
		binary.LittleEndian.PutUint64(data[dynOff+8:], 1<<20)
		if _, err := readELF(bytes.NewReader(data), int64(len(data))); err == nil || !strings.Contains(err.Error(), "outside DT_STRTAB") {
			t.Errorf("readELF: %v", err)
		}
	})
}

// FuzzReadELF: readELF never panics and never allocates more than its limits on any input.
func FuzzReadELF(f *testing.F) {
	f.Add(testELF{machine: 62, interp: "/lib/ld.so", needed: []string{"libc.so.6"}, runpath: "$ORIGIN"}.bytes())
	f.Add(testELF{machine: 62, needed: []string{"a"}, hidden: []string{"b"}}.bytes())
	if b, err := os.ReadFile("/bin/true"); err == nil && len(b) < 1<<20 {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := readELF(bytes.NewReader(data), int64(len(data)))
		if err == nil && len(o.needed) > maxNeeded {
			t.Fatalf("%d needed", len(o.needed))
		}
	})
}

func TestResolveClosureSystem(t *testing.T) {
	c, err := ResolveClosure(nil, "/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	if c.Interpreter == "" || c.Libraries["libc.so.6"] == "" {
		t.Errorf("closure of /bin/ls: %+v", c)
	}
	for name, path := range c.Libraries {
		if strings.Contains(name, "/") || !filepath.IsAbs(path) {
			t.Errorf("%s resolved to %s", name, path)
		}
		if r, _ := filepath.EvalSymlinks(path); r != path {
			t.Errorf("%s: %s is not resolved (%s)", name, path, r)
		}
	}
	if _, err := ResolveClosure(nil, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("closure of a missing file succeeded")
	}
}

// needRoot: the PAL directories these tests make must belong to root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root; CI runs it as root")
	}
	t.Skip("this test needs root")
}

func palDir(t testing.TB) string {
	t.Helper()
	needRoot(t)
	d, err := paltest.NewPALDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func writeELF(t testing.TB, path string, e testELF, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, e.bytes(), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestResolveClosurePAL: the closure of a PAL is resolved as the loader would, but only from
// names (never paths) and only in directories the node operator trusts.
//
// Pod author: chooses which allowed PAL to load, and (if any PAL could be theirs) its dynamic
// section. Attacks: a DT_NEEDED of "../../../etc/shadow" (joined under the container's library
// directory, it used to mount the host's file into the container), a DT_RUNPATH into a directory
// anyone can write, entries hidden after DT_NULL. Each is refused or ignored.
func TestResolveClosurePAL(t *testing.T) {
	m := hostMachine(t)
	dir := palDir(t)
	// A library in a world-writable directory, as /tmp is.
	evilDir := t.TempDir()
	if err := os.Chmod(evilDir, 0o777); err != nil {
		t.Fatal(err)
	}
	writeELF(t, filepath.Join(evilDir, "libevil.so"), testELF{machine: m}, 0o755)
	writeELF(t, filepath.Join(dir, "sub", "libsub.so"), testELF{machine: m, needed: []string{"libchain.so"}}, 0o755)
	writeELF(t, filepath.Join(dir, "sub", "libchain.so"), testELF{machine: m}, 0o755)
	writeELF(t, filepath.Join(dir, "gw", "libgw.so"), testELF{machine: m}, 0o775)
	writeELF(t, filepath.Join(dir, "other", "libarch.so"), testELF{machine: m + 1}, 0o755)
	writeELF(t, filepath.Join(dir, "arch", "libarch.so"), testELF{machine: m}, 0o755)
	os.Chmod(filepath.Join(dir, "gw"), 0o755)

	cases := []struct {
		name string
		pal  testELF
		want string // error text; "" = resolves
		libs map[string]string
	}{
		{name: "slash in DT_NEEDED", pal: testELF{needed: []string{"../../../etc/shadow"}}, want: `needs library "../../../etc/shadow": a library name must not contain '/'`},
		{name: "absolute DT_NEEDED", pal: testELF{needed: []string{"/etc/shadow"}}, want: "must not contain '/'"},
		{name: "hidden after DT_NULL", pal: testELF{needed: []string{"libc.so.6"}, hidden: []string{"../../../etc/shadow"}}, libs: map[string]string{"libc.so.6": ""}},
		{name: "RUNPATH outside the trusted directories", pal: testELF{needed: []string{"libevil.so"}, runpath: evilDir}, want: "libevil.so, which is not installed"},
		{name: "RUNPATH by $ORIGIN, RPATH chain", pal: testELF{needed: []string{"libsub.so"}, rpath: "$ORIGIN/sub"},
			libs: map[string]string{"libsub.so": filepath.Join(dir, "sub", "libsub.so"), "libchain.so": filepath.Join(dir, "sub", "libchain.so")}},
		{name: "${ORIGIN}", pal: testELF{needed: []string{"libsub.so"}, runpath: "${ORIGIN}/sub"}, want: "libchain.so, which is not installed"},
		{name: "RUNPATH hides RPATH", pal: testELF{needed: []string{"libsub.so"}, runpath: "/nonexistent", rpath: "$ORIGIN/sub"}, want: "libsub.so, which is not installed"},
		{name: "group-writable library", pal: testELF{needed: []string{"libgw.so"}, runpath: "$ORIGIN/gw"}, want: "writable by its group or by others"},
		{name: "other architecture skipped", pal: testELF{needed: []string{"libarch.so"}, runpath: "$ORIGIN/other:$ORIGIN/arch"},
			libs: map[string]string{"libarch.so": filepath.Join(dir, "arch", "libarch.so")}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.pal.machine = m
			pal := writeELF(t, filepath.Join(dir, "libpal"+string(rune('a'+i))+".so"), tc.pal, 0o755)
			c, err := ResolveClosure([]string{dir}, "/proc/self/exe", pal)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ResolveClosure = %+v, %v; want an error containing %q", c, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.libs {
				if got := c.Libraries[name]; got == "" || (want != "" && got != want) {
					t.Errorf("%s resolved to %q, want %q", name, got, want)
				}
			}
			for name := range c.Libraries {
				if strings.Contains(name, "/") {
					t.Errorf("library name %q", name)
				}
			}
		})
	}
}
