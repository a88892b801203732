package enclavehost

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// elfObject is what the dynamic loader reads from an ELF file to load it: the header, the program
// headers, and the dynamic segment up to DT_NULL. Section headers are never read: the loader does
// not use them, so a file may carry any section table (or none) without changing what is loaded.
type elfObject struct {
	class   byte   // 1: ELFCLASS32, 2: ELFCLASS64
	data    byte   // 1: little endian, 2: big endian
	machine uint16 // e_machine
	typ     uint16 // e_type
	// interp is PT_INTERP, "" when there is none.
	interp string
	// dynamic reports a PT_DYNAMIC segment; needed, runpath and rpath come from it.
	dynamic bool
	needed  []string
	// runpath and rpath are the DT_RUNPATH and DT_RPATH strings split at ':'. hasRunpath is set
	// when DT_RUNPATH is present at all: then the loader ignores DT_RPATH.
	runpath, rpath []string
	hasRunpath     bool
}

// ELF constants (elf.h); debug/elf is not used because it reads the section table.
const (
	elfClass32   = 1
	elfClass64   = 2
	elfData2LSB  = 1
	elfData2MSB  = 2
	elfTypeDyn   = 3 // ET_DYN: shared object (or position-independent executable)
	ptLoad       = 1
	ptDynamic    = 2
	ptInterp     = 3
	dtNull       = 0
	dtNeeded     = 1
	dtStrtab     = 5
	dtStrsz      = 10
	dtRpath      = 15
	dtRunpath    = 29
	maxPhnum     = 1024
	maxDynamic   = 1 << 20 // bytes of PT_DYNAMIC read at most
	maxStrtab    = 8 << 20 // bytes of DT_STRTAB read at most
	maxInterp    = 4096
	maxNeeded    = 256
	maxDynString = 4096
)

var errNotELF = errors.New("not an ELF file")

// readELF parses the loader's view of the ELF file r of the given size. It never trusts a length
// or an offset from the file without bounding it by the file and by the limits above.
func readELF(r io.ReaderAt, size int64) (*elfObject, error) {
	var ident [16]byte
	if _, err := r.ReadAt(ident[:], 0); err != nil || string(ident[:4]) != "\x7fELF" {
		return nil, errNotELF
	}
	o := &elfObject{class: ident[4], data: ident[5]}
	var bo binary.ByteOrder
	switch o.data {
	case elfData2LSB:
		bo = binary.LittleEndian
	case elfData2MSB:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("unknown ELF data encoding %d", o.data)
	}
	if ident[6] != 1 {
		return nil, fmt.Errorf("unknown ELF version %d", ident[6])
	}
	var phoff uint64
	var phentsize, phnum, wantPhent int
	switch o.class {
	case elfClass64:
		var h [64]byte
		if _, err := r.ReadAt(h[:], 0); err != nil {
			return nil, fmt.Errorf("ELF header: %w", err)
		}
		o.typ, o.machine = bo.Uint16(h[16:]), bo.Uint16(h[18:])
		phoff = bo.Uint64(h[32:])
		phentsize, phnum, wantPhent = int(bo.Uint16(h[54:])), int(bo.Uint16(h[56:])), 56
	case elfClass32:
		var h [52]byte
		if _, err := r.ReadAt(h[:], 0); err != nil {
			return nil, fmt.Errorf("ELF header: %w", err)
		}
		o.typ, o.machine = bo.Uint16(h[16:]), bo.Uint16(h[18:])
		phoff = uint64(bo.Uint32(h[28:]))
		phentsize, phnum, wantPhent = int(bo.Uint16(h[42:])), int(bo.Uint16(h[44:])), 32
	default:
		return nil, fmt.Errorf("unknown ELF class %d", o.class)
	}
	if phnum == 0 {
		return o, nil
	}
	if phentsize != wantPhent || phnum > maxPhnum {
		return nil, fmt.Errorf("unsupported program header table (%d entries of %d bytes)", phnum, phentsize)
	}
	table, err := readRange(r, size, phoff, uint64(phnum*phentsize))
	if err != nil {
		return nil, fmt.Errorf("program headers: %w", err)
	}
	type seg struct{ typ, off, vaddr, filesz uint64 }
	segs := make([]seg, phnum)
	for i := range segs {
		p := table[i*phentsize:]
		if o.class == elfClass64 {
			segs[i] = seg{uint64(bo.Uint32(p)), bo.Uint64(p[8:]), bo.Uint64(p[16:]), bo.Uint64(p[32:])}
		} else {
			segs[i] = seg{uint64(bo.Uint32(p)), uint64(bo.Uint32(p[4:])), uint64(bo.Uint32(p[8:])), uint64(bo.Uint32(p[16:]))}
		}
	}
	var dyn *seg
	for i := range segs {
		s := &segs[i]
		switch s.typ {
		case ptInterp:
			if o.interp != "" {
				return nil, errors.New("more than one PT_INTERP")
			}
			if s.filesz > maxInterp {
				return nil, fmt.Errorf("PT_INTERP of %d bytes", s.filesz)
			}
			b, err := readRange(r, size, s.off, s.filesz)
			if err != nil {
				return nil, fmt.Errorf("PT_INTERP: %w", err)
			}
			if o.interp = cString(b); o.interp == "" {
				return nil, errors.New("empty PT_INTERP")
			}
		case ptDynamic:
			if dyn != nil {
				return nil, errors.New("more than one PT_DYNAMIC")
			}
			dyn = s
		}
	}
	if dyn == nil {
		return o, nil
	}
	o.dynamic = true
	if dyn.filesz > maxDynamic {
		return nil, fmt.Errorf("PT_DYNAMIC of %d bytes", dyn.filesz)
	}
	d, err := readRange(r, size, dyn.off, dyn.filesz)
	if err != nil {
		return nil, fmt.Errorf("PT_DYNAMIC: %w", err)
	}
	entsize := 16
	if o.class == elfClass32 {
		entsize = 8
	}
	var strtab, strsz uint64
	var haveStrtab, haveStrsz, terminated bool
	var needed, runpath, rpath []uint64
	for i := 0; i+entsize <= len(d); i += entsize {
		var tag int64
		var val uint64
		if o.class == elfClass64 {
			tag, val = int64(bo.Uint64(d[i:])), bo.Uint64(d[i+8:])
		} else {
			tag, val = int64(int32(bo.Uint32(d[i:]))), uint64(bo.Uint32(d[i+4:]))
		}
		if tag == dtNull {
			// The loader stops here: whatever follows is not part of the object's dynamic information.
			terminated = true
			break
		}
		switch tag {
		case dtNeeded:
			if len(needed) == maxNeeded {
				return nil, fmt.Errorf("more than %d DT_NEEDED entries", maxNeeded)
			}
			needed = append(needed, val)
		case dtStrtab:
			strtab, haveStrtab = val, true
		case dtStrsz:
			strsz, haveStrsz = val, true
		case dtRunpath:
			runpath = append(runpath, val)
		case dtRpath:
			rpath = append(rpath, val)
		}
	}
	if !terminated {
		return nil, errors.New("PT_DYNAMIC has no DT_NULL")
	}
	if len(needed)+len(runpath)+len(rpath) == 0 {
		return o, nil
	}
	if !haveStrtab || !haveStrsz {
		return nil, errors.New("dynamic section without DT_STRTAB or DT_STRSZ")
	}
	if strsz > maxStrtab {
		return nil, fmt.Errorf("DT_STRSZ of %d bytes", strsz)
	}
	// DT_STRTAB is an address: the loader finds it in the PT_LOAD segment that maps it.
	var strOff uint64
	found := false
	for _, s := range segs {
		if s.typ == ptLoad && strtab >= s.vaddr && strtab-s.vaddr < s.filesz {
			if strsz > s.filesz-(strtab-s.vaddr) {
				return nil, errors.New("DT_STRTAB extends past its segment")
			}
			strOff, found = s.off+(strtab-s.vaddr), true
			break
		}
	}
	if !found {
		return nil, errors.New("DT_STRTAB is not in a loaded segment")
	}
	strs, err := readRange(r, size, strOff, strsz)
	if err != nil {
		return nil, fmt.Errorf("DT_STRTAB: %w", err)
	}
	str := func(what string, off uint64) (string, error) {
		if off >= uint64(len(strs)) {
			return "", fmt.Errorf("%s string offset %d outside DT_STRTAB", what, off)
		}
		i := bytes.IndexByte(strs[off:], 0)
		if i < 0 {
			return "", fmt.Errorf("%s string not terminated", what)
		}
		if i > maxDynString {
			return "", fmt.Errorf("%s string of %d bytes", what, i)
		}
		return string(strs[off : off+uint64(i)]), nil
	}
	for _, off := range needed {
		s, err := str("DT_NEEDED", off)
		if err != nil {
			return nil, err
		}
		o.needed = append(o.needed, s)
	}
	for _, p := range []struct {
		offs []uint64
		dst  *[]string
		what string
	}{{runpath, &o.runpath, "DT_RUNPATH"}, {rpath, &o.rpath, "DT_RPATH"}} {
		for _, off := range p.offs {
			s, err := str(p.what, off)
			if err != nil {
				return nil, err
			}
			*p.dst = append(*p.dst, strings.Split(s, ":")...)
		}
	}
	o.hasRunpath = len(runpath) > 0
	return o, nil
}

// readRange reads n bytes at off, refusing ranges that leave the file.
func readRange(r io.ReaderAt, size int64, off, n uint64) ([]byte, error) {
	if size < 0 || off > uint64(size) || n > uint64(size)-off {
		return nil, fmt.Errorf("range %d+%d is outside the %d-byte file", off, n, size)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, int64(off)); err != nil {
		return nil, err
	}
	return b, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
