package snp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// TestVerifyEndorsementKeyReal checks real VCEKs and a VLEK of every product line on their own (the
// certificate-only mode of shelter verify). Expected values: openssl verify at the pinned time for
// the chain, openssl asn1parse for the extensions.
func TestVerifyEndorsementKeyReal(t *testing.T) {
	tests := []struct {
		file    string
		at      time.Time
		details map[string]string
		spl     map[string]uint8
	}{
		{file: "gosev_vcek_milan.der", at: sampleTime,
			details: map[string]string{"certificate": "VCEK", "product": "Milan-B0", "product_line": "Milan", "struct_version": "0",
				"chain": "SEV-VCEK -> SEV-Milan -> ARK-Milan", "tcb": "0x4405000000000002", "serial": "0",
				"not_before": "2022-09-24T00:55:28Z", "crl_checked": "false", "checked_at": "2022-09-24T01:00:00Z"},
			spl: map[string]uint8{"bl": 2, "tee": 0, "snp": 5, "ucode": 68, "spl4": 0, "spl5": 0, "spl6": 0, "spl7": 0}},
		{file: "ms_vcek_genoa.pem", at: msTime,
			details: map[string]string{"certificate": "VCEK", "product": "Genoa", "product_line": "Genoa", "struct_version": "0",
				"chain": "SEV-VCEK -> SEV-Genoa -> ARK-Genoa", "tcb": "0x541700000000000a",
				"hw_id":     "b1e24a27bbc3a4d58090d8b89851dce3b8031544be249b9ac17132bb222b027622347ee4d0fe4f689efdfc47a68cefc686cbb448d01436506ee1e28010cab7c0",
				"not_after": "2033-02-05T02:05:07Z"},
			spl: map[string]uint8{"bl": 10, "tee": 0, "snp": 23, "ucode": 84, "spl4": 0, "spl5": 0, "spl6": 0, "spl7": 0}},
		{file: "ms_vcek_turin.pem", at: msTime,
			details: map[string]string{"certificate": "VCEK", "product": "Turin", "product_line": "Turin", "struct_version": "1",
				"chain": "SEV-VCEK -> SEV-Turin -> ARK-Turin", "tcb": "0x5100000004010101", "hw_id": "59790fb1c39f35c1",
				"fmc_spl": "1", "ucode_spl": "81"},
			spl: map[string]uint8{"fmc": 1, "bl": 1, "tee": 1, "snp": 4, "ucode": 81, "spl5": 0, "spl6": 0, "spl7": 0}},
		{file: "virtee_vcek_turin.der", at: virteeTime,
			details: map[string]string{"product": "Turin", "struct_version": "1", "tcb": "0x0900000000000000", "hw_id": "1e550a8ee5cf9f4d",
				"not_before": "2024-11-06T21:14:00Z"},
			spl: map[string]uint8{"fmc": 0, "bl": 0, "tee": 0, "snp": 0, "ucode": 9, "spl5": 0, "spl6": 0, "spl7": 0}},
		{file: "coco_vlek_milan.der", at: vlekTime,
			details: map[string]string{"certificate": "VLEK", "product": "Milan", "product_line": "Milan",
				"chain": "SEV-VLEK -> SEV-VLEK-Milan -> ARK-Milan", "csp_id": "CN=cc-us-east-2.amazonaws.com", "tcb": "0xd918000000000004",
				"not_after": "2025-12-10T22:14:21Z"},
			spl: map[string]uint8{"bl": 4, "tee": 0, "snp": 24, "ucode": 217, "spl4": 0, "spl5": 0, "spl6": 0, "spl7": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cert := mustCert(t, readSNPSample(t, tc.file))
			ek, err := VerifyEndorsementKey(cert, attestation.Options{Now: tc.at})
			if err != nil {
				t.Fatal(err)
			}
			d := ek.Details()
			for k, want := range tc.details {
				if d[k] != want {
					t.Errorf("%s = %q, want %q", k, d[k], want)
				}
			}
			if !mapsEqual(ek.SPL, tc.spl) {
				t.Errorf("SPL %v, want %v", ek.SPL, tc.spl)
			}
			if (ek.Kind == "VLEK") != (ek.HWID == nil) || (ek.Kind == "VLEK") != (ek.CSPID != "") {
				t.Errorf("kind %s with hwID %x and cspID %q", ek.Kind, ek.HWID, ek.CSPID)
			}
			if ek.HWID != nil && len(ek.HWID) != hwIDSize(ek.ProductLine) {
				t.Errorf("hwID of %d bytes for %s", len(ek.HWID), ek.ProductLine)
			}
		})
	}
}

func mapsEqual(a, b map[string]uint8) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestVerifyEndorsementKeyRejected(t *testing.T) {
	milan := newTestChain(t, "Milan", false)
	turin := newTestChain(t, "Turin", false)
	turinVLEKChain := newTestChain(t, "Turin", true)
	genoaVLEKChain := newTestChain(t, "Genoa", true)
	chip := bytes.Repeat([]byte{0xc1}, 64)
	milanSPL := map[int]int{1: 3, 2: 0, 3: 8, 8: 115}
	turinSPL := map[int]int{9: 1, 1: 2, 2: 3, 3: 4, 8: 90}
	issue := func(c *testChain, s ekSpec) *x509.Certificate { cert, _ := c.issueEK(t, s); return cert }
	roots := []*x509.Certificate{milan.ark, turin.ark, turinVLEKChain.ark, genoaVLEKChain.ark}
	from, until := sampleTime.Add(-24*time.Hour), sampleTime.Add(24*time.Hour)
	raTLS := readRATLS(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		cert       *x509.Certificate
		collateral [][]byte
		at         time.Time
		verifier   *Verifier
		wantErr    string // "" means it must verify
		notEK      bool
	}{
		{name: "synthetic Turin VCEK", cert: issue(turin, ekSpec{productName: "Turin", hwID: chip[:8], spl: turinSPL}), collateral: [][]byte{turin.ica.Raw}},
		{name: "synthetic Turin VLEK with ASVK", cert: issue(turinVLEKChain, ekSpec{cn: "SEV-VLEK", productName: "Turin", cspID: "cloud", spl: turinSPL}),
			collateral: [][]byte{turinVLEKChain.ica.Raw}},
		{name: "synthetic Genoa VLEK with ASVK", cert: issue(genoaVLEKChain, ekSpec{cn: "SEV-VLEK", productName: "Genoa", cspID: "cloud", spl: milanSPL}),
			collateral: [][]byte{genoaVLEKChain.ica.Raw}},
		{name: "Turin VCEK with a 64-byte hwID", cert: issue(turin, ekSpec{productName: "Turin", hwID: chip, spl: turinSPL}),
			collateral: [][]byte{turin.ica.Raw}, wantErr: "Turin VCEK hwID has 64 bytes, want 8"},
		{name: "Milan VCEK with an 8-byte hwID", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip[:8], spl: milanSPL}),
			collateral: [][]byte{milan.ica.Raw}, wantErr: "Milan VCEK hwID has 8 bytes, want 64"},
		{name: "hwID of another length", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip[:32], spl: milanSPL}),
			collateral: [][]byte{milan.ica.Raw}, wantErr: "neither 8 nor 64 bytes"},
		{name: "Turin VCEK without fmcSPL", cert: issue(turin, ekSpec{productName: "Turin", hwID: chip[:8], spl: milanSPL}),
			collateral: [][]byte{turin.ica.Raw}, wantErr: "fmcSPL"},
		{name: "Milan VCEK with an fmcSPL", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip, spl: turinSPL}),
			collateral: [][]byte{milan.ica.Raw}, wantErr: "fmc SPL 1, which has no place in a Milan TCB"},
		{name: "Turin VLEK issued by the ASK", cert: issue(turin, ekSpec{cn: "SEV-VLEK", productName: "Turin", cspID: "cloud", spl: turinSPL}),
			collateral: [][]byte{turin.ica.Raw}, wantErr: "no chain SEV-VLEK -> SEV-VLEK-Turin -> ARK-Turin"},
		{name: "VCEK with a cspId", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip, cspID: "cloud", spl: milanSPL}),
			collateral: [][]byte{milan.ica.Raw}, wantErr: "VCEK certificate must have a hwID and no cspId"},
		{name: "ASK missing", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip, spl: milanSPL}),
			wantErr: "certificate chain to ARK-Milan"},
		{name: "ASK revoked by the ARK's CRL", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip, spl: milanSPL}),
			collateral: [][]byte{milan.ica.Raw, issueCRL(t, milan.ark, milan.arkKey, from, until, milan.ica.SerialNumber)}, wantErr: "is revoked"},
		{name: "ASK not revoked", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip, spl: milanSPL}),
			collateral: [][]byte{milan.ica.Raw, issueCRL(t, milan.ark, milan.arkKey, from, until, big.NewInt(1))}},
		{name: "expired", cert: issue(milan, ekSpec{productName: "Milan-B0", hwID: chip, spl: milanSPL, notAfter: sampleTime.Add(-time.Hour)}),
			collateral: [][]byte{milan.ica.Raw}, wantErr: "expired"},
		// Built-in roots can be restricted by line (explicit AMDRoots are trusted in addition).
		{name: "real Turin VCEK, line not trusted", cert: mustCert(t, readSNPSample(t, "ms_vcek_turin.pem")), at: msTime,
			verifier: &Verifier{ProductLines: []string{"Milan"}}, wantErr: "certificate chain to ARK-Turin"},
		{name: "real Turin VCEK before it was issued", cert: mustCert(t, readSNPSample(t, "ms_vcek_turin.pem")), at: virteeTime,
			wantErr: "not yet valid"},
		{name: "unknown product name", cert: issue(milan, ekSpec{productName: "Milan B0", hwID: chip, spl: milanSPL}),
			collateral: [][]byte{milan.ica.Raw}, wantErr: `unknown product name "Milan B0"`},
		{name: "KDS extensions under another name", cert: issue(milan, ekSpec{cn: "SEV-Milan", productName: "Milan", hwID: chip, spl: milanSPL}),
			wantErr: `"SEV-Milan" carries AMD KDS extensions but is neither SEV-VCEK nor SEV-VLEK`},
		{name: "SEV-VCEK with an RSA key", cert: createCert(t, &x509.Certificate{Subject: named("SEV-VCEK")}, milan.ica, &milan.icaKey.PublicKey, milan.icaKey),
			wantErr: "public key is not ECDSA P-384"},
		{name: "SEV-VCEK without extensions", cert: createCert(t, &x509.Certificate{Subject: named("SEV-VCEK")}, milan.ica, &p384.PublicKey, milan.icaKey),
			wantErr: "no productName extension"},
		{name: "RA-TLS certificate", cert: raTLS, notEK: true},
		{name: "an ARK", cert: milan.ark, notEK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.verifier
			if v == nil {
				v = &Verifier{}
			}
			at := tc.at
			if at.IsZero() {
				at = sampleTime
			}
			ek, err := v.VerifyEndorsementKey(tc.cert, attestation.Options{Now: at, AMDRoots: roots, Collateral: tc.collateral})
			switch {
			case tc.notEK:
				if !errors.Is(err, ErrNotEndorsementKey) {
					t.Fatalf("err = %v, want ErrNotEndorsementKey", err)
				}
			case tc.wantErr == "":
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(ProductLines, ek.ProductLine) || len(ek.Chain) != 3 {
					t.Errorf("endorsement key %+v", ek)
				}
			case err == nil:
				t.Fatalf("verified: %v", ek.Details())
			case errors.Is(err, ErrNotEndorsementKey) || !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func readRATLS(t testing.TB) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata.Attestation(t), "ra-tls", "ratls_legacy_sgx_ecdsa_rsa_sha256.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return mustCert(t, b)
}

// FuzzKDSExtensions replaces one AMD extension of a real Turin VCEK (or adds one) with fuzzed bytes:
// the extension parser must never panic, and what it accepts must be well-formed.
func FuzzKDSExtensions(f *testing.F) {
	cert := mustCert(f, readSNPSample(f, "ms_vcek_turin.pem"))
	for i, e := range cert.Extensions {
		f.Add(uint8(i), e.Value)
	}
	f.Add(uint8(200), []byte{0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint8(201), []byte{0x02, 0x02, 0x00, 0xd9})
	f.Fuzz(func(t *testing.T, which uint8, value []byte) {
		c := *cert
		c.Extensions = slices.Clone(cert.Extensions)
		if i := int(which); i < len(c.Extensions) {
			c.Extensions[i].Value = value
		} else {
			// An extra extension at an AMD OID (new SPL leaves, a second hwID…).
			leaf := []int{1, 2, 4, 5, 3}[i%5]
			id := append(slices.Clone(oidKDS), leaf)
			if leaf == 3 {
				id = append(id, i%12)
			}
			c.Extensions = append(c.Extensions, pkix.Extension{Id: id, Value: value})
		}
		exts, err := parseKDSExtensions(&c)
		if err != nil {
			return
		}
		if exts.hwID != nil && !slices.Contains(hwIDSizes, len(exts.hwID)) {
			t.Fatalf("accepted a %d-byte hwID", len(exts.hwID))
		}
		if _, err := productLineOfName(exts.productName); err == nil {
			line, _ := productLineOfName(exts.productName)
			if _, err := certTCB(line, exts); err == nil && line == "Turin" {
				if _, ok := exts.spl["fmc"]; !ok {
					t.Fatal("Turin TCB composed without an fmcSPL")
				}
			}
		}
	})
}

// FuzzProductLineOfName: any accepted name starts with a known product line.
func FuzzProductLineOfName(f *testing.F) {
	for _, s := range []string{"Milan-B0", "Milan", "Genoa", "Turin", "Turin-B1", "Venice", "Milan-", "Milan-b0", "Genoa-B10", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		line, err := productLineOfName(name)
		if err != nil {
			return
		}
		if !slices.Contains(ProductLines, line) || !strings.HasPrefix(name, line) || len(name) > len(line)+4 {
			t.Fatalf("%q accepted as %q", name, line)
		}
	})
}
