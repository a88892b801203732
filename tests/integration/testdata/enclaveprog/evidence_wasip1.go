//go:build wasip1

package main

import (
	"fmt"
	"unsafe"
)

//go:wasmimport inclavare get_evidence
func getEvidence(reportData unsafe.Pointer, reportDataLen uint32, out unsafe.Pointer, outCap uint32, outLen unsafe.Pointer) uint32

// evidence asks the builtin:wasm runtime's host import (docs/wasm-abi.md).
func evidence(rd [64]byte) ([]byte, error) {
	buf := make([]byte, 64<<10)
	var n uint32
	if errno := getEvidence(unsafe.Pointer(&rd[0]), 64, unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n)); errno != 0 {
		return nil, fmt.Errorf("inclavare.get_evidence: errno %d", errno)
	}
	return buf[:n], nil
}

//go:wasmimport inclavare get_resource
func getResource(id unsafe.Pointer, idLen uint32, out unsafe.Pointer, outCap uint32, outLen unsafe.Pointer) uint32

// resource asks the builtin:wasm runtime's host import for a resource of the key broker.
func resource(id string) ([]byte, error) {
	b := []byte(id)
	buf := make([]byte, 1<<20)
	var n uint32
	if errno := getResource(unsafe.Pointer(&b[0]), uint32(len(b)), unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n)); errno != 0 {
		return nil, fmt.Errorf("inclavare.get_resource: errno %d", errno)
	}
	return buf[:n], nil
}
