package abi

import (
	"encoding/binary"
	"fmt"
)

// byteReader walks a little-endian structure and remembers the first short read, so parsers can
// read a whole fixed layout and check for an error once.
type byteReader struct {
	buf  []byte
	off  int
	what string // structure being read, for error messages
	err  error
}

func newByteReader(what string, b []byte) *byteReader {
	return &byteReader{buf: b, what: what}
}

func (r *byteReader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.buf)-r.off < n {
		r.err = fmt.Errorf("%s: %s needs %d bytes at offset %d, only %d left", r.what, field, n, r.off, len(r.buf)-r.off)
		return nil
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *byteReader) copyTo(dst []byte, field string) {
	if b := r.take(len(dst), field); b != nil {
		copy(dst, b)
	}
}

func (r *byteReader) u16(field string) uint16 {
	if b := r.take(2, field); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *byteReader) u32(field string) uint32 {
	if b := r.take(4, field); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *byteReader) u64(field string) uint64 {
	if b := r.take(8, field); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *byteReader) remaining() int { return len(r.buf) - r.off }
