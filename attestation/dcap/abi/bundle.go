package abi

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
)

// qveCollateral is collateral as one JSON object, the way verifiers serialise Intel's
// sgx_ql_qve_collateral_t (field names as in that struct): issuer chains and certificates as PEM,
// CRLs as PEM or as hex (or base64) of their DER, and the TCB info and QE identity either as the
// whole signed document Intel PCS returns ({"tcbInfo": …, "signature": …}) or as the raw signed
// body with its signature in hex beside it (tcb_info_signature, qe_identity_signature).
type qveCollateral struct {
	Version               *json.Number `json:"version"`
	TEEType               *json.Number `json:"tee_type"`
	PCKCRLIssuerChain     string       `json:"pck_crl_issuer_chain"`
	RootCACRL             string       `json:"root_ca_crl"`
	PCKCRL                string       `json:"pck_crl"`
	TCBInfoIssuerChain    string       `json:"tcb_info_issuer_chain"`
	TCBInfo               string       `json:"tcb_info"`
	TCBInfoSignature      string       `json:"tcb_info_signature"`
	QEIdentityIssuerChain string       `json:"qe_identity_issuer_chain"`
	QEIdentity            string       `json:"qe_identity"`
	QEIdentitySignature   string       `json:"qe_identity_signature"`
	PCKCertificate        string       `json:"pck_certificate"`
	PCKSigningChain       string       `json:"pck_signing_chain"`
}

// isQVECollateral reports whether an object's keys are those of a serialised collateral bundle.
func isQVECollateral(keys map[string]json.RawMessage) bool {
	_, a := keys["tcb_info"]
	_, b := keys["qe_identity"]
	_, c := keys["pck_crl"]
	_, d := keys["root_ca_crl"]
	return a || b || c || d
}

func (c *Collateral) addQVE(b []byte) error {
	var q qveCollateral
	// Strict: a bundle with a member we do not know may carry something we would then ignore.
	if err := strictjson.Decode(b, &q); err != nil {
		return fmt.Errorf("collateral bundle: %w", err)
	}
	for _, f := range []struct{ name, v string }{
		{"pck_crl_issuer_chain", q.PCKCRLIssuerChain}, {"tcb_info_issuer_chain", q.TCBInfoIssuerChain},
		{"qe_identity_issuer_chain", q.QEIdentityIssuerChain}, {"pck_certificate", q.PCKCertificate},
		{"pck_signing_chain", q.PCKSigningChain},
	} {
		if strings.TrimSpace(strings.TrimRight(f.v, "\x00")) == "" {
			continue
		}
		certs, err := attestation.ParsePEMCertificates([]byte(strings.TrimRight(f.v, "\x00")))
		if err != nil {
			return fmt.Errorf("collateral bundle %s: %w", f.name, err)
		}
		c.Certificates = append(c.Certificates, certs...)
	}
	for _, f := range []struct{ name, v string }{{"root_ca_crl", q.RootCACRL}, {"pck_crl", q.PCKCRL}} {
		if strings.TrimSpace(strings.TrimRight(f.v, "\x00")) == "" {
			continue
		}
		der, err := crlBytes(strings.TrimRight(f.v, "\x00"))
		if err != nil {
			return fmt.Errorf("collateral bundle %s: %w", f.name, err)
		}
		if err := c.add(der); err != nil {
			return fmt.Errorf("collateral bundle %s: %w", f.name, err)
		}
	}
	for _, d := range []struct{ name, body, sig, key string }{
		{"tcb_info", q.TCBInfo, q.TCBInfoSignature, "tcbInfo"},
		{"qe_identity", q.QEIdentity, q.QEIdentitySignature, "enclaveIdentity"},
	} {
		body := strings.TrimRight(d.body, "\x00")
		if strings.TrimSpace(body) == "" {
			if d.sig != "" {
				return fmt.Errorf("collateral bundle: %s_signature without %s", d.name, d.name)
			}
			continue
		}
		doc := []byte(body)
		if d.sig != "" {
			// The raw signed body: rebuild Intel's envelope around the exact bytes.
			if _, err := hex.DecodeString(d.sig); err != nil {
				return fmt.Errorf("collateral bundle %s_signature: not hex", d.name)
			}
			doc = fmt.Appendf(nil, `{"%s":%s,"signature":%q}`, d.key, body, d.sig)
		}
		before := len(c.TCBInfos) + len(c.QEIdentities)
		if err := c.addJSON(bytes.TrimSpace(doc)); err != nil {
			return fmt.Errorf("collateral bundle %s: %w", d.name, err)
		}
		if len(c.TCBInfos)+len(c.QEIdentities) == before {
			return fmt.Errorf("collateral bundle %s: not a signed %s document", d.name, d.key)
		}
	}
	return nil
}

// crlBytes decodes a CRL given as PEM, or as hex or base64 of its DER.
func crlBytes(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-----BEGIN") {
		return []byte(t), nil
	}
	compact := strings.Join(strings.Fields(t), "")
	if b, err := hex.DecodeString(compact); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(compact); err == nil {
		return b, nil
	}
	return nil, errors.New("neither PEM nor hex nor base64")
}
