package abi

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

// Sizes of the fixed parts of a DCAP ECDSA quote (Intel SGX ECDSA Quote Library API, Intel TDX
// DCAP Quoting Library API, appendix "Quote Format").
const (
	HeaderSize          = 48
	EnclaveReportSize   = 384
	SignatureSize       = 64 // ECDSA P-256 r||s, big-endian
	AttestationKeySize  = 64 // P-256 public point x||y, big-endian, without the 0x04 prefix
	QEReportDataOffset  = 320
	signatureLengthSize = 4
)

// Header values this verifier understands.
const (
	AttestationKeyTypeECDSAP256 = 2
	TEETypeSGX                  = 0x00000000
	TEETypeTDX                  = 0x00000081
)

// Certification data types (QE certification data). Only type 5 carries the PCK certificate
// chain needed to verify a quote offline; type 6 wraps a QE report around another certification
// data (TDX quotes v4 and later).
const (
	CertDataPPIDCleartext         = 1
	CertDataPPIDRSA2048           = 2
	CertDataPPIDRSA3072           = 3
	CertDataPCKLeafCleartext      = 4
	CertDataPCKCertChain          = 5
	CertDataQEReportCertification = 6
	CertDataPlatformManifest      = 7
)

// IntelQEVendorID is the QE vendor ID of Intel's quoting enclaves.
var IntelQEVendorID = [16]byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// Header is the 48-byte header every DCAP quote starts with.
type Header struct {
	Version            uint16
	AttestationKeyType uint16
	// TEEType is 0 for SGX and 0x81 for TDX (reserved and zero in SGX quote v3).
	TEEType uint32
	// QESVN and PCESVN are filled by the QE in quote v3; in v4/v5 these bytes are reserved.
	QESVN      uint16
	PCESVN     uint16
	QEVendorID [16]byte
	UserData   [20]byte
}

// ParseHeader reads a quote header from the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	r := newByteReader("quote header", b)
	h.Version = r.u16("version")
	h.AttestationKeyType = r.u16("attestation key type")
	h.TEEType = r.u32("TEE type")
	h.QESVN = r.u16("QE SVN")
	h.PCESVN = r.u16("PCE SVN")
	r.copyTo(h.QEVendorID[:], "QE vendor ID")
	r.copyTo(h.UserData[:], "user data")
	return h, r.err
}

// EnclaveReport is the 384-byte SGX REPORT body: the ISV enclave report of an SGX quote and the
// QE report inside every quote's signature data.
type EnclaveReport struct {
	CPUSVN       [16]byte
	MiscSelect   [4]byte // raw little-endian bytes, compared byte-wise with QE identity masks
	ISVExtProdID [16]byte
	// Attributes holds FLAGS (8 bytes LE) then XFRM (8 bytes LE).
	Attributes  [16]byte
	MRENCLAVE   [32]byte
	MRSIGNER    [32]byte
	ConfigID    [64]byte
	ISVProdID   uint16
	ISVSVN      uint16
	ConfigSVN   uint16
	ISVFamilyID [16]byte
	ReportData  [64]byte
}

// Flags returns the ATTRIBUTES.FLAGS word.
func (e *EnclaveReport) Flags() uint64 {
	return leUint64(e.Attributes[0:8])
}

// XFRM returns the ATTRIBUTES.XFRM word.
func (e *EnclaveReport) XFRM() uint64 {
	return leUint64(e.Attributes[8:16])
}

// Debug reports ATTRIBUTES.DEBUG (flags bit 1): the enclave's memory can be read by a debugger.
func (e *EnclaveReport) Debug() bool { return e.Flags()&0x2 != 0 }

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// ParseEnclaveReport reads an enclave report body; b must be exactly EnclaveReportSize bytes.
func ParseEnclaveReport(b []byte) (*EnclaveReport, error) {
	if len(b) != EnclaveReportSize {
		return nil, fmt.Errorf("enclave report: %d bytes, want %d", len(b), EnclaveReportSize)
	}
	e := &EnclaveReport{}
	r := newByteReader("enclave report", b)
	r.copyTo(e.CPUSVN[:], "CPUSVN")
	r.copyTo(e.MiscSelect[:], "MISCSELECT")
	r.take(12, "reserved1")
	r.copyTo(e.ISVExtProdID[:], "ISVEXTPRODID")
	r.copyTo(e.Attributes[:], "ATTRIBUTES")
	r.copyTo(e.MRENCLAVE[:], "MRENCLAVE")
	r.take(32, "reserved2")
	r.copyTo(e.MRSIGNER[:], "MRSIGNER")
	r.take(32, "reserved3")
	r.copyTo(e.ConfigID[:], "CONFIGID")
	e.ISVProdID = r.u16("ISVPRODID")
	e.ISVSVN = r.u16("ISVSVN")
	e.ConfigSVN = r.u16("CONFIGSVN")
	r.take(42, "reserved4")
	r.copyTo(e.ISVFamilyID[:], "ISVFAMILYID")
	r.copyTo(e.ReportData[:], "REPORTDATA")
	return e, r.err
}

// CertificationData is one typed certification data block (type, then its bytes).
type CertificationData struct {
	Type uint16
	Data []byte
}

// SignatureData is the ECDSA-256 quote signature data: the quote signature by the attestation key,
// the QE report that certifies that key, the PCK signature over the QE report, and the PCK
// certification data. The same logical content is laid out differently in quote v3 and v4+.
type SignatureData struct {
	Signature      [SignatureSize]byte
	AttestationKey [AttestationKeySize]byte
	// QEReportRaw is the exact QE report as signed by the PCK key; QEReport is its parsed form.
	QEReportRaw       []byte
	QEReport          *EnclaveReport
	QEReportSignature [SignatureSize]byte
	QEAuthData        []byte
	// Certification is the innermost certification data (in v4+ the one inside type 6).
	Certification CertificationData
}

// SignatureLayout selects where the QE report lives in the signature data.
type SignatureLayout int

const (
	// LayoutV3: QE report, its signature and QE auth data inline, then certification data.
	LayoutV3 SignatureLayout = 3
	// LayoutV4: certification data type 6 wraps QE report, signature, auth data and an inner
	// certification data (quote v4 and v5).
	LayoutV4 SignatureLayout = 4
)

// ParseSignatureData reads the signature data of exactly len(b) bytes (the quote's declared
// signature data length). Every length field must fit and together they must fill b exactly.
func ParseSignatureData(b []byte, layout SignatureLayout) (*SignatureData, error) {
	s := &SignatureData{}
	r := newByteReader("quote signature data", b)
	r.copyTo(s.Signature[:], "ECDSA quote signature")
	r.copyTo(s.AttestationKey[:], "attestation key")
	if r.err != nil {
		return nil, r.err
	}
	switch layout {
	case LayoutV3:
		if err := s.readQEReportCertification(r); err != nil {
			return nil, err
		}
	case LayoutV4:
		outer, err := readCertificationData(r)
		if err != nil {
			return nil, err
		}
		if outer.Type != CertDataQEReportCertification {
			return nil, fmt.Errorf("quote signature data: certification data type %d, want %d (QE report certification data)", outer.Type, CertDataQEReportCertification)
		}
		inner := newByteReader("QE report certification data", outer.Data)
		if err := s.readQEReportCertification(inner); err != nil {
			return nil, err
		}
		if inner.remaining() != 0 {
			return nil, fmt.Errorf("QE report certification data: %d bytes after the inner certification data", inner.remaining())
		}
	default:
		return nil, fmt.Errorf("quote signature data: unknown layout %d", layout)
	}
	if r.remaining() != 0 {
		return nil, fmt.Errorf("quote signature data: %d bytes after the certification data", r.remaining())
	}
	return s, nil
}

// readQEReportCertification reads QE report, its signature, QE auth data and certification data.
func (s *SignatureData) readQEReportCertification(r *byteReader) error {
	raw := r.take(EnclaveReportSize, "QE report")
	r.copyTo(s.QEReportSignature[:], "QE report signature")
	authLen := r.u16("QE auth data size")
	auth := r.take(int(authLen), "QE auth data")
	if r.err != nil {
		return r.err
	}
	qe, err := ParseEnclaveReport(raw)
	if err != nil {
		return fmt.Errorf("QE report: %w", err)
	}
	s.QEReportRaw = raw
	s.QEReport = qe
	s.QEAuthData = auth
	cd, err := readCertificationData(r)
	if err != nil {
		return err
	}
	s.Certification = cd
	return nil
}

func readCertificationData(r *byteReader) (CertificationData, error) {
	t := r.u16("certification data type")
	n := r.u32("certification data size")
	if r.err != nil {
		return CertificationData{}, r.err
	}
	if uint64(n) > uint64(r.remaining()) {
		return CertificationData{}, fmt.Errorf("certification data type %d: size %d exceeds the %d bytes left", t, n, r.remaining())
	}
	return CertificationData{Type: t, Data: r.take(int(n), "certification data")}, r.err
}

// ErrUnsupportedCertificationData is wrapped by PCKChain for certification data that does not
// carry a PCK certificate chain (for example an encrypted PPID, which needs Intel PCS online).
var ErrUnsupportedCertificationData = errors.New("unsupported certification data type")

func certDataName(t uint16) string {
	switch t {
	case CertDataPPIDCleartext:
		return "clear-text PPID"
	case CertDataPPIDRSA2048:
		return "PPID encrypted with RSA-2048"
	case CertDataPPIDRSA3072:
		return "PPID encrypted with RSA-3072"
	case CertDataPCKLeafCleartext:
		return "clear-text PCK leaf certificate"
	case CertDataPCKCertChain:
		return "PCK certificate chain"
	case CertDataQEReportCertification:
		return "QE report certification data"
	case CertDataPlatformManifest:
		return "platform manifest"
	}
	return "unknown"
}

// PCKChain decodes a type-5 certification data (PEM certificates, PCK leaf first, usually ending
// in "\n\0") into certificates in the order given. Other types fail with
// ErrUnsupportedCertificationData: without the PCK chain the QE report signature cannot be
// checked offline.
func (c CertificationData) PCKChain() ([]*x509.Certificate, error) {
	if c.Type != CertDataPCKCertChain {
		return nil, fmt.Errorf("%w %d (%s): only type %d (PCK certificate chain) can be verified offline", ErrUnsupportedCertificationData, c.Type, certDataName(c.Type), CertDataPCKCertChain)
	}
	certs, err := attestation.ParsePEMCertificates(bytes.TrimRight(c.Data, "\x00"))
	if err != nil {
		return nil, fmt.Errorf("PCK certificate chain: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("PCK certificate chain: no certificate")
	}
	return certs, nil
}
