package enclavetls

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// certShape is what every certificate of one identity shares, as crypto/x509 encoded it once for
// a prototype certificate: version, signature algorithm, issuer and subject names, public key, the
// fixed extensions (key usage, extended key usage, basic constraints) and the endorsement
// manifest. A certificate for a connection only adds its serial number, validity and evidence.
//
// Why not x509.CreateCertificate for every certificate: after signing it verifies the signature
// it just made (an ECDSA P-256 verification, more than half of a fresh certificate's cost), a
// guard against crypto.Signer implementations that return bad signatures. The identity's key is
// an in-process *ecdsa.PrivateKey, and crypto/tls signs every handshake's CertificateVerify with
// the same key without such a check, so the check protected nothing the handshake does not
// already expose; and the peer verifies the signature anyway. TestCertificateEncoding checks that
// the encoding below is byte for byte crypto/x509's.
type certShape struct {
	version  []byte // [0] EXPLICIT INTEGER 2
	sigAlg   []byte // AlgorithmIdentifier ecdsa-with-SHA256
	issuer   []byte // Name (self-signed: the subject)
	subject  []byte // Name
	spki     []byte // SubjectPublicKeyInfo
	fixed    [][]byte
	endorse  []byte // the endorsement-manifest Extension, or nil
	evidence []byte // DER of OIDTaggedEvidence
}

// newCertShape makes a prototype certificate for key with crypto/x509 and keeps its fixed parts.
func newCertShape(key *ecdsa.PrivateKey, commonName string, endorsements []byte) (*certShape, error) {
	placeholder := pkix.Extension{Id: OIDTaggedEvidence, Value: []byte{0}}
	tmpl := certTemplate(big.NewInt(1), time.Unix(0, 0), time.Unix(0, 0), commonName, placeholder, endorsements)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	proto, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	tbs, err := derElements(proto.RawTBSCertificate)
	if err != nil || len(tbs) != 8 {
		return nil, fmt.Errorf("prototype certificate: unexpected TBSCertificate (%d elements, %v)", len(tbs), err)
	}
	var extList asn1.RawValue
	if _, err := asn1.Unmarshal(tbs[7].Bytes, &extList); err != nil {
		return nil, fmt.Errorf("prototype certificate: extensions: %w", err)
	}
	exts, err := derElements(extList.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("prototype certificate: extensions: %w", err)
	}
	s := &certShape{version: tbs[0].FullBytes, sigAlg: tbs[2].FullBytes, issuer: tbs[3].FullBytes,
		subject: tbs[5].FullBytes, spki: tbs[6].FullBytes}
	if s.evidence, err = asn1.Marshal(OIDTaggedEvidence); err != nil {
		return nil, err
	}
	for i, e := range proto.Extensions {
		switch {
		case e.Id.Equal(OIDTaggedEvidence):
		case e.Id.Equal(OIDEndorsementManifest):
			s.endorse = exts[i].FullBytes
		default:
			s.fixed = append(s.fixed, exts[i].FullBytes)
		}
	}
	return s, nil
}

// certTemplate is the certificate every identity makes (the template for crypto/x509, and what
// certShape.certificate encodes).
func certTemplate(serial *big.Int, notBefore, notAfter time.Time, commonName string, evidence pkix.Extension, endorsements []byte) *x509.Certificate {
	// Non-critical, as rats-tls and Gramine do: a critical unknown extension makes ordinary TLS
	// stacks on the other side refuse the certificate before the RA-TLS verifier sees it.
	exts := []pkix.Extension{evidence}
	if endorsements != nil {
		exts = append(exts, pkix.Extension{Id: OIDEndorsementManifest, Value: endorsements})
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Inclavare Containers"}, CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		ExtraExtensions:       exts,
	}
}

// tbs encodes the TBSCertificate of a certificate with this shape.
func (s *certShape) tbs(serial *big.Int, notBefore, notAfter time.Time, evidence []byte) ([]byte, error) {
	if serial.Sign() <= 0 {
		return nil, errors.New("serial number must be positive")
	}
	sn := serial.Bytes()
	if sn[0]&0x80 != 0 {
		sn = append([]byte{0}, sn...)
	}
	validity := appendTLV(nil, 0x30, derTime(notBefore), derTime(notAfter))
	ext := appendTLV(nil, 0x30, s.evidence, appendTLV(nil, 0x04, evidence))
	exts := append(append([][]byte(nil), s.fixed...), ext)
	if s.endorse != nil {
		exts = append(exts, s.endorse)
	}
	extSeq := appendTLV(nil, 0x30, exts...)
	out := appendTLV(nil, 0x30, s.version, appendTLV(nil, 0x02, sn), s.sigAlg, s.issuer, validity, s.subject, s.spki,
		appendTLV(nil, 0xa3, extSeq))
	if out == nil {
		return nil, errors.New("certificate too large")
	}
	return out, nil
}

// certificate encodes and signs a certificate: SEQUENCE { tbs, signatureAlgorithm, BIT STRING }.
func (s *certShape) certificate(key *ecdsa.PrivateKey, serial *big.Int, notBefore, notAfter time.Time, evidence []byte) ([]byte, error) {
	tbs, err := s.tbs(serial, notBefore, notAfter, evidence)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return appendTLV(nil, 0x30, tbs, s.sigAlg, appendTLV(nil, 0x03, []byte{0}, sig)), nil
}

// derTime encodes t as X.509 does (RFC 5280 4.1.2.5): UTCTime through 2049, GeneralizedTime
// after, in UTC, to the second.
func derTime(t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		return appendTLV(nil, 0x17, []byte(t.Format("060102150405Z")))
	}
	return appendTLV(nil, 0x18, []byte(t.Format("20060102150405Z")))
}

// appendTLV appends a DER element with tag and the concatenated content to b; nil when the
// content is 16 MiB or more (never for a certificate this package makes).
func appendTLV(b []byte, tag byte, content ...[]byte) []byte {
	n := 0
	for _, c := range content {
		n += len(c)
	}
	b = append(b, tag)
	switch {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	case n < 0x10000:
		b = append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return nil
	}
	for _, c := range content {
		if c == nil {
			return nil
		}
		b = append(b, c...)
	}
	return b
}

// derElements splits the content of the DER SEQUENCE der into its elements.
func derElements(der []byte) ([]asn1.RawValue, error) {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("not one DER element (%v)", err)
	}
	var out []asn1.RawValue
	for rest := seq.Bytes; len(rest) > 0; {
		var e asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
