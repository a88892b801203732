package wasm

import (
	"errors"
	"fmt"
)

// maxLocalsPerFunction caps the locals one function may declare. The binary format lets a few
// bytes declare 2^32 locals, which wazero would allocate before looking further; 50000 is the
// limit web engines apply, far above what compilers emit.
const maxLocalsPerFunction = 50000

// checkModuleBounds walks the structure of a WebAssembly binary before wazero decodes it, and
// fails on any length or count that the bytes cannot back.
//
// wazero's decoder allocates vectors, names and locals at the sizes the module declares before
// reading them: 16 bytes that declare a 100-million-entry export section make it allocate
// gigabytes. Here every vector count must fit in the bytes left in its section (each entry takes
// at least one byte), every name or byte string must fit, section payloads must be consumed
// exactly (so wazero reads the same structure this walk checked), and only the core features
// wazero enables by default (WebAssembly 2.0) are accepted. Function bodies are checked only for
// their locals: wazero validates instructions without declared-size allocations.
func checkModuleBounds(b []byte) error {
	r := &boundsReader{b: b}
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return errors.New("not a WebAssembly binary (no \\0asm magic)")
	}
	if string(b[4:8]) != "\x01\x00\x00\x00" {
		return fmt.Errorf("unsupported WebAssembly binary version %x", b[4:8])
	}
	r.off = 8
	for r.off < len(r.b) {
		start := r.off
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return r.fail(start, "section header")
		}
		if uint64(size) > uint64(r.left()) {
			return fmt.Errorf("section %d at offset %#x declares %d bytes, only %d remain", id, start, size, r.left())
		}
		section := &boundsReader{b: r.b[:r.off+int(size)], off: r.off}
		r.off += int(size)
		if err := section.section(id); err != nil {
			return fmt.Errorf("section %d at offset %#x: %w", id, start, err)
		}
		if section.off != len(section.b) {
			return fmt.Errorf("section %d at offset %#x: %d bytes left over", id, start, len(section.b)-section.off)
		}
	}
	return nil
}

// boundsReader reads the binary format from b, remembering the first error.
type boundsReader struct {
	b   []byte
	off int
	err error
}

func (r *boundsReader) left() int { return len(r.b) - r.off }

func (r *boundsReader) setErr(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("offset %#x: %s", r.off, msg)
	}
}

func (r *boundsReader) fail(at int, what string) error {
	return fmt.Errorf("malformed %s at offset %#x: %w", what, at, r.err)
}

func (r *boundsReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.setErr("unexpected end")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// leb reads an LEB128 number of at most bits bits, in at most ceil(bits/7) bytes. The value is
// exact for unsigned numbers; for signed ones only the encoding's length matters here.
func (r *boundsReader) leb(bits int) uint64 {
	var v uint64
	for i := 0; i < (bits+6)/7; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.setErr("LEB128 too long")
	return 0
}

func (r *boundsReader) u32() uint32 {
	v := r.leb(32)
	if v > 0xffffffff {
		r.setErr("u32 out of range")
		return 0
	}
	return uint32(v)
}

func (r *boundsReader) skip(n uint64) {
	if r.err != nil {
		return
	}
	if n > uint64(r.left()) {
		r.setErr(fmt.Sprintf("%d bytes declared, only %d remain", n, r.left()))
		return
	}
	r.off += int(n)
}

// count reads a vector length and checks that the rest of the section could hold that many
// entries of at least minEntry bytes each.
func (r *boundsReader) count(minEntry int) uint32 {
	n := r.u32()
	if r.err == nil && uint64(n)*uint64(minEntry) > uint64(r.left()) {
		r.setErr(fmt.Sprintf("vector of %d entries in %d bytes", n, r.left()))
		return 0
	}
	return n
}

func (r *boundsReader) name() {
	n := r.u32()
	r.skip(uint64(n))
}

func (r *boundsReader) valType() {
	switch t := r.byte(); t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f: // i32 i64 f32 f64 v128 funcref externref
	default:
		if r.err == nil {
			r.setErr(fmt.Sprintf("unsupported value type %#x", t))
		}
	}
}

func (r *boundsReader) refType() {
	switch t := r.byte(); t {
	case 0x70, 0x6f:
	default:
		if r.err == nil {
			r.setErr(fmt.Sprintf("unsupported reference type %#x", t))
		}
	}
}

func (r *boundsReader) limits() {
	switch flag := r.byte(); flag {
	case 0x00:
		r.u32()
	case 0x01, 0x03: // with maximum; 0x03 is a shared memory
		r.u32()
		r.u32()
	default:
		if r.err == nil {
			r.setErr(fmt.Sprintf("unsupported limits flag %#x", flag))
		}
	}
}

func (r *boundsReader) globalType() {
	r.valType()
	if m := r.byte(); m > 1 && r.err == nil {
		r.setErr(fmt.Sprintf("invalid mutability %#x", m))
	}
}

// constExpr skips a constant expression up to and including its end opcode.
func (r *boundsReader) constExpr() {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b: // end
			return
		case 0x41: // i32.const
			r.leb(32)
		case 0x42: // i64.const
			r.leb(64)
		case 0x43: // f32.const
			r.skip(4)
		case 0x44: // f64.const
			r.skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			r.u32()
		case 0xd0: // ref.null
			r.refType()
		case 0xfd: // v128.const
			if sub := r.u32(); sub != 12 && r.err == nil {
				r.setErr(fmt.Sprintf("unsupported constant expression opcode 0xfd %d", sub))
			}
			r.skip(16)
		default:
			if r.err == nil {
				r.setErr(fmt.Sprintf("unsupported constant expression opcode %#x", op))
			}
		}
	}
}

func (r *boundsReader) section(id byte) error {
	switch id {
	case 0: // custom: a name, then bytes wazero keeps as they are, except in "name"
		n := r.u32()
		start := r.off
		r.skip(uint64(n))
		if r.err == nil && string(r.b[start:r.off]) == "name" {
			r.nameSection()
		} else if r.err == nil {
			r.off = len(r.b)
		}
	case 1: // type
		for n := r.count(3); n > 0 && r.err == nil; n-- {
			if form := r.byte(); form != 0x60 && r.err == nil {
				r.setErr(fmt.Sprintf("unsupported type form %#x", form))
			}
			for k := r.count(1); k > 0 && r.err == nil; k-- {
				r.valType()
			}
			for k := r.count(1); k > 0 && r.err == nil; k-- {
				r.valType()
			}
		}
	case 2: // import
		for n := r.count(4); n > 0 && r.err == nil; n-- {
			r.name()
			r.name()
			switch kind := r.byte(); kind {
			case 0x00:
				r.u32()
			case 0x01:
				r.refType()
				r.limits()
			case 0x02:
				r.limits()
			case 0x03:
				r.globalType()
			default:
				if r.err == nil {
					r.setErr(fmt.Sprintf("unsupported import kind %#x", kind))
				}
			}
		}
	case 3: // function
		for n := r.count(1); n > 0 && r.err == nil; n-- {
			r.u32()
		}
	case 4: // table
		for n := r.count(2); n > 0 && r.err == nil; n-- {
			r.refType()
			r.limits()
		}
	case 5: // memory
		for n := r.count(2); n > 0 && r.err == nil; n-- {
			r.limits()
		}
	case 6: // global
		for n := r.count(3); n > 0 && r.err == nil; n-- {
			r.globalType()
			r.constExpr()
		}
	case 7: // export
		for n := r.count(3); n > 0 && r.err == nil; n-- {
			r.name()
			r.byte()
			r.u32()
		}
	case 8: // start
		r.u32()
	case 9: // element
		for n := r.count(2); n > 0 && r.err == nil; n-- {
			r.elementSegment()
		}
	case 10: // code
		for n := r.count(2); n > 0 && r.err == nil; n-- {
			size := r.u32()
			if r.err == nil && uint64(size) > uint64(r.left()) {
				r.setErr(fmt.Sprintf("function body of %d bytes, only %d remain", size, r.left()))
			}
			if r.err != nil {
				break
			}
			body := &boundsReader{b: r.b[:r.off+int(size)], off: r.off}
			var locals uint64
			for k := body.count(2); k > 0 && body.err == nil; k-- {
				locals += uint64(body.u32())
				body.valType()
			}
			if body.err == nil && locals > maxLocalsPerFunction {
				body.setErr(fmt.Sprintf("function declares %d locals, more than %d", locals, maxLocalsPerFunction))
			}
			if body.err != nil {
				r.err = body.err
				break
			}
			r.off += int(size)
		}
	case 11: // data
		for n := r.count(2); n > 0 && r.err == nil; n-- {
			switch flag := r.u32(); flag {
			case 0:
				r.constExpr()
			case 1:
			case 2:
				r.u32()
				r.constExpr()
			default:
				if r.err == nil {
					r.setErr(fmt.Sprintf("unsupported data segment flag %d", flag))
				}
			}
			r.skip(uint64(r.u32()))
		}
	case 12: // data count
		r.u32()
	default:
		r.setErr(fmt.Sprintf("unsupported section id %d", id))
	}
	return r.err
}

func (r *boundsReader) elementSegment() {
	flag := r.u32()
	if r.err != nil {
		return
	}
	if flag > 7 {
		r.setErr(fmt.Sprintf("unsupported element segment flag %d", flag))
		return
	}
	if flag&0x02 != 0 && flag&0x01 == 0 { // 2, 6: explicit table index
		r.u32()
	}
	if flag&0x01 == 0 { // 0, 2, 4, 6: active, with an offset expression
		r.constExpr()
	}
	exprs := flag&0x04 != 0
	if flag != 0 && flag != 4 { // every other flag names the element kind or type
		if exprs {
			r.refType()
		} else if kind := r.byte(); kind != 0x00 && r.err == nil {
			r.setErr(fmt.Sprintf("unsupported element kind %#x", kind))
		}
	}
	if exprs {
		for k := r.count(2); k > 0 && r.err == nil; k-- {
			r.constExpr()
		}
		return
	}
	for k := r.count(1); k > 0 && r.err == nil; k-- {
		r.u32()
	}
}

// nameSection checks the "name" custom section's subsections. Each known subsection must fill
// its declared size exactly, since wazero reads their contents without that bound.
func (r *boundsReader) nameSection() {
	for r.err == nil && r.left() > 0 {
		id := r.byte()
		size := r.u32()
		if r.err == nil && uint64(size) > uint64(r.left()) {
			r.setErr(fmt.Sprintf("name subsection of %d bytes, only %d remain", size, r.left()))
		}
		if r.err != nil {
			return
		}
		sub := &boundsReader{b: r.b[:r.off+int(size)], off: r.off}
		switch id {
		case 0: // module name
			sub.name()
		case 1: // function names
			sub.nameMap()
		case 2: // local names
			for n := sub.count(2); n > 0 && sub.err == nil; n-- {
				sub.u32()
				sub.nameMap()
			}
		default:
			sub.off = len(sub.b)
		}
		if sub.err == nil && sub.off != len(sub.b) {
			sub.setErr("name subsection not consumed exactly")
		}
		if sub.err != nil {
			r.err = sub.err
			return
		}
		r.off += int(size)
	}
}

func (r *boundsReader) nameMap() {
	for n := r.count(2); n > 0 && r.err == nil; n-- {
		r.u32()
		r.name()
	}
}
