package abi

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// Collateral is what was recognised among raw collateral files. Every file must be one of these
// (certificates and CRLs also serve other TEEs, such as an SNP VCEK): a file that is none is an
// error, never silently ignored, since a user who passed it would believe it was used.
type Collateral struct {
	TCBInfos     []*TCBInfo
	QEIdentities []*QEIdentity
	Certificates []*x509.Certificate
	CRLs         []*x509.RevocationList
}

// ParseCollateral sorts raw files by content: TCB info JSON, enclave identity JSON, PEM blocks
// (CERTIFICATE, X509 CRL) and DER certificates or CRLs. A file that is recognised but malformed
// is an error, since silently dropping it could hide a revocation or a TCB downgrade.
func ParseCollateral(files [][]byte) (*Collateral, error) {
	c := &Collateral{}
	for i, f := range files {
		if err := c.add(f); err != nil {
			return nil, fmt.Errorf("collateral file %d: %w", i, err)
		}
	}
	return c, nil
}

func (c *Collateral) add(f []byte) error {
	trimmed := bytes.TrimSpace(f)
	switch {
	case len(trimmed) == 0:
		return errors.New("empty file")
	case trimmed[0] == '{':
		return c.addJSON(trimmed)
	case bytes.Contains(f, []byte("-----BEGIN ")):
		return c.addPEM(f)
	case f[0] == 0x30: // DER SEQUENCE
		if cert, err := x509.ParseCertificate(f); err == nil {
			c.Certificates = append(c.Certificates, cert)
			return nil
		}
		if crl, err := x509.ParseRevocationList(f); err == nil {
			c.CRLs = append(c.CRLs, crl)
			return nil
		}
		return errors.New("DER data that is neither a certificate nor a CRL")
	}
	return errors.New("not collateral: want a TCB info or QE identity JSON, a collateral bundle JSON, PEM or DER certificates or CRLs")
}

func (c *Collateral) addJSON(b []byte) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	_, isTCB := keys["tcbInfo"]
	_, isQE := keys["enclaveIdentity"]
	switch {
	case isQVECollateral(keys):
		return c.addQVE(b)
	case isTCB && isQE:
		return fmt.Errorf("JSON has both tcbInfo and enclaveIdentity")
	case isTCB:
		ti, err := ParseTCBInfo(b)
		if err != nil {
			return err
		}
		c.TCBInfos = append(c.TCBInfos, ti)
	case isQE:
		qi, err := ParseQEIdentity(b)
		if err != nil {
			return err
		}
		c.QEIdentities = append(c.QEIdentities, qi)
	default:
		return errors.New("JSON that is neither a TCB info, a QE identity nor a collateral bundle")
	}
	return nil
}

func (c *Collateral) addPEM(b []byte) error {
	rest := b
	n := 0
	for {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		switch block.Type {
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("PEM block %d: %w", n, err)
			}
			c.Certificates = append(c.Certificates, cert)
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(block.Bytes)
			if err != nil {
				return fmt.Errorf("PEM block %d: %w", n, err)
			}
			c.CRLs = append(c.CRLs, crl)
		default:
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE or X509 CRL", n, block.Type)
		}
		rest = next
	}
	if n == 0 {
		return fmt.Errorf("malformed PEM")
	}
	return nil
}
