// Command evidence is a WASI test program that asks builtin:wasm for attestation evidence through
// the inclavare.get_evidence import and prints what each call returned.
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"unsafe"
)

//go:wasmimport inclavare get_evidence
func getEvidence(reportData unsafe.Pointer, reportDataLen uint32, out unsafe.Pointer, outCap uint32, outLen unsafe.Pointer) uint32

func main() {
	var reportData [64]byte
	copy(reportData[:], os.Args[1])
	var outLen uint32

	// A report data length other than 64 is refused.
	errno := getEvidence(unsafe.Pointer(&reportData[0]), 63, nil, 0, unsafe.Pointer(&outLen))
	fmt.Printf("short report data: errno %d\n", errno)

	// A buffer too small gets the size needed.
	small := make([]byte, 4)
	errno = getEvidence(unsafe.Pointer(&reportData[0]), 64, unsafe.Pointer(&small[0]), uint32(len(small)), unsafe.Pointer(&outLen))
	fmt.Printf("small buffer: errno %d, need %d\n", errno, outLen)
	if errno != 68 {
		os.Exit(1)
	}

	out := make([]byte, outLen)
	errno = getEvidence(unsafe.Pointer(&reportData[0]), 64, unsafe.Pointer(&out[0]), uint32(len(out)), unsafe.Pointer(&outLen))
	fmt.Printf("evidence: errno %d, %s\n", errno, hex.EncodeToString(out[:outLen]))
}
