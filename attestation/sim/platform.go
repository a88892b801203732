package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// DefaultPlatformKeyPath is where rune keeps the host's simulated platform key.
	DefaultPlatformKeyPath = "/var/lib/rune/sim/platform-key.pem"
	// PlatformCommonName names the platform certificate so nobody mistakes it for hardware.
	PlatformCommonName = "Inclavare sim platform (SIMULATED, NOT A TEE)"
)

// randReader is the randomness source for keys and signatures.
var randReader = rand.Reader

// Platform is the host side of the simulated TEE: the per-host key that endorses enclave keys.
// It stays with rune; only enclave keys are handed to the enclave side.
type Platform struct {
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	keyID [keyIDSize]byte
}

// LoadOrCreatePlatform loads the platform key at path ("" means DefaultPlatformKeyPath), creating
// it on first use (directory 0700, file 0600, written atomically; a key another process created
// first wins). A key file readable by group or others is refused.
func LoadOrCreatePlatform(path string) (*Platform, error) {
	if path == "" {
		path = DefaultPlatformKeyPath
	}
	p, err := loadPlatform(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return p, err
	}
	if err := createPlatformKey(path); err != nil {
		return nil, err
	}
	return loadPlatform(path)
}

func loadPlatform(path string) (*Platform, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sim platform key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sim platform key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("sim platform key %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sim platform key %s has mode %04o; it must not be accessible to group or others (chmod 600)", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("sim platform key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("sim platform key %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sim platform key %s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("sim platform key %s is not an ECDSA P-256 key", path)
	}
	return newPlatform(ec)
}

func createPlatformKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create sim platform key directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), randReader)
	if err != nil {
		return fmt.Errorf("generate sim platform key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode sim platform key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".platform-key-*.tmp")
	if err != nil {
		return fmt.Errorf("write sim platform key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = errors.Join(
		tmp.Chmod(0o600),
		pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		tmp.Sync(),
		tmp.Close(),
	)
	if err != nil {
		return fmt.Errorf("write sim platform key: %w", err)
	}
	// A hard link publishes the complete file atomically and, unlike rename, never replaces a
	// key that a concurrent rune created first.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("install sim platform key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// NewPlatform wraps an existing ECDSA P-256 key (for callers that keep the key elsewhere).
func NewPlatform(key *ecdsa.PrivateKey) (*Platform, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("sim platform key must be ECDSA P-256")
	}
	return newPlatform(key)
}

func newPlatform(key *ecdsa.PrivateKey) (*Platform, error) {
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sim platform key: %w", err)
	}
	p := &Platform{key: key, keyID: sha256.Sum256(spki)}
	// Fixed serial and validity make the certificate a pure function of the key (up to the
	// randomised ECDSA signature), so every export names the same anchor. It is not a CA: the
	// platform key signs endorsements, never certificates, so no chain of any TEE can end here.
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(p.keyID[:16]),
		Subject:               pkix.Name{CommonName: PlatformCommonName, Organization: []string{"Inclavare Containers"}},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		IsCA:                  false,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(randReader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sim platform certificate: %w", err)
	}
	if p.cert, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("sim platform certificate: %w", err)
	}
	return p, nil
}

// Certificate is the self-signed certificate of the platform key: the trust anchor verifiers
// pass in attestation.Options.SimRoots (or Verifier.Anchors), and only there.
func (p *Platform) Certificate() *x509.Certificate { return p.cert }

// CertificatePEM is Certificate in PEM form.
func (p *Platform) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw})
}

// KeyID is the SHA-256 of the platform public key's SPKI DER, as named in endorsements.
func (p *Platform) KeyID() [keyIDSize]byte { return p.keyID }

// Endorse creates a fresh enclave key and the platform's endorsement binding it to measurement
// (hex SHA-256) and the runtime name.
func (p *Platform) Endorse(measurement, runtime string) (*EnclaveKey, error) {
	measurement = strings.ToLower(measurement)
	if err := checkMeasurement(measurement); err != nil {
		return nil, fmt.Errorf("endorse: %w", err)
	}
	if err := checkRuntime(runtime); err != nil {
		return nil, fmt.Errorf("endorse: %w", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), randReader)
	if err != nil {
		return nil, fmt.Errorf("endorse: generate enclave key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("endorse: %w", err)
	}
	e := wireEndorsement{
		Version:       formatVersion,
		PlatformKeyID: p.keyID[:],
		Measurement:   measurement,
		Runtime:       runtime,
		EnclaveKey:    pub,
		Created:       time.Now().Unix(),
	}
	body, err := encMode.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("endorse: encode: %w", err)
	}
	sig, err := sign(p.key, endorsementLabel, body)
	if err != nil {
		return nil, fmt.Errorf("endorse: sign: %w", err)
	}
	return &EnclaveKey{key: ek, endorsement: body, endorsementSig: sig, info: e}, nil
}

// LoadPlatformCertificate reads a trust anchor from path: a PEM certificate, or the platform key
// file itself (from which the certificate is derived). Only callers that decided to trust this
// host's simulated platform should call it.
func LoadPlatformCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim platform certificate: %w", err)
	}
	if block, _ := pem.Decode(data); block != nil && block.Type == "CERTIFICATE" {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sim platform certificate %s: %w", path, err)
		}
		return c, nil
	}
	p, err := loadPlatform(path)
	if err != nil {
		return nil, err
	}
	return p.Certificate(), nil
}
