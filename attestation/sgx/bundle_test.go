package sgx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/dcaptest"
)

// TestCollateralBundles verifies the SGX sample with its real collateral packed as verifiers
// serialise Intel's sgx_ql_qve_collateral_t: whole signed documents, or raw bodies with hex
// signatures, CRLs as hex DER. The verdict must be the one the separate files give.
func TestCollateralBundles(t *testing.T) {
	tcb, qe, chain := string(sample(t, tcbInfoFile)), string(sample(t, qeIDFile)), string(sample(t, signingChain))
	body := func(doc, key string) (string, string) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		var sig string
		if err := json.Unmarshal(m["signature"], &sig); err != nil {
			t.Fatal(err)
		}
		return string(m[key]), sig
	}
	tcbBody, tcbSig := body(tcb, "tcbInfo")
	qeBody, qeSig := body(qe, "enclaveIdentity")
	mk := func(fields map[string]any) []byte {
		b, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		bundle []byte
		err    string
	}{
		{"whole documents", mk(map[string]any{"version": 1, "tcb_info": tcb, "tcb_info_issuer_chain": chain, "qe_identity": qe, "qe_identity_issuer_chain": chain}), ""},
		{"raw bodies with hex signatures", mk(map[string]any{"tcb_info": tcbBody, "tcb_info_signature": tcbSig, "qe_identity": qeBody,
			"qe_identity_signature": qeSig, "tcb_info_issuer_chain": chain, "qe_identity_issuer_chain": chain}), ""},
		{"NUL-terminated strings, as Intel's libraries hand them over", mk(map[string]any{"tcb_info": tcb + "\x00", "tcb_info_issuer_chain": chain + "\x00",
			"qe_identity": qe + "\x00", "qe_identity_issuer_chain": chain + "\x00"}), ""},
		{"a CRL that is not yet valid, as hex DER", mk(map[string]any{"tcb_info": tcb, "qe_identity": qe, "tcb_info_issuer_chain": chain,
			"root_ca_crl": hex.EncodeToString(sample(t, rootCRLFile))}), "not yet valid"},
		{"unknown member", mk(map[string]any{"tcb_info": tcb, "qe_identity": qe, "tcb_info_issuer_chain": chain, "pck_crl_url": "x"}), "unknown field"},
		{"signature without body", mk(map[string]any{"qe_identity": qe, "tcb_info_signature": tcbSig}), "tcb_info_signature without tcb_info"},
		{"signature not hex", mk(map[string]any{"tcb_info": tcbBody, "tcb_info_signature": "zz"}), "not hex"},
		{"tampered body", mk(map[string]any{"tcb_info": strings.Replace(tcbBody, "SWHardeningNeeded", "UpToDate", 1), "tcb_info_signature": tcbSig,
			"qe_identity": qe, "tcb_info_issuer_chain": chain}), "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verifier{}.Verify(context.Background(), sample(t, quoteFile), optionsAt(pinned, tc.bundle))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.TCBStatus != "SWHardeningNeeded" {
				t.Fatalf("TCB status %q, want SWHardeningNeeded", res.TCBStatus)
			}
		})
	}
}

func optionsAt(now time.Time, collateral ...[]byte) attestation.Options {
	return attestation.Options{Now: now, Collateral: collateral}
}

// TestEncryptedPPID: a quote that names its platform by an encrypted PPID verifies when the
// platform's PCK certificate (as Intel PCS serves it) and PCK CA are collateral, and only then.
func TestEncryptedPPID(t *testing.T) {
	// The real sample with another real platform's PCK certificate: its key did not sign the QE
	// report, so it is not this platform's.
	q, err := ParseQuote(sample(t, quoteFile), false)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := q.Signature.Certification.PCKChain()
	if err != nil {
		t.Fatal(err)
	}
	var other []byte
	for _, c := range chain[:2] {
		other = append(other, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	_, err = Verifier{}.Verify(context.Background(), sample(t, eppidFile), optionsAt(pinned, other))
	if !errors.Is(err, dcap.ErrNoPCKCertificate) || !strings.Contains(err.Error(), "QE report signature by PCK key") {
		t.Fatalf("another platform's PCK certificate: %v", err)
	}

	// The real SGX quote re-signed under a test Intel PKI with type-3 certification data.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pki, err := dcaptest.NewPKI(key, nil, pinned.Add(-time.Hour), pinned.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := pki.Reforge(sample(t, quoteFile), dcaptest.Options{EncryptedPPID: true})
	if err != nil {
		t.Fatal(err)
	}
	pckPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.LastPCK.Raw})
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.PCKCA.Raw})
	opts := optionsAt(pinned, pckPEM, caPEM)
	opts.IntelRoots = []*x509.Certificate{pki.Root}
	res, err := Verifier{}.Verify(context.Background(), forged, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Details["pck_source"] != "collateral (certification data: PPID encrypted with RSA-3072)" || res.Measurements["mrenclave"] != wantMREnclave {
		t.Fatalf("details %v", res.Details)
	}
	// Without the PCK certificate, or with it but not its CA: refused.
	opts.Collateral = [][]byte{caPEM}
	if _, err := (Verifier{}).Verify(context.Background(), forged, opts); !errors.Is(err, dcap.ErrNoPCKCertificate) {
		t.Fatalf("no PCK certificate: %v", err)
	}
	opts.Collateral = [][]byte{pckPEM}
	if _, err := (Verifier{}).Verify(context.Background(), forged, opts); err == nil || !strings.Contains(err.Error(), "no PCK Platform or Processor CA") {
		t.Fatalf("no PCK CA: %v", err)
	}
}
