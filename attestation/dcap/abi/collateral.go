package abi

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
)

// Collateral is what was recognised among raw collateral files. Files that are none of these
// (another TEE's collateral, unrelated JSON) are counted in Ignored and otherwise left alone.
type Collateral struct {
	TCBInfos     []*TCBInfo
	QEIdentities []*QEIdentity
	Certificates []*x509.Certificate
	CRLs         []*x509.RevocationList
	Ignored      int
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
		c.Ignored++
		return nil
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
	}
	c.Ignored++
	return nil
}

func (c *Collateral) addJSON(b []byte) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		c.Ignored++ // JSON-looking but not an object we know
		return nil
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
		c.Ignored++
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
			c.Ignored++
		}
		rest = next
	}
	if n == 0 {
		return fmt.Errorf("malformed PEM")
	}
	return nil
}
