package tdx

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// Quote versions and v5 body types this package understands.
const (
	QuoteVersion4 = 4
	QuoteVersion5 = 5

	BodyTypeSGXReport  = 1 // SGX enclave report in a v5 quote: not a TDX quote
	BodyTypeTDReport10 = 2
	BodyTypeTDReport15 = 3

	TDReport10Size = 584
	TDReport15Size = 648
)

// TDReport is the TD quote body (TDX 1.0 layout, plus the TDX 1.5 fields when Version15).
type TDReport struct {
	TEETCBSVN      [16]byte
	MRSEAM         [48]byte
	MRSIGNERSEAM   [48]byte
	SEAMAttributes [8]byte
	TDAttributes   [8]byte
	XFAM           [8]byte
	MRTD           [48]byte
	MRCONFIGID     [48]byte
	MROWNER        [48]byte
	MROWNERCONFIG  [48]byte
	RTMR           [4][48]byte
	ReportData     [64]byte
	// Version15 marks a TD report 1.5 body, which adds TEETCBSVN2 and MRSERVICETD.
	Version15   bool
	TEETCBSVN2  [16]byte
	MRSERVICETD [48]byte
}

// Debug reports TDATTRIBUTES.DEBUG (bit 0): the host can read and change the TD's state.
func (r *TDReport) Debug() bool { return r.TDAttributes[0]&0x1 != 0 }

// ParseTDReport reads a TD report body of TDReport10Size or TDReport15Size bytes.
func ParseTDReport(b []byte) (*TDReport, error) {
	if len(b) != TDReport10Size && len(b) != TDReport15Size {
		return nil, fmt.Errorf("TD report: %d bytes, want %d or %d", len(b), TDReport10Size, TDReport15Size)
	}
	r := &TDReport{}
	off := 0
	next := func(dst []byte) {
		copy(dst, b[off:off+len(dst)])
		off += len(dst)
	}
	next(r.TEETCBSVN[:])
	next(r.MRSEAM[:])
	next(r.MRSIGNERSEAM[:])
	next(r.SEAMAttributes[:])
	next(r.TDAttributes[:])
	next(r.XFAM[:])
	next(r.MRTD[:])
	next(r.MRCONFIGID[:])
	next(r.MROWNER[:])
	next(r.MROWNERCONFIG[:])
	for i := range r.RTMR {
		next(r.RTMR[i][:])
	}
	next(r.ReportData[:])
	if len(b) == TDReport15Size {
		r.Version15 = true
		next(r.TEETCBSVN2[:])
		next(r.MRSERVICETD[:])
	}
	return r, nil
}

// Quote is a parsed TDX ECDSA quote (v4 or v5).
type Quote struct {
	Header abi.Header
	// BodyType is 2 for v4 (implicitly TD report 1.0) and the v5 body descriptor's type otherwise.
	BodyType uint16
	Report   *TDReport
	// Signed is the exact region covered by the quote signature: header and body for v4; header,
	// body type, body size and body for v5.
	Signed    []byte
	Signature *abi.SignatureData
	// Trailing counts bytes after the signature data: zero padding (TrailingZero), accepted by
	// default, or other bytes, accepted only when asked for.
	Trailing     int
	TrailingZero bool
}

// ParseQuote parses a TDX quote v4 or v5. Zero bytes after the signature data are buffer padding
// (configfs-tsm report buffers, cloud quote services) and are accepted; any other byte after it is
// an error unless allowTrailing.
func ParseQuote(b []byte, allowTrailing bool) (*Quote, error) {
	b = bytes.Clone(b) // the quote keeps slices of its input; do not share the caller's buffer
	h, err := abi.ParseHeader(b)
	if err != nil {
		return nil, fmt.Errorf("parse TDX quote: %w", err)
	}
	if h.Version != QuoteVersion4 && h.Version != QuoteVersion5 {
		return nil, fmt.Errorf("parse TDX quote: version %d, want %d or %d", h.Version, QuoteVersion4, QuoteVersion5)
	}
	if h.AttestationKeyType != abi.AttestationKeyTypeECDSAP256 {
		return nil, fmt.Errorf("parse TDX quote: attestation key type %d, want %d (ECDSA P-256)", h.AttestationKeyType, abi.AttestationKeyTypeECDSAP256)
	}
	if h.TEEType != abi.TEETypeTDX {
		return nil, fmt.Errorf("parse TDX quote: TEE type %#x, want %#x (TDX)", h.TEEType, abi.TEETypeTDX)
	}
	q := &Quote{Header: h, BodyType: BodyTypeTDReport10}
	bodyStart, bodyEnd := abi.HeaderSize, abi.HeaderSize+TDReport10Size
	if h.Version == QuoteVersion5 {
		if len(b) < abi.HeaderSize+6 {
			return nil, fmt.Errorf("parse TDX quote: %d bytes, too short for the v5 body descriptor", len(b))
		}
		q.BodyType = binary.LittleEndian.Uint16(b[abi.HeaderSize:])
		size := uint64(binary.LittleEndian.Uint32(b[abi.HeaderSize+2:]))
		var want uint64
		switch q.BodyType {
		case BodyTypeTDReport10:
			want = TDReport10Size
		case BodyTypeTDReport15:
			want = TDReport15Size
		default:
			return nil, fmt.Errorf("parse TDX quote: v5 body type %d is not a TD report (want %d or %d)", q.BodyType, BodyTypeTDReport10, BodyTypeTDReport15)
		}
		if size != want {
			return nil, fmt.Errorf("parse TDX quote: v5 body type %d has size %d, want %d", q.BodyType, size, want)
		}
		bodyStart = abi.HeaderSize + 6
		bodyEnd = bodyStart + int(size)
	}
	if len(b) < bodyEnd+4 {
		return nil, fmt.Errorf("parse TDX quote: %d bytes, need at least %d for header, body and signature length", len(b), bodyEnd+4)
	}
	if q.Report, err = ParseTDReport(b[bodyStart:bodyEnd]); err != nil {
		return nil, fmt.Errorf("parse TDX quote: %w", err)
	}
	q.Signed = b[:bodyEnd]
	sigLen := uint64(binary.LittleEndian.Uint32(b[bodyEnd:]))
	start := uint64(bodyEnd + 4)
	if sigLen > uint64(len(b))-start {
		return nil, fmt.Errorf("parse TDX quote: signature data length %d exceeds the %d bytes left", sigLen, uint64(len(b))-start)
	}
	end := start + sigLen
	q.Trailing = len(b) - int(end)
	zero := dcap.ZeroPadding(b[end:])
	q.TrailingZero = q.Trailing > 0 && zero
	if q.Trailing > 0 && !zero && !allowTrailing {
		return nil, fmt.Errorf("parse TDX quote: %w: %d bytes after the signature data are not zero padding (%s)", dcap.ErrTrailingData, q.Trailing, dcap.TrailingDataHint)
	}
	if q.Signature, err = abi.ParseSignatureData(b[start:end], abi.LayoutV4); err != nil {
		return nil, fmt.Errorf("parse TDX quote: %w", err)
	}
	return q, nil
}
