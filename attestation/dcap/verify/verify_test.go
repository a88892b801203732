package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/dcap/abi"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

var (
	sgxPinned = time.Unix(1671497404, 0) // 2022-12-20T00:50:04Z
	goTDXTime = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)
)

func sample(t testing.TB, rel string) []byte {
	t.Helper()
	return testdata.ReadAttestation(t, rel)
}

func pemCerts(t testing.TB, rel string) []*x509.Certificate {
	t.Helper()
	certs, err := attestation.ParsePEMCertificates(sample(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// quoteSignature parses the signature data of a sample quote (v3 at 432, v4 at 632).
func quoteSignature(t testing.TB, rel string) (signed []byte, sd *abi.SignatureData) {
	t.Helper()
	b := sample(t, rel)
	off, layout := 432, abi.LayoutV3
	if binary.LittleEndian.Uint16(b) == 4 {
		off, layout = 632, abi.LayoutV4
	}
	n := int(binary.LittleEndian.Uint32(b[off:]))
	sd, err := abi.ParseSignatureData(b[off+4:off+4+n], layout)
	if err != nil {
		t.Fatal(err)
	}
	return b[:off], sd
}

func pckCerts(t testing.TB, rel string) []*x509.Certificate {
	_, sd := quoteSignature(t, rel)
	certs, err := sd.Certification.PCKChain()
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func anchors(t testing.TB) *x509.CertPool {
	pool, err := TrustAnchors(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func TestIntelRootPinned(t *testing.T) {
	root, err := IntelSGXRootCA()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(root.Raw); hex.EncodeToString(sum[:]) != "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3" {
		t.Errorf("embedded root SHA-256 %x", sum)
	}
	shared := pemCerts(t, "roots/intel_sgx_root_ca.pem")
	if len(shared) != 1 || !shared[0].Equal(root) {
		t.Error("embedded root differs from roots/intel_sgx_root_ca.pem")
	}
	if root.Subject.CommonName != "Intel SGX Root CA" || !root.NotAfter.Equal(time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("root %s valid to %s", root.Subject, root.NotAfter)
	}
	for _, other := range append(pemCerts(t, "roots/amd_ask_ark_milan.pem"), pemCerts(t, "roots/oasis_intel_pck_platform_ca_chain.pem")[0]) {
		if IsIntelSGXRootCA(other) {
			t.Errorf("%q passes the Intel root pin", other.Subject.CommonName)
		}
	}
}

func TestPCKChain(t *testing.T) {
	sgxChain := pckCerts(t, "sgx/oasis_quote_v3_pck_chain.bin")
	tamperedRoot := slices.Clone(sgxChain)
	{
		raw := bytes.Clone(sgxChain[2].Raw)
		raw[len(raw)-3] ^= 0x01 // inside the self-signature
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			t.Fatal(err)
		}
		tamperedRoot[2] = c
	}
	amdPool := x509.NewCertPool()
	for _, c := range pemCerts(t, "roots/amd_ask_ark_milan.pem") {
		amdPool.AddCert(c)
	}
	tests := []struct {
		name  string
		certs []*x509.Certificate
		roots *x509.CertPool
		now   time.Time
		want  string
	}{
		{"SGX sample at the pinned time", sgxChain, anchors(t), sgxPinned, ""},
		{"without the root copy in the quote", sgxChain[:2], anchors(t), sgxPinned, ""},
		{"TDX SPR E4 sample", pckCerts(t, "tdx/gotdx_quote_v4_spr_e4_trailing39.dat"), anchors(t), goTDXTime, ""},
		{"expired", sgxChain, anchors(t), time.Unix(1891163522, 0), "expired"},
		{"not yet valid", sgxChain, anchors(t), time.Unix(1670238720, 0), "not yet valid"},
		{"other trust anchors", sgxChain, amdPool, sgxPinned, "unknown authority"},
		{"missing intermediate", sgxChain[:1], anchors(t), sgxPinned, "unknown authority"},
		{"tampered root copy", tamperedRoot, anchors(t), sgxPinned, "not all on a verified path"},
		{"CA first", []*x509.Certificate{sgxChain[1], sgxChain[0]}, anchors(t), sgxPinned, "leaf subject CN"},
		{"empty", nil, anchors(t), sgxPinned, "no certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pck, err := PCKChain(tc.certs, tc.roots, tc.now)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pck.CA != "platform" || len(pck.Chain) != 3 || !IsIntelSGXRootCA(pck.Chain[2]) || pck.Extension == nil || pck.Key == nil {
				t.Errorf("CA %q, chain %d, extension %v", pck.CA, len(pck.Chain), pck.Extension)
			}
		})
	}
}

func TestQuoteSignatures(t *testing.T) {
	signed, sd := quoteSignature(t, "sgx/oasis_quote_v3_pck_chain.bin")
	pck, err := PCKChain(pckCerts(t, "sgx/oasis_quote_v3_pck_chain.bin"), anchors(t), sgxPinned)
	if err != nil {
		t.Fatal(err)
	}
	if err := QuoteSignatures(signed, sd, pck.Key); err != nil {
		t.Fatalf("sample: %v", err)
	}
	otherKey := pemCerts(t, "sgx/oasis_tcb_signing_chain.pem")[0].PublicKey.(*ecdsa.PublicKey)
	tests := []struct {
		name   string
		signed []byte
		mutate func(*abi.SignatureData)
		key    *ecdsa.PublicKey
		is     error
		want   string
	}{
		{"quote body changed", append(bytes.Clone(signed[:len(signed)-1]), signed[len(signed)-1]^1), nil, pck.Key, ErrSignature, "attestation key"},
		{"QE report signed by another key", signed, nil, otherKey, ErrSignature, "QE report signature"},
		{"QE auth data changed", signed, func(s *abi.SignatureData) { s.QEAuthData = append(bytes.Clone(s.QEAuthData), 0) }, pck.Key, ErrQEReportDataBinding, ""},
		{"attestation key changed", signed, func(s *abi.SignatureData) { s.AttestationKey[5] ^= 1 }, pck.Key, ErrQEReportDataBinding, ""},
		{"quote signature zero", signed, func(s *abi.SignatureData) { s.Signature = [64]byte{} }, pck.Key, ErrSignature, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *sd
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			err := QuoteSignatures(tc.signed, &c, tc.key)
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
}

func TestECDSAP256Rejects(t *testing.T) {
	key := pemCerts(t, "sgx/oasis_tcb_signing_chain.pem")[0].PublicKey.(*ecdsa.PublicKey)
	if err := ECDSAP256(key, []byte("x"), make([]byte, 63)); err == nil {
		t.Error("63-byte signature accepted")
	}
	if err := ECDSAP256(nil, []byte("x"), make([]byte, 64)); err == nil {
		t.Error("nil key accepted")
	}
	if _, err := AttestationKey(make([]byte, 64)); err == nil {
		t.Error("the zero point accepted as attestation key")
	}
	if _, err := AttestationKey(make([]byte, 63)); err == nil {
		t.Error("63-byte attestation key accepted")
	}
}

func TestCollateralSignatures(t *testing.T) {
	signing := pemCerts(t, "sgx/oasis_tcb_signing_chain.pem")
	wrong := pemCerts(t, "roots/oasis_intel_pck_platform_ca_chain.pem")
	tcbInfo := func(rel string) *abi.TCBInfo {
		ti, err := abi.ParseTCBInfo(sample(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		return ti
	}
	qeIdentity := func(rel string) *abi.QEIdentity {
		qi, err := abi.ParseQEIdentity(sample(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		return qi
	}
	sgxTCB := tcbInfo("sgx/oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json")
	tampered := *sgxTCB
	tampered.Raw = bytes.Replace(sgxTCB.Raw, []byte(`"tcbEvaluationDataNumber":13`), []byte(`"tcbEvaluationDataNumber":14`), 1)
	v5 := tcbInfo("tdx/gotdx_tcbinfo_tdx_v3_fmspc_90c06f000000.json")
	tests := []struct {
		name  string
		check func() ([]*x509.Certificate, error)
		is    error
		want  string
	}{
		{"SGX TCB info", func() ([]*x509.Certificate, error) { return TCBInfo(sgxTCB, signing, anchors(t), sgxPinned) }, nil, ""},
		{"SGX QE identity", func() ([]*x509.Certificate, error) {
			return QEIdentity(qeIdentity("sgx/oasis_qeidentity_qe_v2.json"), signing, anchors(t), sgxPinned)
		}, nil, ""},
		{"TDX C0806F TCB info", func() ([]*x509.Certificate, error) {
			return TCBInfo(tcbInfo("tdx/oasis_tcbinfo_tdx_v3_fmspc_C0806F000000.json"), signing, anchors(t), time.Date(2024, 9, 2, 8, 0, 0, 0, time.UTC))
		}, nil, ""},
		{"TD-QE identity 2024", func() ([]*x509.Certificate, error) {
			return QEIdentity(qeIdentity("tdx/oasis_qeidentity_td_qe_2024-09.json"), signing, anchors(t), time.Date(2024, 9, 2, 8, 0, 0, 0, time.UTC))
		}, nil, ""},
		{"TDX 50806F TCB info", func() ([]*x509.Certificate, error) {
			return TCBInfo(tcbInfo("tdx/gotdx_tcbinfo_tdx_v3_fmspc_50806f000000.json"), signing, anchors(t), goTDXTime)
		}, nil, ""},
		{"TD-QE identity 2023", func() ([]*x509.Certificate, error) {
			return QEIdentity(qeIdentity("tdx/gotdx_qeidentity_td_qe_2023-06.json"), signing, anchors(t), goTDXTime)
		}, nil, ""},
		{"signing certificate without the root copy", func() ([]*x509.Certificate, error) { return TCBInfo(sgxTCB, signing[:1], anchors(t), sgxPinned) }, nil, ""},
		{"v5 TCB info at 2026: TCB signing certificate expired", func() ([]*x509.Certificate, error) {
			return TCBInfo(v5, signing, anchors(t), time.Date(2026, 2, 3, 1, 0, 0, 0, time.UTC))
		}, nil, "expired"},
		{"v5 TCB info while the certificate was valid: not yet issued", func() ([]*x509.Certificate, error) {
			return TCBInfo(v5, signing, anchors(t), time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC))
		}, nil, "issued in the future"},
		{"wrong issuer chain", func() ([]*x509.Certificate, error) { return TCBInfo(sgxTCB, wrong, anchors(t), sgxPinned) }, ErrNoTCBSigningCertificate, ""},
		{"no certificates", func() ([]*x509.Certificate, error) { return TCBInfo(sgxTCB, nil, anchors(t), sgxPinned) }, ErrNoTCBSigningCertificate, ""},
		{"tampered signed text", func() ([]*x509.Certificate, error) { return TCBInfo(&tampered, signing, anchors(t), sgxPinned) }, ErrSignature, ""},
		{"QE identity issued in the future", func() ([]*x509.Certificate, error) {
			return QEIdentity(qeIdentity("sgx/oasis_qeidentity_qe_v2.json"), signing, anchors(t), time.Unix(1671194735, 0))
		}, nil, "issued in the future"},
		{"QE identity expired", func() ([]*x509.Certificate, error) {
			return QEIdentity(qeIdentity("sgx/oasis_qeidentity_qe_v2.json"), signing, anchors(t), time.Unix(1673786737, 0))
		}, nil, "expired: nextUpdate 2023-01-15T12:45:36Z"},
		{"TCB info expired", func() ([]*x509.Certificate, error) {
			return TCBInfo(sgxTCB, signing, anchors(t), time.Date(2023, 1, 18, 9, 40, 11, 0, time.UTC))
		}, nil, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := tc.check()
			if tc.is == nil && tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(chain) != 2 || chain[0].Subject.CommonName != TCBSigningCN || !IsIntelSGXRootCA(chain[1]) {
					t.Errorf("signer chain %v", chain)
				}
				return
			}
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
	// README: the v5 TCB info's signature itself is good; only its issuer certificate is stale.
	if err := ECDSAP256(signing[0].PublicKey.(*ecdsa.PublicKey), v5.Raw, v5.Signature); err != nil {
		t.Errorf("v5 TCB info signature with the TCB signing key: %v", err)
	}
}

func TestRevocation(t *testing.T) {
	pck, err := PCKChain(pckCerts(t, "tdx/gotdx_quote_v4_spr_e4_trailing39.dat"), anchors(t), goTDXTime)
	if err != nil {
		t.Fatal(err)
	}
	crlDER := sample(t, "tdx/gotdx_pck_crl_platform_2023-06-08.der")
	pckCRL, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	rootCRL, err := x509.ParseRevocationList(sample(t, "roots/gotdx_intel_sgx_root_ca_crl_2023-04-03.der"))
	if err != nil {
		t.Fatal(err)
	}
	// A chain whose leaf has the serial of a revoked certificate from the real CRL: the revocation
	// check is about serial and issuer, the chain is given as already verified.
	revokedLeaf := *pck.Chain[0]
	revokedLeaf.SerialNumber = new(big.Int).Set(pckCRL.RevokedCertificateEntries[0].SerialNumber)
	revokedChain := []*x509.Certificate{&revokedLeaf, pck.Chain[1], pck.Chain[2]}
	// Flip a bit inside the CRL's signature value (its last bytes).
	badSig := bytes.Clone(crlDER)
	badSig[len(badSig)-2] ^= 0x01
	badCRL, err := x509.ParseRevocationList(badSig)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		chains  [][]*x509.Certificate
		crls    []*x509.RevocationList
		now     time.Time
		applied []string
		missing []string
		is      error
		want    string
	}{
		{"PCK and root CRLs, nothing revoked", [][]*x509.Certificate{pck.Chain}, []*x509.RevocationList{pckCRL, rootCRL}, goTDXTime, []string{PCKPlatformCACN, "Intel SGX Root CA"}, nil, nil, ""},
		{"PCK CRL only", [][]*x509.Certificate{pck.Chain}, []*x509.RevocationList{pckCRL}, goTDXTime, []string{PCKPlatformCACN}, []string{"Intel SGX Root CA"}, nil, ""},
		{"no CRLs", [][]*x509.Certificate{pck.Chain}, nil, goTDXTime, nil, []string{PCKPlatformCACN, "Intel SGX Root CA"}, nil, ""},
		{"CRL of a CA outside the chains", [][]*x509.Certificate{pck.Chain[:1]}, []*x509.RevocationList{pckCRL}, goTDXTime, nil, nil, nil, ""},
		{"revoked PCK", [][]*x509.Certificate{revokedChain}, []*x509.RevocationList{pckCRL}, goTDXTime, nil, nil, ErrRevoked, "on the CRL of \"Intel SGX PCK Platform CA\""},
		{"bad CRL signature", [][]*x509.Certificate{pck.Chain}, []*x509.RevocationList{badCRL}, goTDXTime, nil, nil, nil, "signature"},
		{"PCK CRL expired", [][]*x509.Certificate{pck.Chain}, []*x509.RevocationList{pckCRL}, time.Date(2023, 7, 8, 7, 27, 53, 0, time.UTC), nil, nil, nil, "expired"},
		{"PCK CRL not yet valid", [][]*x509.Certificate{pck.Chain}, []*x509.RevocationList{pckCRL}, time.Date(2023, 6, 8, 7, 27, 51, 0, time.UTC), nil, nil, nil, "not yet valid"},
		{"root CRL expired", [][]*x509.Certificate{pck.Chain}, []*x509.RevocationList{rootCRL}, time.Date(2024, 4, 3, 0, 0, 0, 0, time.UTC), nil, nil, nil, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Revocation(tc.chains, tc.crls, tc.now)
			if tc.is == nil && tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(res.Applied, tc.applied) || !slices.Equal(res.Missing, tc.missing) {
					t.Errorf("applied %v missing %v, want %v and %v", res.Applied, res.Missing, tc.applied, tc.missing)
				}
				if res.Complete != (len(tc.missing) == 0) {
					t.Errorf("complete %v with missing %v", res.Complete, res.Missing)
				}
				return
			}
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
}

func TestTrustAnchorsExtra(t *testing.T) {
	amd := pemCerts(t, "roots/amd_ask_ark_milan.pem")
	pool, err := TrustAnchors(amd[1:])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := amd[0].Verify(x509.VerifyOptions{Roots: pool, CurrentTime: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("an extra anchor is not trusted: %v", err)
	}
}
