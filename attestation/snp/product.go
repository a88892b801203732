package snp

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Facts that differ between AMD product lines. Sources: AMD's SEV-SNP firmware ABI and KDS
// specifications as public code states them (virtee/sev's report decoder and TCB_VERSION layouts,
// virtee/snpguest's KDS requests, google/go-sev-guest's abi and kds packages) and the certificates
// AMD's KDS issues (real Milan, Genoa and Turin VCEKs in testdata/attestation/sev-snp).

// productLineOfName maps a KDS productName extension to its product line. VCEKs name the line and,
// for Milan, the stepping ("Milan-B0"); Genoa and Turin VCEKs and all VLEKs name only the line.
func productLineOfName(name string) (string, error) {
	line, stepping, hasStepping := strings.Cut(name, "-")
	if !slices.Contains(ProductLines, line) || hasStepping && !isStepping(stepping) {
		return "", fmt.Errorf("unknown product name %q (want <%s>[-<stepping>])", name, strings.Join(ProductLines, "|"))
	}
	return line, nil
}

// isStepping reports whether s looks like a silicon stepping name: a capital letter and one or two digits.
func isStepping(s string) bool {
	if len(s) < 2 || len(s) > 3 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// productLineOfCPUID maps the CPUID family and model a version 3+ report carries to a product
// line. Family 19h is Zen 3/Zen 4: models 00h–0Fh are Milan, 10h–1Fh and A0h–AFh Genoa (with
// Bergamo and Siena); family 1Ah models 00h–11h are Turin. Anything else (a later line such as
// Venice) has no built-in roots and no known TCB layout here.
func productLineOfCPUID(family, model byte) (string, error) {
	switch {
	case family == 0x19 && model <= 0x0F:
		return "Milan", nil
	case family == 0x19 && (model >= 0x10 && model <= 0x1F || model >= 0xA0 && model <= 0xAF):
		return "Genoa", nil
	case family == 0x1A && model <= 0x11:
		return "Turin", nil
	}
	return "", fmt.Errorf("CPUID family 0x%02x model 0x%02x is not a product line this verifier knows (%s)",
		family, model, strings.Join(ProductLines, ", "))
}

// hwIDSize is the length of a VCEK's hwID extension for line: Milan and Genoa VCEKs carry the
// whole 64-byte CHIP_ID, Turin VCEKs only its first 8 bytes (Turin's CHIP_ID is 8 bytes followed
// by zeros).
func hwIDSize(line string) int {
	if line == "Turin" {
		return 8
	}
	return 64
}

// checkChipID compares a VCEK's hwID with a report's CHIP_ID as AMD specifies for line. A CHIP_ID
// of all zeros (the host set MASK_CHIP_ID) cannot be compared; the caller decides about it.
func checkChipID(line string, hwID, chipID []byte) error {
	if len(hwID) != hwIDSize(line) {
		return fmt.Errorf("%s VCEK hwID has %d bytes, want %d", line, len(hwID), hwIDSize(line))
	}
	n := len(hwID)
	if !bytes.Equal(chipID[:n], hwID) || !allZero(chipID[n:]) {
		if n < len(chipID) {
			return fmt.Errorf("VCEK hwID %x is not the report's CHIP_ID %x (a %s CHIP_ID is the hwID followed by %d zero bytes)",
				hwID, chipID, line, len(chipID)-n)
		}
		return fmt.Errorf("VCEK hwID %x is not the report's CHIP_ID %x", hwID, chipID)
	}
	return nil
}
