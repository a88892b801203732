package abi

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// OIDs of the Intel SGX PCK certificate extension (Intel SGX PCK Certificate and Certificate
// Revocation List Profile Specification).
var (
	OIDSGXExtension       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID               = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidTCB                = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidPCEID              = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidFMSPC              = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType            = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidPlatformInstanceID = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	oidConfiguration      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
	oidConfigDynamic      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 1}
	oidConfigCachedKeys   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 2}
	oidConfigSMTEnabled   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 3}
)

// Arcs under the TCB entry: 1..16 are the SGX TCB component SVNs, then PCESVN and CPUSVN.
const (
	tcbComponentCount = 16
	tcbPCESVNArc      = 17
	tcbCPUSVNArc      = 18
)

// SGX types carried in the PCK certificate.
const (
	SGXTypeStandard              = 0
	SGXTypeScalable              = 1
	SGXTypeScalableWithIntegrity = 2
)

// PCKExtension is the content of the SGX extension of a PCK certificate.
type PCKExtension struct {
	PPID [16]byte
	// TCBComponents are the 16 SGX TCB component SVNs; CPUSVN is the raw CPUSVN they come from.
	TCBComponents [16]uint8
	PCESVN        uint16
	CPUSVN        [16]byte
	PCEID         [2]byte
	FMSPC         [6]byte
	SGXType       int
	// Platform CA certificates only.
	PlatformInstanceID []byte
	DynamicPlatform    *bool
	CachedKeys         *bool
	SMTEnabled         *bool
}

type extensionEntry struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

// PCKExtensionFromCertificate finds and parses the SGX extension of a PCK certificate.
func PCKExtensionFromCertificate(cert *x509.Certificate) (*PCKExtension, error) {
	var found []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDSGXExtension) {
			if found != nil {
				return nil, fmt.Errorf("PCK certificate has more than one SGX extension")
			}
			found = ext.Value
		}
	}
	if found == nil {
		return nil, fmt.Errorf("PCK certificate has no SGX extension (OID %s)", OIDSGXExtension)
	}
	return ParsePCKExtension(found)
}

// ParsePCKExtension parses the DER value of the SGX extension. PPID, TCB, PCEID, FMSPC and SGX type
// must each appear exactly once; unknown entries are skipped so newer certificates still parse.
func ParsePCKExtension(der []byte) (*PCKExtension, error) {
	var entries []extensionEntry
	if err := unmarshalExact(der, &entries); err != nil {
		return nil, fmt.Errorf("SGX extension: %w", err)
	}
	p := &PCKExtension{}
	seen := map[string]bool{}
	for _, e := range entries {
		key := e.ID.String()
		if seen[key] {
			return nil, fmt.Errorf("SGX extension: duplicate entry %s", key)
		}
		seen[key] = true
		var err error
		switch {
		case e.ID.Equal(oidPPID):
			err = octets(e.Value, p.PPID[:], "PPID")
		case e.ID.Equal(oidTCB):
			err = p.parseTCB(e.Value)
		case e.ID.Equal(oidPCEID):
			err = octets(e.Value, p.PCEID[:], "PCEID")
		case e.ID.Equal(oidFMSPC):
			err = octets(e.Value, p.FMSPC[:], "FMSPC")
		case e.ID.Equal(oidSGXType):
			var t asn1.Enumerated
			if err = unmarshalExact(e.Value.FullBytes, &t); err == nil {
				if t < 0 || t > 2 {
					err = fmt.Errorf("SGX type %d out of range", t)
				}
				p.SGXType = int(t)
			}
		case e.ID.Equal(oidPlatformInstanceID):
			var b []byte
			if err = unmarshalExact(e.Value.FullBytes, &b); err == nil {
				if len(b) != 16 {
					err = fmt.Errorf("platform instance ID is %d bytes, want 16", len(b))
				}
				p.PlatformInstanceID = b
			}
		case e.ID.Equal(oidConfiguration):
			err = p.parseConfiguration(e.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("SGX extension entry %s: %w", key, err)
		}
	}
	for _, required := range []asn1.ObjectIdentifier{oidPPID, oidTCB, oidPCEID, oidFMSPC, oidSGXType} {
		if !seen[required.String()] {
			return nil, fmt.Errorf("SGX extension: missing entry %s", required)
		}
	}
	return p, nil
}

func (p *PCKExtension) parseTCB(v asn1.RawValue) error {
	var entries []extensionEntry
	if err := unmarshalExact(v.FullBytes, &entries); err != nil {
		return fmt.Errorf("TCB: %w", err)
	}
	seen := map[int]bool{}
	for _, e := range entries {
		if len(e.ID) != len(oidTCB)+1 || !e.ID[:len(oidTCB)].Equal(oidTCB) {
			continue // not a TCB sub-entry; tolerate future additions
		}
		arc := e.ID[len(oidTCB)]
		if seen[arc] {
			return fmt.Errorf("TCB: duplicate entry %s", e.ID)
		}
		seen[arc] = true
		switch {
		case arc >= 1 && arc <= tcbComponentCount:
			var svn int
			if err := unmarshalExact(e.Value.FullBytes, &svn); err != nil {
				return fmt.Errorf("TCB component %d: %w", arc, err)
			}
			if svn < 0 || svn > 255 {
				return fmt.Errorf("TCB component %d: SVN %d out of range", arc, svn)
			}
			p.TCBComponents[arc-1] = uint8(svn)
		case arc == tcbPCESVNArc:
			var svn int
			if err := unmarshalExact(e.Value.FullBytes, &svn); err != nil {
				return fmt.Errorf("PCESVN: %w", err)
			}
			if svn < 0 || svn > 0xffff {
				return fmt.Errorf("PCESVN %d out of range", svn)
			}
			p.PCESVN = uint16(svn)
		case arc == tcbCPUSVNArc:
			if err := octets(e.Value, p.CPUSVN[:], "CPUSVN"); err != nil {
				return err
			}
		}
	}
	for arc := 1; arc <= tcbCPUSVNArc; arc++ {
		if !seen[arc] {
			return fmt.Errorf("TCB: missing entry %s.%d", oidTCB, arc)
		}
	}
	return nil
}

func (p *PCKExtension) parseConfiguration(v asn1.RawValue) error {
	var entries []extensionEntry
	if err := unmarshalExact(v.FullBytes, &entries); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	for _, e := range entries {
		var dst **bool
		switch {
		case e.ID.Equal(oidConfigDynamic):
			dst = &p.DynamicPlatform
		case e.ID.Equal(oidConfigCachedKeys):
			dst = &p.CachedKeys
		case e.ID.Equal(oidConfigSMTEnabled):
			dst = &p.SMTEnabled
		default:
			continue
		}
		if *dst != nil {
			return fmt.Errorf("configuration: duplicate entry %s", e.ID)
		}
		var b bool
		if err := unmarshalExact(e.Value.FullBytes, &b); err != nil {
			return fmt.Errorf("configuration %s: %w", e.ID, err)
		}
		*dst = &b
	}
	return nil
}

func octets(v asn1.RawValue, dst []byte, name string) error {
	var b []byte
	if err := unmarshalExact(v.FullBytes, &b); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s is %d bytes, want %d", name, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

// unmarshalExact is asn1.Unmarshal that refuses trailing bytes.
func unmarshalExact(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes after DER value", len(rest))
	}
	return nil
}
