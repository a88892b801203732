package enclavetls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/internal/testdata"
)

// TestVerifyCertificate covers what a certificate alone can get wrong.
func TestVerifyCertificate(t *testing.T) {
	tee := newSimTEE(t, "enclave")
	other := newSimTEE(t, "other platform")
	key := newKey(t)
	spki := spkiOf(t, key)
	now := time.Now()
	opts := attestation.Options{SimRoots: []*x509.Certificate{tee.platform.Certificate()}}
	good := func(rd [64]byte) []byte {
		ev, err := tee.key.Evidence(rd)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	genuine := diceExtension(t, TagSim, spki, nil, good)
	otherKey := newKey(t)

	for _, tc := range []struct {
		name  string
		cert  func() *x509.Certificate
		nonce []byte
		want  string // "" means it verifies
	}{
		{"genuine", func() *x509.Certificate { return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), genuine) }, nil, ""},
		{"genuine with nonce", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour),
				diceExtension(t, TagSim, spki, map[string][]byte{ClaimNonce: []byte("n1")}, good))
		}, []byte("n1"), ""},
		{"other nonce", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour),
				diceExtension(t, TagSim, spki, map[string][]byte{ClaimNonce: []byte("n1")}, good))
		}, []byte("n2"), "another nonce"},
		{"no nonce when one is expected", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), genuine)
		}, []byte("n1"), "binds no nonce"},
		{"no evidence", func() *x509.Certificate { return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour)) }, nil, ErrNoEvidence.Error()},
		{"expired", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-2*time.Hour), now.Add(-time.Hour), genuine)
		}, nil, "not at"},
		{"evidence copied onto another key", func() *x509.Certificate {
			return selfSigned(t, otherKey, now.Add(-time.Hour), now.Add(time.Hour), genuine)
		}, nil, "pubkey-hash claim does not match"},
		{"evidence over other report data", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour),
				diceExtension(t, TagSim, spki, nil, func([64]byte) []byte { return good([64]byte{1}) }))
		}, nil, "report data is not"},
		{"report data with a non-zero tail", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour),
				diceExtension(t, TagSim, spki, nil, func(rd [64]byte) []byte { rd[63] = 1; return good(rd) }))
		}, nil, "last 32 bytes are not zero"},
		{"untrusted platform", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour),
				diceExtension(t, TagSim, spki, nil, func(rd [64]byte) []byte { ev, _ := other.key.Evidence(rd); return ev }))
		}, nil, "not among"},
		{"sim evidence under the Intel tag", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), diceExtension(t, TagIntelQuote, spki, nil, good))
		}, nil, "its tag says"},
		{"Intel report tag", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), diceExtension(t, TagIntelReport, spki, nil, good))
		}, nil, "only quotes"},
		{"unknown tag", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), diceExtension(t, 12345, spki, nil, good))
		}, nil, "unknown evidence tag"},
		{"garbage evidence", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour),
				diceExtension(t, TagSim, spki, nil, func([64]byte) []byte { return []byte("not evidence") }))
		}, nil, "not recognised"},
		{"malformed extension", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), pkix.Extension{Id: OIDTaggedEvidence, Value: []byte{0xd9}})
		}, nil, "tagged evidence"},
		{"two evidence extensions", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), genuine, genuine)
		}, nil, ""}, // x509.CreateCertificate refuses duplicates; see below
		{"legacy EPID", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), pkix.Extension{Id: OIDLegacyEPIDReport, Value: []byte("{}")})
		}, nil, "IAS has been retired"},
		{"interoperable and legacy at once", func() *x509.Certificate {
			return selfSigned(t, key, now.Add(-time.Hour), now.Add(time.Hour), genuine, pkix.Extension{Id: OIDLegacySGXECDSAQuote, Value: []byte{1}})
		}, nil, "both interoperable and legacy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "two evidence extensions" {
				t.Log("Go refuses to create a certificate with a repeated extension, and to parse one")
				return
			}
			p, err := VerifyCertificate(context.Background(), tc.cert(), opts, tc.nonce)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				if p.Result.TEE != attestation.Sim || p.Result.Measurements["measurement"] != tee.measurement || p.Format != FormatDICE {
					t.Fatalf("unexpected peer %+v %+v", p, p.Result)
				}
				if p.Fresh != (tc.nonce != nil) {
					t.Errorf("Fresh = %v with nonce %q", p.Fresh, tc.nonce)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			if p != nil {
				t.Fatal("a failed verification returned a peer")
			}
		})
	}
}

func TestVerifyCertificateTamperedSignature(t *testing.T) {
	tee := newSimTEE(t, "enclave")
	id := tee.identity(t)
	tc, err := id.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	der := bytes.Clone(tc.Certificate[0])
	der[len(der)-5] ^= 1 // inside the signature
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyCertificate(context.Background(), cert, attestation.Options{SimRoots: []*x509.Certificate{tee.platform.Certificate()}}, nil)
	if err == nil || !strings.Contains(err.Error(), "self-signed") {
		t.Fatalf("want self-signature error, got %v", err)
	}
}

func TestVerifierRequiresPolicy(t *testing.T) {
	tee := newSimTEE(t, "enclave")
	id := tee.identity(t)
	c, err := id.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Options: attestation.Options{SimRoots: []*x509.Certificate{tee.platform.Certificate()}}}
	if _, err := v.VerifyCertificate(context.Background(), c.Leaf, nil); err == nil {
		t.Fatal("a verifier without a policy accepted a peer")
	}
	if _, err := NewClient(Config{Verifier: v}); err == nil {
		t.Fatal("NewClient accepted a verifier without a policy")
	}
	v.Policy = simPolicy(t, "00"+tee.measurement[2:])
	_, err = v.VerifyCertificate(context.Background(), c.Leaf, nil)
	if err == nil || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("want a policy violation, got %v", err)
	}
	v.Policy = simPolicy(t, tee.measurement)
	v.Check = func(p *Peer) error { return errors.New("caller says no") }
	if _, err = v.VerifyCertificate(context.Background(), c.Leaf, nil); err == nil || err.Error() != "caller says no" {
		t.Fatalf("want the caller's error, got %v", err)
	}
	v.Check = nil
	p, err := v.VerifyCertificate(context.Background(), c.Leaf, nil)
	if err != nil || !p.PolicyChecked {
		t.Fatalf("%+v %v", p, err)
	}
	v.RequireFresh = true
	if _, err = v.VerifyCertificate(context.Background(), c.Leaf, nil); err == nil {
		t.Fatal("RequireFresh accepted a check without a nonce")
	}
}

func TestClaimsRoundTrip(t *testing.T) {
	h := sha256.Sum256([]byte("spki"))
	in := &Claims{HashAlgorithm: HashSHA256, PublicKeyHash: h[:], Others: map[string][]byte{"nonce": {1, 2}, "app": {}}}
	b, err := MarshalClaims(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseClaims(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.HashAlgorithm != HashSHA256 || !bytes.Equal(out.PublicKeyHash, h[:]) || len(out.Others) != 2 ||
		!bytes.Equal(out.Others["nonce"], []byte{1, 2}) {
		t.Fatalf("round trip changed the claims: %+v", out)
	}
}

func TestParseClaimsRejects(t *testing.T) {
	h := bytes.Repeat([]byte{7}, 32)
	entry := func(alg uint64, hash []byte) []byte {
		b, err := encMode.Marshal([]any{alg, hash})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	enc := func(v any) []byte {
		b, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"not a map", enc([]int{1}), "want a map"},
		{"no pubkey-hash", enc(map[string][]byte{"nonce": {1}}), "no pubkey-hash"},
		{"text value", enc(map[string]any{"pubkey-hash": entry(1, h), "nonce": "text"}), "not a byte string"},
		{"integer key", enc(map[any][]byte{1: entry(1, h)}), "want a map"},
		{"unknown algorithm", enc(map[string][]byte{"pubkey-hash": entry(2, h)}), "unsupported pubkey-hash algorithm"},
		{"short hash", enc(map[string][]byte{"pubkey-hash": entry(1, h[:16])}), "is 16 bytes"},
		{"sha-384 size for sha-256", enc(map[string][]byte{"pubkey-hash": entry(1, bytes.Repeat([]byte{1}, 48))}), "is 48 bytes"},
		{"entry not an array", enc(map[string][]byte{"pubkey-hash": enc(map[int]int{1: 2})}), "not a [hash-alg-id"},
		{"three-entry array", enc(map[string][]byte{"pubkey-hash": enc([]any{1, h, h})}), "not a [hash-alg-id"},
		{"duplicate key", append([]byte{0xa2}, append(append(enc("pubkey-hash"), enc(entry(1, h))...), append(enc("pubkey-hash"), enc(entry(1, h))...)...)...), "want a map"},
		{"trailing bytes", append(enc(map[string][]byte{"pubkey-hash": entry(1, h)}), 0), "want a map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClaims(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
	for _, alg := range []uint64{HashSHA384, HashSHA512} {
		hh, _ := hashSPKI(alg, []byte("x"))
		if _, err := ParseClaims(enc(map[string][]byte{"pubkey-hash": entry(alg, hh)})); err != nil {
			t.Errorf("algorithm %d: %v", alg, err)
		}
	}
}

func TestParseTaggedEvidenceRejects(t *testing.T) {
	enc := func(v any) []byte {
		b, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"untagged", enc([]any{[]byte{1}, []byte{2}}), "tagged evidence"},
		{"one entry", enc(tagged(TagSim, []any{[]byte{1}})), "two byte strings"},
		{"three entries", enc(tagged(TagSim, []any{[]byte{1}, []byte{2}, []byte{3}})), "two byte strings"},
		{"text evidence", enc(tagged(TagSim, []any{"ev", []byte{2}})), "not a byte string"},
		{"empty evidence", enc(tagged(TagSim, []any{[]byte{}, []byte{2}})), "empty evidence"},
		{"too large", make([]byte, maxExtensionSize+1), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTaggedEvidence(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// TestEndorsements round-trips real SGX collateral through the endorsement extension, and checks
// the verifier uses it: the SGX sample's TCB status comes out of collateral found only there.
func TestEndorsements(t *testing.T) {
	dir := filepath.Join(testdata.Attestation(t), "sgx")
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	in := &IntelEndorsements{
		Version:               3,
		TCBInfo:               append(read("oasis_tcbinfo_sgx_v3_fmspc_00606A000000.json"), 0), // C string, as Intel's libraries give it
		TCBInfoIssuerChain:    read("oasis_tcb_signing_chain.pem"),
		QEIdentity:            read("oasis_qeidentity_qe_v2.json"),
		QEIdentityIssuerChain: read("oasis_tcb_signing_chain.pem"),
	}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseEndorsements(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != 3 || !bytes.Equal(out.TCBInfo, in.TCBInfo) || out.CreationDateTime != nil {
		t.Fatalf("round trip changed endorsements: version %d", out.Version)
	}
	coll := out.Collateral()
	if len(coll) != 4 || bytes.HasSuffix(coll[0], []byte{0}) {
		t.Fatalf("collateral: %d files", len(coll))
	}
	quote := read("oasis_quote_v3_pck_chain.bin")
	res, err := attestation.Verify(context.Background(), quote, attestation.Options{
		Now: time.Date(2022, 12, 20, 0, 50, 4, 0, time.UTC), Collateral: coll})
	if err != nil || res.TCBStatus != "SWHardeningNeeded" {
		t.Fatalf("collateral from the endorsements: %+v %v", res, err)
	}
	in.CreationDateTime = []byte("2022-12-20T00:00:00Z")
	b, _ = in.Marshal()
	if out, err = ParseEndorsements(b); err != nil || string(out.CreationDateTime) != "2022-12-20T00:00:00Z" {
		t.Fatalf("nine entries: %v", err)
	}
	enc := func(v any) []byte {
		b, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, bad := range map[string][]byte{
		"SNP tag":       enc(tagged(TagSNP, []any{1, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}})),
		"seven entries": enc(tagged(TagIntelQuote, []any{1, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}})),
		"text version":  enc(tagged(TagIntelQuote, []any{"3", []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}})),
		"text entry":    enc(tagged(TagIntelQuote, []any{3, "x", []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}})),
	} {
		if _, err := ParseEndorsements(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseTaggedEvidence(f *testing.F) {
	tee := newSimTEE(f, "fuzz")
	id := tee.identity(f)
	c, err := id.FreshCertificate(context.Background(), []byte("nonce"), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range c.Leaf.Extensions {
		if e.Id.Equal(OIDTaggedEvidence) {
			f.Add(e.Value)
		}
	}
	f.Add([]byte{0xd9, 0xea, 0x60, 0x82, 0x41, 0x01, 0x41, 0x02})
	f.Add([]byte{0xd9, 0xea, 0x60, 0x9f, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		te, err := ParseTaggedEvidence(b)
		if err != nil {
			return
		}
		if len(te.Evidence) == 0 {
			t.Fatal("parsed empty evidence")
		}
		if _, err := ParseClaims(te.ClaimsBuffer); err != nil {
			return
		}
	})
}

func FuzzParseClaims(f *testing.F) {
	h := sha256.Sum256(nil)
	b, err := MarshalClaims(&Claims{HashAlgorithm: HashSHA256, PublicKeyHash: h[:], Others: map[string][]byte{"nonce": {1}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseClaims(b)
		if err != nil {
			return
		}
		hh, err := newHash(c.HashAlgorithm)
		if err != nil || len(c.PublicKeyHash) != hh.Size() {
			t.Fatalf("accepted claims with algorithm %d and a %d-byte hash", c.HashAlgorithm, len(c.PublicKeyHash))
		}
	})
}

func FuzzParseEndorsements(f *testing.F) {
	e := &IntelEndorsements{Version: 3, TCBInfo: []byte("{}\x00"), PCKCRL: []byte{0x30}}
	b, err := e.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEndorsements(b)
		if err != nil {
			return
		}
		for _, c := range e.Collateral() {
			if len(c) == 0 {
				t.Fatal("empty collateral file")
			}
		}
	})
}

// FuzzVerifyCertificate feeds certificates (DER) to the whole verification: parse errors and
// rejections are fine; panics are not, and neither is accepting a key that no seed's genuine
// evidence vouches for (the fuzzer cannot make new evidence).
func FuzzVerifyCertificate(f *testing.F) {
	tee := newSimTEE(f, "fuzz")
	id := tee.identity(f)
	c, err := id.Certificate(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	legacy := legacyCert(f, "ratls_legacy_sgx_ecdsa_rsa_sha1.pem")
	f.Add(c.Certificate[0])
	f.Add(legacy.Raw)
	genuineKeys := map[string]bool{string(c.Leaf.RawSubjectPublicKeyInfo): true, string(legacy.RawSubjectPublicKeyInfo): true}
	opts := attestation.Options{SimRoots: []*x509.Certificate{tee.platform.Certificate()}, Now: legacyTime}
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		for _, now := range []time.Time{time.Now(), legacyTime} {
			opts.Now = now
			p, err := VerifyCertificate(context.Background(), cert, opts, nil)
			if err != nil {
				continue
			}
			if !genuineKeys[string(cert.RawSubjectPublicKeyInfo)] || !p.Result.Verified {
				t.Fatal("verified a certificate for a key no genuine evidence binds")
			}
		}
	})
}
