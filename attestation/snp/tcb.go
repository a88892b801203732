package snp

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"strconv"
)

// AMD KDS certificate extensions (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
// Interface Specification"). go-sev-guest's kds package (v0.15 and later) predates Turin's fmcSPL
// extension, its 8-byte hwID and its TCB_VERSION layout, so the extensions are read here.
var (
	oidKDS          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1}
	oidStructVer    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 1}
	oidProductName  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 2}
	oidSPLPrefix    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3}
	oidHWID         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 4}
	oidCSPID        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 5}
	splNames        = map[int]string{1: "bl", 2: "tee", 3: "snp", 4: "spl4", 5: "spl5", 6: "spl6", 7: "spl7", 8: "ucode", 9: "fmc"}
	maxKnownSPLLeaf = 9
)

// hwIDSizes are the hwID lengths KDS issues (see hwIDSize): which one a product line uses is
// checked where the line is known.
var hwIDSizes = []int{8, 64}

// kdsExtensions are the facts AMD's KDS writes into a VCEK or VLEK certificate.
type kdsExtensions struct {
	structVersion int
	productName   string
	hwID          []byte // VCEK only
	cspID         string // VLEK only
	// spl holds the security patch levels by name ("bl", "tee", "snp", "ucode", "fmc", "spl4"…).
	spl map[string]uint8
}

func parseKDSExtensions(c *x509.Certificate) (*kdsExtensions, error) {
	out := &kdsExtensions{spl: map[string]uint8{}}
	seen := map[string]bool{}
	for _, ext := range c.Extensions {
		id := ext.Id
		if !hasKDSPrefix(id) {
			continue // standard X.509 extensions
		}
		if seen[id.String()] {
			return nil, fmt.Errorf("extension %v appears twice", id)
		}
		seen[id.String()] = true
		switch {
		case id.Equal(oidStructVer):
			if err := unmarshalExact(ext.Value, &out.structVersion); err != nil || out.structVersion < 0 || out.structVersion > 255 {
				return nil, fmt.Errorf("structVersion extension is not an integer 0–255")
			}
		case id.Equal(oidProductName):
			if len(ext.Value) == 0 || ext.Value[0] != asn1.TagIA5String {
				return nil, fmt.Errorf("productName extension is not an IA5String")
			}
			if err := unmarshalExactParams(ext.Value, &out.productName, "ia5"); err != nil {
				return nil, fmt.Errorf("productName extension: %w", err)
			}
		case id.Equal(oidHWID):
			// KDS writes the raw bytes without an OCTET STRING header (64 for Milan and Genoa, 8
			// for Turin); accept the DER-wrapped form too. Raw lengths are taken first: a wrapped
			// hwID is never 8 or 64 bytes long.
			if slices.Contains(hwIDSizes, len(ext.Value)) {
				out.hwID = append([]byte(nil), ext.Value...)
				break
			}
			var b []byte
			if err := unmarshalExact(ext.Value, &b); err != nil || !slices.Contains(hwIDSizes, len(b)) {
				return nil, fmt.Errorf("hwID extension is neither 8 nor 64 bytes")
			}
			out.hwID = b
		case id.Equal(oidCSPID):
			if err := unmarshalExactParams(ext.Value, &out.cspID, "ia5"); err != nil {
				return nil, fmt.Errorf("cspId extension: %w", err)
			}
		case len(id) == len(oidSPLPrefix)+1 && asn1.ObjectIdentifier(id[:len(oidSPLPrefix)]).Equal(oidSPLPrefix):
			name, ok := splNames[id[len(id)-1]]
			if !ok {
				// An unknown patch level could be part of the TCB; ignoring it would fail open.
				return nil, fmt.Errorf("unknown TCB extension %v (known up to .%d)", id, maxKnownSPLLeaf)
			}
			var v int
			if err := unmarshalExact(ext.Value, &v); err != nil || v < 0 || v > 255 {
				return nil, fmt.Errorf("%s SPL extension is not an integer 0–255", name)
			}
			out.spl[name] = uint8(v)
		default:
			return nil, fmt.Errorf("unknown AMD KDS extension %v", id)
		}
	}
	if out.productName == "" {
		return nil, fmt.Errorf("no productName extension")
	}
	for _, need := range []string{"bl", "tee", "snp", "ucode"} {
		if _, ok := out.spl[need]; !ok {
			return nil, fmt.Errorf("no %s SPL extension", need)
		}
	}
	return out, nil
}

func unmarshalExact(b []byte, v any) error { return unmarshalExactParams(b, v, "") }

func unmarshalExactParams(b []byte, v any, params string) error {
	rest, err := asn1.UnmarshalWithParams(b, v, params)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	return nil
}

// tcbLayout says which byte of a TCB_VERSION holds which patch level. Milan and Genoa share one
// layout (BOOT_LOADER, TEE, 4 reserved bytes, SNP, MICROCODE); Turin added the FMC level and moved
// the fields (FMC, BOOT_LOADER, TEE, SNP, 3 reserved bytes, MICROCODE).
func tcbLayout(line string) ([8]string, error) {
	switch line {
	case "Milan", "Genoa":
		return [8]string{"bl", "tee", "spl4", "spl5", "spl6", "spl7", "snp", "ucode"}, nil
	case "Turin":
		return [8]string{"fmc", "bl", "tee", "snp", "", "", "", "ucode"}, nil
	}
	return [8]string{}, fmt.Errorf("no TCB layout known for product line %q", line)
}

// tcbParts splits a TCB_VERSION into named patch levels for line (reserved bytes are kept under
// "reserved<byte>" so that nothing is silently dropped).
func tcbParts(line string, tcb uint64) (map[string]uint8, error) {
	layout, err := tcbLayout(line)
	if err != nil {
		return nil, err
	}
	out := map[string]uint8{}
	for i, name := range layout {
		if name == "" {
			name = "reserved" + strconv.Itoa(i)
		}
		out[name] = uint8(tcb >> (8 * i))
	}
	return out, nil
}

// certTCB composes the TCB_VERSION a V[CL]EK certificate is issued for.
func certTCB(line string, e *kdsExtensions) (uint64, error) {
	layout, err := tcbLayout(line)
	if err != nil {
		return 0, err
	}
	placed := map[string]bool{}
	var tcb uint64
	for i, name := range layout {
		if name == "" {
			continue
		}
		placed[name] = true
		v, ok := e.spl[name]
		if !ok && name == "fmc" {
			return 0, fmt.Errorf("%s certificate has no fmcSPL extension", line)
		}
		tcb |= uint64(v) << (8 * i)
	}
	for name, v := range e.spl {
		if !placed[name] && v != 0 {
			return 0, fmt.Errorf("certificate has %s SPL %d, which has no place in a %s TCB", name, v, line)
		}
	}
	return tcb, nil
}
