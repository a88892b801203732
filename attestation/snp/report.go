package snp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// Layout facts of the ATTESTATION_REPORT (SEV-SNP firmware ABI, "ATTESTATION_REPORT Structure").
const (
	// ReportSize is the size of an attestation report.
	ReportSize = abi.ReportSize
	// SignedSize is how many leading bytes of the report the signature covers (0x000–0x29F).
	SignedSize = 0x2A0

	offVersion  = 0x00
	offSigAlgo  = 0x34
	sigAlgoP384 = 1 // ECDSA P-384 with SHA-384
	// CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (version 3 and later; reserved before).
	offCPUID = 0x188
	// LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR (version 5 and later; reserved before).
	offMitVectors, endMitVectors = 0x1F8, 0x208

	certTableEntrySize = 24
)

// GUIDs of the extended-report certificate table (SEV-SNP GHCB/firmware ABI and the Linux kernel's
// auxblob), in their textual form.
const (
	vcekGUID = "63da758d-e664-4564-adc5-f4b93be8accd"
	vlekGUID = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
	askGUID  = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
	arkGUID  = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
)

// GUID is a certificate-table entry identifier, stored in the table in its textual byte order.
type GUID [16]byte

func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func mustGUID(s string) GUID {
	var g GUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(g) {
		panic("snp: bad built-in GUID " + s)
	}
	copy(g[:], b)
	return g
}

var (
	guidVCEK = mustGUID(vcekGUID)
	guidVLEK = mustGUID(vlekGUID)
	guidASK  = mustGUID(askGUID)
	guidARK  = mustGUID(arkGUID)
)

// CertEntry is one blob of an extended report's certificate table.
type CertEntry struct {
	GUID GUID
	Data []byte
}

// Evidence is a parsed, not yet verified, SNP attestation report and the certificates that came with it.
type Evidence struct {
	// Raw is the report itself, exactly ReportSize bytes.
	Raw    []byte
	Report *spb.Report
	Signer abi.SignerInfo
	// Certs is the extended report's certificate table, empty for a plain report.
	Certs []CertEntry
}

// CPUID returns the report's CPUID family, model and stepping (zero before version 3).
func (e *Evidence) CPUID() (family, model, stepping byte) {
	if e.Report.GetVersion() < abi.ReportVersion3 {
		return 0, 0, 0
	}
	return e.Raw[offCPUID], e.Raw[offCPUID+1], e.Raw[offCPUID+2]
}

// MatchReport reports whether b looks like an SNP report (size, a supported version, ECDSA P-384
// signature algorithm). It says nothing about validity.
func MatchReport(b []byte) bool {
	if len(b) < ReportSize {
		return false
	}
	v := binary.LittleEndian.Uint32(b[offVersion:])
	return v >= abi.MinSupportedReportVersion && v <= abi.MaxSupportedReportVersion &&
		binary.LittleEndian.Uint32(b[offSigAlgo:]) == sigAlgoP384
}

// ParseEvidence parses a report optionally followed by an extended-report certificate table.
// Reserved fields must be zero; unused bytes of the certificate table must be zero unless
// allowTrailing is set.
func ParseEvidence(b []byte, allowTrailing bool) (*Evidence, error) {
	if len(b) < ReportSize {
		return nil, fmt.Errorf("parse SNP report: %d bytes, need at least %d", len(b), ReportSize)
	}
	raw := b[:ReportSize]
	if err := abi.ValidateReportFormat(raw); err != nil {
		return nil, fmt.Errorf("parse SNP report: %w", err)
	}
	if algo := binary.LittleEndian.Uint32(raw[offSigAlgo:]); algo != sigAlgoP384 {
		return nil, fmt.Errorf("parse SNP report: signature algorithm %d not supported (want 1, ECDSA P-384/SHA-384)", algo)
	}
	report, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("parse SNP report: %w", err)
	}
	signer, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("parse SNP report KEY_INFO: %w", err)
	}
	switch signer.SigningKey {
	case abi.VcekReportSigner, abi.VlekReportSigner:
	case abi.NoneReportSigner:
		return nil, errors.New("parse SNP report: KEY_INFO says the report is not signed")
	default:
		return nil, fmt.Errorf("parse SNP report: unknown signing key %v", signer.SigningKey)
	}
	// MASK_CHIP_KEY (KEY_INFO bit 1): the firmware writes zeros instead of a signature.
	if signer.MaskChipKey {
		return nil, errors.New("parse SNP report: KEY_INFO.MASK_CHIP_KEY is set: the firmware did not sign the report")
	}
	// go-sev-guest reads the mitigation vectors whatever the version; before version 5 those
	// bytes are reserved and must be zero like every other reserved field.
	if report.GetVersion() < abi.ReportVersion5 && !allZero(raw[offMitVectors:endMitVectors]) {
		return nil, fmt.Errorf("parse SNP report: version %d report has non-zero reserved bytes 0x%x–0x%x (mitigation vectors exist from version 5)",
			report.GetVersion(), offMitVectors, endMitVectors-1)
	}
	ev := &Evidence{Raw: bytes.Clone(raw), Report: report, Signer: signer}
	if len(b) > ReportSize {
		ev.Certs, err = parseCertTable(b[ReportSize:], allowTrailing)
		if err != nil {
			return nil, fmt.Errorf("parse SNP certificate table: %w", err)
		}
	}
	return ev, nil
}

// parseCertTable reads the GUID/offset/length table that follows an extended report. Offsets are
// relative to the start of the table. go-sev-guest's abi.CertTable is not used here because its
// range check adds offset and length in 32 bits, which can wrap on hostile input.
func parseCertTable(b []byte, allowTrailing bool) ([]CertEntry, error) {
	type span struct{ off, end uint64 }
	var (
		entries []CertEntry
		spans   []span
		seen    = map[GUID]bool{}
		hdrEnd  uint64
	)
	for i := 0; ; i++ {
		pos := i * certTableEntrySize
		if pos+certTableEntrySize > len(b) {
			return nil, errors.New("no terminating all-zero entry")
		}
		e := b[pos : pos+certTableEntrySize]
		var g GUID
		copy(g[:], e[:16])
		off := uint64(binary.LittleEndian.Uint32(e[16:]))
		n := uint64(binary.LittleEndian.Uint32(e[20:]))
		if g == (GUID{}) && off == 0 && n == 0 {
			hdrEnd = uint64(pos + certTableEntrySize)
			break
		}
		if seen[g] {
			return nil, fmt.Errorf("entry %d: GUID %v appears twice", i, g)
		}
		seen[g] = true
		if n == 0 {
			return nil, fmt.Errorf("entry %d (%v): zero length", i, g)
		}
		if off+n > uint64(len(b)) {
			return nil, fmt.Errorf("entry %d (%v): bytes [%d, %d) outside the %d-byte table", i, g, off, off+n, len(b))
		}
		entries = append(entries, CertEntry{GUID: g, Data: bytes.Clone(b[off : off+n])})
		spans = append(spans, span{off, off + n})
	}
	for i, s := range spans {
		if s.off < hdrEnd {
			return nil, fmt.Errorf("entry %d (%v): offset %d inside the %d-byte header", i, entries[i].GUID, s.off, hdrEnd)
		}
	}
	if allowTrailing {
		return entries, nil
	}
	// Bytes no entry covers may only be zero padding (the kernel hands out whole pages).
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	pos := hdrEnd
	for _, s := range append(spans, span{uint64(len(b)), uint64(len(b))}) {
		if s.off > pos {
			if i := bytes.IndexFunc(b[pos:s.off], func(r rune) bool { return r != 0 }); i >= 0 {
				return nil, fmt.Errorf("non-zero byte at table offset %d outside every entry", pos+uint64(i))
			}
		}
		pos = max(pos, s.end)
	}
	return entries, nil
}

// MarshalCertTable encodes entries as an extended-report certificate table (header, all-zero
// terminator, then the blobs in order).
func MarshalCertTable(entries []CertEntry) []byte {
	hdr := (len(entries) + 1) * certTableEntrySize
	out := make([]byte, hdr)
	for i, e := range entries {
		h := out[i*certTableEntrySize:]
		copy(h[:16], e.GUID[:])
		binary.LittleEndian.PutUint32(h[16:], uint32(len(out)))
		binary.LittleEndian.PutUint32(h[20:], uint32(len(e.Data)))
		out = append(out, e.Data...)
	}
	return out
}
