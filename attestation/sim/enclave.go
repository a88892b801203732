package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
)

const (
	pemEnclaveKey  = "INCLAVARE SIM ENCLAVE KEY"
	pemEndorsement = "INCLAVARE SIM ENDORSEMENT"
)

// EnclaveKey is what the enclave side holds: its own signing key and the platform's endorsement
// of that key. It carries no platform secret.
type EnclaveKey struct {
	key            *ecdsa.PrivateKey
	endorsement    []byte
	endorsementSig []byte
	info           wireEndorsement
}

// Endorsement describes what the platform vouched for.
type Endorsement struct {
	Measurement   string
	Runtime       string
	PlatformKeyID string // hex
	Created       time.Time
}

// Endorsement returns the facts the platform endorsed for this key.
func (k *EnclaveKey) Endorsement() Endorsement {
	return Endorsement{
		Measurement:   k.info.Measurement,
		Runtime:       k.info.Runtime,
		PlatformKeyID: hex.EncodeToString(k.info.PlatformKeyID),
		Created:       time.Unix(k.info.Created, 0).UTC(),
	}
}

// MarshalBinary encodes the key for the enclave side as two PEM blocks: the PKCS#8 enclave key and
// the signed endorsement. The result is secret (it holds a private key): write it with mode 0600.
func (k *EnclaveKey) MarshalBinary() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		return nil, fmt.Errorf("encode sim enclave key: %w", err)
	}
	signed, err := encMode.Marshal(wireSignedEndorsement{Endorsement: k.endorsement, EndorsementSig: k.endorsementSig})
	if err != nil {
		return nil, fmt.Errorf("encode sim endorsement: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: pemEnclaveKey, Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: pemEndorsement, Bytes: signed})...), nil
}

// UnmarshalEnclaveKey decodes MarshalBinary's output and checks that the private key is the one
// the endorsement names. It does not check the platform signature (the enclave side has no
// trust anchor); verifiers do.
func UnmarshalEnclaveKey(b []byte) (*EnclaveKey, error) {
	var keyBlock, endBlock *pem.Block
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, errors.New("sim enclave key: data outside PEM blocks")
			}
			break
		}
		switch {
		case blk.Type == pemEnclaveKey && keyBlock == nil:
			keyBlock = blk
		case blk.Type == pemEndorsement && endBlock == nil:
			endBlock = blk
		default:
			return nil, fmt.Errorf("sim enclave key: unexpected or repeated PEM block %q", blk.Type)
		}
	}
	if keyBlock == nil || endBlock == nil {
		return nil, errors.New("sim enclave key: need both the key and the endorsement block")
	}
	k, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sim enclave key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("sim enclave key is not ECDSA P-256")
	}
	var signed wireSignedEndorsement
	if err := decodeExact(endBlock.Bytes, &signed, "endorsement block"); err != nil {
		return nil, err
	}
	if len(signed.EndorsementSig) != sigSize {
		return nil, errors.New("sim enclave key: malformed endorsement block")
	}
	info, err := parseEndorsement(signed.Endorsement)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sim enclave key: %w", err)
	}
	if !bytes.Equal(pub, info.EnclaveKey) {
		return nil, errors.New("sim enclave key does not match the key its endorsement names")
	}
	return &EnclaveKey{key: ec, endorsement: signed.Endorsement, endorsementSig: signed.EndorsementSig, info: *info}, nil
}

// Evidence signs a report binding reportData with the enclave key and returns it with the
// endorsement, in the format the sim Verifier reads.
func (k *EnclaveKey) Evidence(reportData [attestation.ReportDataSize]byte) ([]byte, error) {
	d := sha256.Sum256(k.endorsement)
	report, err := encMode.Marshal(wireReport{Version: formatVersion, ReportData: reportData[:], EndorsementDigest: d[:]})
	if err != nil {
		return nil, fmt.Errorf("encode sim report: %w", err)
	}
	sig, err := sign(k.key, reportLabel, report)
	if err != nil {
		return nil, fmt.Errorf("sign sim report: %w", err)
	}
	body, err := encMode.Marshal(wireEvidence{
		Endorsement: k.endorsement, EndorsementSig: k.endorsementSig, Report: report, ReportSig: sig,
	})
	if err != nil {
		return nil, fmt.Errorf("encode sim evidence: %w", err)
	}
	return append([]byte(Magic), body...), nil
}

// Attester is the sim attestation.Attester for one enclave. It is built from that enclave's key,
// so it is never registered globally.
type Attester struct {
	key *EnclaveKey
}

// NewAttester returns an attester that signs with key.
func NewAttester(key *EnclaveKey) *Attester { return &Attester{key: key} }

// TEE implements attestation.Attester.
func (*Attester) TEE() attestation.TEE { return attestation.Sim }

// Available implements attestation.Attester.
func (a *Attester) Available() error {
	if a == nil || a.key == nil {
		return errors.New("sim attester has no enclave key")
	}
	return nil
}

// Evidence implements attestation.Attester.
func (a *Attester) Evidence(ctx context.Context, reportData [attestation.ReportDataSize]byte) ([]byte, error) {
	if err := a.Available(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return a.key.Evidence(reportData)
}
