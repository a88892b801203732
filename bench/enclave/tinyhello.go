package main

import "encoding/binary"

// tinyHello is a minimal WASI command module that writes msg to stdout and returns (status 0):
// the same workload as examples/hello's greeting without Go's 2.7 MB runtime, to show what the
// enclave lifecycle costs apart from decoding a large module.
func tinyHello(msg string) []byte {
	leb := func(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }
	str := func(s string) []byte { return append(leb(len(s)), s...) }
	section := func(id byte, body []byte) []byte {
		return append(append([]byte{id}, leb(len(body))...), body...)
	}
	var m []byte
	m = append(m, 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00)
	// Types: fd_write (i32 i32 i32 i32) -> i32, and _start () -> ().
	m = append(m, section(1, []byte{0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00})...)
	imp := append([]byte{0x01}, str("wasi_snapshot_preview1")...)
	imp = append(append(imp, str("fd_write")...), 0x00, 0x00)
	m = append(m, section(2, imp)...)
	m = append(m, section(3, []byte{0x01, 0x01})...)
	m = append(m, section(5, []byte{0x01, 0x00, 0x01})...)
	exp := append([]byte{0x02}, str("memory")...)
	exp = append(exp, 0x02, 0x00)
	exp = append(append(exp, str("_start")...), 0x00, 0x01)
	m = append(m, section(7, exp)...)
	// _start: fd_write(1, iovs=0, 1, nwritten=8); drop; end.
	body := []byte{0x00, 0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x1a, 0x0b}
	m = append(m, section(10, append(append([]byte{0x01}, leb(len(body))...), body...))...)
	// Memory at 0: iovec {ptr 16, len}, 4 bytes nwritten, padding, then the text at 16.
	data := make([]byte, 16, 16+len(msg))
	binary.LittleEndian.PutUint32(data[0:], 16)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(msg)))
	data = append(data, msg...)
	seg := append([]byte{0x01, 0x00, 0x41, 0x00, 0x0b}, leb(len(data))...)
	m = append(m, section(11, append(seg, data...))...)
	return m
}
