// Package dcaptest forges Intel DCAP evidence and collateral under keys the caller holds, so that
// tests can play the attacker who signs a PCK chain, a TCB info and a QE identity with a key of
// its own (the sim platform key the node operator holds, or any self-made CA) and show that the
// verifiers refuse it. A forgery re-signs a real quote: the body, QE report and PCK certificate
// extensions stay those of real hardware, so everything but the trust anchor is as a verifier
// expects. It is for tests only and must never be linked into a binary.
package dcaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
)

// PKI is an attacker's imitation of Intel's DCAP PKI: a root, a PCK Platform CA and a TCB Signing
// certificate, named as Intel names them.
type PKI struct {
	// LastPCK is the PCK certificate of the latest Reforge (what Intel PCS would serve for an
	// encrypted-PPID quote).
	LastPCK    *x509.Certificate
	RootKey    *ecdsa.PrivateKey
	Root       *x509.Certificate
	PCKCAKey   *ecdsa.PrivateKey
	PCKCA      *x509.Certificate
	TCBSignKey *ecdsa.PrivateKey
	TCBSigning *x509.Certificate
}

// NewPKI builds a PKI valid from notBefore to notAfter. With root nil it makes a self-signed
// "Intel SGX Root CA" for rootKey; otherwise root is the attacker's existing certificate for
// rootKey (for example the sim platform certificate, whose key the node operator holds).
func NewPKI(rootKey *ecdsa.PrivateKey, root *x509.Certificate, notBefore, notAfter time.Time) (*PKI, error) {
	p := &PKI{RootKey: rootKey, Root: root}
	var err error
	if p.Root == nil {
		tmpl := caTemplate("Intel SGX Root CA", notBefore, notAfter)
		if p.Root, err = create(tmpl, tmpl, &rootKey.PublicKey, rootKey); err != nil {
			return nil, err
		}
	}
	if p.PCKCAKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if p.PCKCA, err = create(caTemplate("Intel SGX PCK Platform CA", notBefore, notAfter), p.Root, &p.PCKCAKey.PublicKey, rootKey); err != nil {
		return nil, err
	}
	if p.TCBSignKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	tcb := leafTemplate(pkix.Name{CommonName: "Intel SGX TCB Signing", Organization: []string{"Intel Corporation"}}, notBefore, notAfter)
	if p.TCBSigning, err = create(tcb, p.Root, &p.TCBSignKey.PublicKey, rootKey); err != nil {
		return nil, err
	}
	return p, nil
}

// ReissueTCBSigning replaces the TCB Signing certificate by one for the same key valid from
// notBefore to notAfter (Intel re-issues it that way), so that collateral signed before stays
// valid under the new certificate.
func (p *PKI) ReissueTCBSigning(notBefore, notAfter time.Time) error {
	tcb := leafTemplate(pkix.Name{CommonName: "Intel SGX TCB Signing", Organization: []string{"Intel Corporation"}}, notBefore, notAfter)
	c, err := create(tcb, p.Root, &p.TCBSignKey.PublicKey, p.RootKey)
	if err != nil {
		return err
	}
	p.TCBSigning = c
	return nil
}

// IssuerChainPEM is the TCB info / QE identity issuer chain (TCB Signing, root) as PEM: collateral
// as Intel PCS delivers it in its TCB-Info-Issuer-Chain header.
func (p *PKI) IssuerChainPEM() []byte {
	return append(pemCert(p.TCBSigning), pemCert(p.Root)...)
}

// CRLs returns an empty CRL of the root (revoking nothing) and one of the PCK CA revoking the
// given serials, both issued at thisUpdate and valid for a month, as DER.
func (p *PKI) CRLs(thisUpdate time.Time, revoked ...*big.Int) (rootCRL, pckCRL []byte, err error) {
	return p.CRLsUntil(thisUpdate, thisUpdate.Add(30*24*time.Hour), revoked...)
}

// CRLsUntil is CRLs with the given nextUpdate.
func (p *PKI) CRLsUntil(thisUpdate, nextUpdate time.Time, revoked ...*big.Int) (rootCRL, pckCRL []byte, err error) {
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	if rootCRL, err = x509.CreateRevocationList(rand.Reader, tmpl, p.Root, p.RootKey); err != nil {
		return nil, nil, err
	}
	for _, sn := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: thisUpdate})
	}
	if pckCRL, err = x509.CreateRevocationList(rand.Reader, tmpl, p.PCKCA, p.PCKCAKey); err != nil {
		return nil, nil, err
	}
	return rootCRL, pckCRL, nil
}

// Options change what Reforge writes into the forged quote.
type Options struct {
	// ReportData, when set, replaces the quote body's report data (for Enclave-TLS, where it must
	// bind the certificate's key).
	ReportData *[64]byte
	// EncryptedPPID writes certification data type 3 (a PPID encrypted with RSA-3072, then the
	// platform's CPUSVN, PCESVN and PCE ID) instead of the PCK chain: the PCK certificate then
	// comes from collateral (PKI.LastPCK).
	EncryptedPPID bool
	// PCKNotBefore and PCKNotAfter, when set, are the forged PCK certificate's validity
	// (default: the PCK CA's).
	PCKNotBefore, PCKNotAfter time.Time
}

// Reforge re-signs a real quote (SGX v3 or TDX v4) under p: a new attestation key signs header
// and body, the QE report binds that key, a new PCK certificate (with the real PCK certificate's
// subject and SGX extensions) signs the QE report, and the certification data carries the chain
// PCK, PCK CA, root.
func (p *PKI) Reforge(quote []byte, o Options) ([]byte, error) {
	h, err := abi.ParseHeader(quote)
	if err != nil {
		return nil, err
	}
	var bodySize, reportDataOffset int
	var layout abi.SignatureLayout
	switch {
	case h.Version == 3 && h.TEEType == abi.TEETypeSGX:
		bodySize, reportDataOffset, layout = abi.EnclaveReportSize, abi.QEReportDataOffset, abi.LayoutV3
	case h.Version == 4 && h.TEEType == abi.TEETypeTDX:
		bodySize, reportDataOffset, layout = 584, 584-64, abi.LayoutV4
	default:
		return nil, fmt.Errorf("reforge: quote version %d TEE type %#x not supported", h.Version, h.TEEType)
	}
	signedLen := abi.HeaderSize + bodySize
	if len(quote) < signedLen+4 {
		return nil, errors.New("reforge: quote too short")
	}
	sigLen := int(binary.LittleEndian.Uint32(quote[signedLen:]))
	if len(quote) < signedLen+4+sigLen {
		return nil, errors.New("reforge: signature data truncated")
	}
	sd, err := abi.ParseSignatureData(quote[signedLen+4:signedLen+4+sigLen], layout)
	if err != nil {
		return nil, err
	}
	realChain, err := sd.Certification.PCKChain()
	if err != nil {
		return nil, err
	}

	signed := bytes.Clone(quote[:signedLen])
	if o.ReportData != nil {
		copy(signed[abi.HeaderSize+reportDataOffset:], o.ReportData[:])
	}
	attKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	attPub := rawPoint(&attKey.PublicKey)
	quoteSig, err := rawSign(attKey, signed)
	if err != nil {
		return nil, err
	}

	// The QE report binds the attestation key and QE auth data: SHA-256 of both, zero-padded.
	qeReport := bytes.Clone(sd.QEReportRaw)
	binding := sha256.Sum256(append(attPub, sd.QEAuthData...))
	clear(qeReport[abi.QEReportDataOffset:])
	copy(qeReport[abi.QEReportDataOffset:], binding[:])

	pckKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := p.PCKCA.NotBefore, p.PCKCA.NotAfter
	if !o.PCKNotBefore.IsZero() {
		notBefore = o.PCKNotBefore
	}
	if !o.PCKNotAfter.IsZero() {
		notAfter = o.PCKNotAfter
	}
	tmpl := leafTemplate(realChain[0].Subject, notBefore, notAfter)
	for _, e := range realChain[0].Extensions {
		if e.Id.Equal(oidSGXExtensions) {
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
		}
	}
	pck, err := create(tmpl, p.PCKCA, &pckKey.PublicKey, p.PCKCAKey)
	if err != nil {
		return nil, err
	}
	qeSig, err := rawSign(pckKey, qeReport)
	if err != nil {
		return nil, err
	}
	p.LastPCK = pck
	certType, certData := uint16(abi.CertDataPCKCertChain), append(append(append(pemCert(pck), pemCert(p.PCKCA)...), pemCert(p.Root)...), 0)
	if o.EncryptedPPID {
		ext, err := abi.PCKExtensionFromCertificate(pck)
		if err != nil {
			return nil, err
		}
		certType, certData = abi.CertDataPPIDRSA3072, make([]byte, 384, 404)
		if _, err := rand.Read(certData); err != nil {
			return nil, err
		}
		certData = append(certData, ext.CPUSVN[:]...)
		certData = binary.LittleEndian.AppendUint16(certData, ext.PCESVN)
		certData = append(certData, ext.PCEID[:]...)
	}

	// QE report certification: QE report, its signature, auth data, then the PCK chain (type 5).
	var qeCert bytes.Buffer
	qeCert.Write(qeReport)
	qeCert.Write(qeSig)
	binary.Write(&qeCert, binary.LittleEndian, uint16(len(sd.QEAuthData)))
	qeCert.Write(sd.QEAuthData)
	writeCertData(&qeCert, certType, certData)

	var sigData bytes.Buffer
	sigData.Write(quoteSig)
	sigData.Write(attPub)
	if layout == abi.LayoutV3 {
		sigData.Write(qeCert.Bytes())
	} else {
		writeCertData(&sigData, abi.CertDataQEReportCertification, qeCert.Bytes())
	}
	out := append(signed, binary.LittleEndian.AppendUint32(nil, uint32(sigData.Len()))...)
	return append(out, sigData.Bytes()...), nil
}

// Resign re-signs a real Intel collateral document ({"tcbInfo": …, "signature": …} or
// {"enclaveIdentity": …, "signature": …}) with p's TCB Signing key after edit has changed the
// signed body (edit may be nil). The signature covers the body's exact bytes, as Intel's does.
func (p *PKI) Resign(doc []byte, edit func(body []byte) []byte) ([]byte, error) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(doc, &outer); err != nil {
		return nil, fmt.Errorf("resign: %w", err)
	}
	name := ""
	for _, k := range []string{"tcbInfo", "enclaveIdentity"} {
		if _, ok := outer[k]; ok {
			name = k
		}
	}
	if name == "" {
		return nil, errors.New("resign: neither tcbInfo nor enclaveIdentity")
	}
	body := []byte(outer[name])
	if edit != nil {
		body = edit(bytes.Clone(body))
	}
	sig, err := rawSign(p.TCBSignKey, body)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"%s":%s,"signature":"%s"}`, name, body, hex.EncodeToString(sig)), nil
}

// oidSGXExtensions is Intel's SGX extensions of PCK certificates (FMSPC, TCB, PCE ID, …).
var oidSGXExtensions = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}

func caTemplate(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Intel Corporation"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"}, Country: []string{"US"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

func leafTemplate(subject pkix.Name, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func create(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("forge certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func rawPoint(k *ecdsa.PublicKey) []byte {
	b := make([]byte, 64)
	k.X.FillBytes(b[:32])
	k.Y.FillBytes(b[32:])
	return b
}

// rawSign is ECDSA P-256 over SHA-256, as r||s of 32 bytes each (the quote's encoding).
func rawSign(k *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func writeCertData(w *bytes.Buffer, typ uint16, data []byte) {
	binary.Write(w, binary.LittleEndian, typ)
	binary.Write(w, binary.LittleEndian, uint32(len(data)))
	w.Write(data)
}
