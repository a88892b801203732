package enclavetls

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// TestCertificateEncoding: the certificates an identity encodes itself (certShape) are byte for
// byte what crypto/x509 makes from the same template (the TBSCertificate and the signature
// algorithm), parse, and verify with their own key, across the DER length forms, serials with the
// high bit set, both time encodings and with and without endorsements.
func TestCertificateEncoding(t *testing.T) {
	key := newKey(t)
	endorsements, err := (&IntelEndorsements{Version: 3, TCBInfo: []byte("tcb"), QEIdentity: []byte("qe")}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	highBit, _ := new(big.Int).SetString("80000000000000000000000000000001", 16)
	for _, tc := range []struct {
		name                string
		serial              *big.Int
		notBefore, notAfter time.Time
		evidence            int
		endorsements        []byte
	}{
		{"short evidence", big.NewInt(1), now.Add(-time.Hour), now.Add(time.Hour), 10, nil},
		{"one-byte long length", big.NewInt(0x7f), now, now.Add(DefaultValidity), 200, nil},
		{"two-byte length", highBit, now, now.Add(DefaultValidity), 3000, endorsements},
		{"three-byte length", big.NewInt(1 << 40), now, now.Add(DefaultValidity), 70000, endorsements},
		{"GeneralizedTime after 2049", big.NewInt(5), time.Date(2049, 12, 31, 23, 0, 0, 0, time.UTC),
			time.Date(2050, 1, 1, 0, 0, 1, 0, time.UTC), 100, nil},
		{"fractional seconds and a zone", big.NewInt(6), time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 5*3600)),
			time.Date(2031, 5, 6, 7, 8, 9, 999999999, time.FixedZone("Y", -3*3600)), 100, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := make([]byte, tc.evidence)
			rand.Read(ev)
			shape, err := newCertShape(key, "Enclave-TLS", tc.endorsements)
			if err != nil {
				t.Fatal(err)
			}
			der, err := shape.certificate(key, tc.serial, tc.notBefore, tc.notAfter, ev)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := certTemplate(tc.serial, tc.notBefore, tc.notAfter, "Enclave-TLS", pkix.Extension{Id: OIDTaggedEvidence, Value: ev}, tc.endorsements)
			refDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := x509.ParseCertificate(refDER)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.RawTBSCertificate, ref.RawTBSCertificate) {
				t.Fatalf("TBSCertificate differs from crypto/x509's:\nours %x\nref  %x", ours.RawTBSCertificate, ref.RawTBSCertificate)
			}
			if ours.SignatureAlgorithm != ref.SignatureAlgorithm || ours.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("signature algorithm %v, crypto/x509 made %v", ours.SignatureAlgorithm, ref.SignatureAlgorithm)
			}
			if err := ours.CheckSignature(ours.SignatureAlgorithm, ours.RawTBSCertificate, ours.Signature); err != nil {
				t.Errorf("self-signature: %v", err)
			}
		})
	}
}
