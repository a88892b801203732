package sealed

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/inclavare-containers/inclavare-go/internal/strictjson"
	"github.com/inclavare-containers/inclavare-go/layerkey"
)

func key(t testing.TB) []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := key(t)
	for _, plain := range [][]byte{{}, []byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte("x"), 1<<20)} {
		data, err := Seal(plain, k, "tenant/key/app")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, plain) && len(plain) > 0 {
			t.Fatal("the sealed file holds the plaintext")
		}
		var asked string
		got, err := Unseal(data, func(id string) ([]byte, error) { asked = id; return k, nil })
		if err != nil {
			t.Fatal(err)
		}
		if asked != "tenant/key/app" || !bytes.Equal(got, plain) {
			t.Fatalf("asked %q, got %d bytes, want %d", asked, len(got), len(plain))
		}
	}
}

// TestTamper: every change to a sealed file (header, ciphertext, length) and every wrong key
// fails to open, with a reason.
func TestTamper(t *testing.T) {
	k := key(t)
	plain := []byte("secret workload code")
	data, err := Seal(plain, k, "tenant/key/app")
	if err != nil {
		t.Fatal(err)
	}
	hdrLen := int(binary.BigEndian.Uint32(data[len(Magic):]))
	hdrEnd := len(Magic) + 4 + hdrLen
	reseal := func(f func(h string) string) []byte {
		h := f(string(data[len(Magic)+4 : hdrEnd]))
		out := binary.BigEndian.AppendUint32([]byte(Magic), uint32(len(h)))
		return append(append(out, h...), data[hdrEnd:]...)
	}
	other, _ := Seal([]byte("other workload code!"), k, "tenant/key/app")
	cases := map[string]struct {
		data []byte
		key  []byte
		want string
	}{
		"wrong key":      {data, key(t), "wrong key, or the file was changed"},
		"short key":      {data, k[:16], "want 32"},
		"ciphertext bit": {flip(data, len(data)-20), k, "wrong key, or the file was changed"},
		"tag bit":        {flip(data, len(data)-1), k, "wrong key, or the file was changed"},
		"truncated":      {data[:len(data)-1], k, "truncated or extended"},
		"extended":       {append(bytes.Clone(data), 0), k, "truncated or extended"},
		"other key id":   {reseal(func(h string) string { return strings.Replace(h, "tenant/key/app", "tenant/key/apq", 1) }), k, "wrong key, or the file was changed"},
		"header swapped": {append(bytes.Clone(data[:hdrEnd]), other[hdrEnd:]...), k, "wrong key, or the file was changed"},
		"digest changed": {reseal(func(h string) string { return strings.Replace(h, `"plaintext_sha256":"`, `"plaintext_sha256":"0`, 1) }), k, "plaintext_sha256"},
		"digest replaced": {reseal(func(h string) string {
			return digestRE.ReplaceAllString(h, `"plaintext_sha256":"`+strings.Repeat("0", 64)+`"`)
		}), k, "wrong key, or the file was changed"},
		"duplicate member": {reseal(func(h string) string { return strings.Replace(h, "{", `{"alg":"A256GCM",`, 1) }), k, "twice"},
		"unknown member":   {reseal(func(h string) string { return strings.Replace(h, "{", `{"x":1,`, 1) }), k, "unknown"},
		"alg":              {reseal(func(h string) string { return strings.Replace(h, "A256GCM", "A128GCM", 1) }), k, "alg"},
		"key id traversal": {reseal(func(h string) string { return strings.Replace(h, "tenant/key/app", "tenant/../app", 1) }), k, "starts with '.'"},
		"header length":    {append([]byte(Magic), 0xff, 0xff, 0xff, 0xff), k, "header length"},
		"no header":        {[]byte(Magic), k, "truncated"},
		"not sealed":       {[]byte("\x00asm"), k, "not a sealed file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Unseal(c.data, func(string) ([]byte, error) { return c.key, nil })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, %v; want an error with %q", got, err, c.want)
			}
		})
	}
}

var digestRE = regexp.MustCompile(`"plaintext_sha256":"[0-9a-f]{64}"`)

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

func TestUnsealNoBroker(t *testing.T) {
	data, _ := Seal([]byte("x"), key(t), "tenant/key/app")
	if _, err := Unseal(data, nil); err == nil || !strings.Contains(err.Error(), "ENCLAVE_KBS_URL") {
		t.Fatalf("got %v", err)
	}
	refused := errors.New("policy denied")
	if _, err := Unseal(data, func(string) ([]byte, error) { return nil, refused }); !errors.Is(err, refused) || !strings.Contains(err.Error(), "tenant/key/app") {
		t.Fatalf("got %v", err)
	}
}

func TestSealRefuses(t *testing.T) {
	if _, err := Seal([]byte("x"), key(t), "no-slashes"); err == nil {
		t.Fatal("a bad key id was accepted")
	}
	if _, err := Seal([]byte("x"), make([]byte, 16), "a/b/c"); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}

func FuzzParse(f *testing.F) {
	data, _ := Seal([]byte("x"), make([]byte, KeySize), "a/b/c")
	f.Add(data)
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := Parse(data)
		if err != nil {
			return
		}
		_, _ = sf.Open(make([]byte, KeySize))
	})
}

// wrapKey wraps dek under kek for kid, as the broker's key provider (verdictd WrapKey) does.
func wrapKey(t testing.TB, kek []byte, kid string, dek []byte) []byte {
	t.Helper()
	w, err := layerkey.Wrap(kek, kid, dek)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sealLying seals plaintext under dek with a header that states digest and size as given: what
// a sealer that lies about the plaintext writes (Seal never does).
func sealLying(t testing.TB, plaintext, dek []byte, h Header) []byte {
	t.Helper()
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	h.Alg, h.Nonce = Alg, base64.StdEncoding.EncodeToString(nonce)
	hdr, err := strictjson.Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	aad := append(binary.BigEndian.AppendUint32([]byte(Magic), uint32(len(hdr))), hdr...)
	aead, _ := newAEAD(dek)
	return aead.Seal(aad, nonce, plaintext, aad)
}

func TestWrappedRoundTrip(t *testing.T) {
	kek, dek := key(t), key(t)
	plain := []byte("\x00asm\x01\x00\x00\x00 node-sealed")
	data, err := SealWrapped(plain, dek, "tenant/kek/app", wrapKey(t, kek, "tenant/kek/app", dek))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Wrapped() || f.KeyID != "tenant/kek/app" {
		t.Fatalf("header %+v", f.Header)
	}
	var asked []string
	got, err := Unseal(data, func(id string) ([]byte, error) { asked = append(asked, id); return kek, nil })
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("unseal: %v", err)
	}
	if len(asked) != 1 || asked[0] != "tenant/kek/app" {
		t.Fatalf("asked the broker for %q, want the KEK once", asked)
	}
	// The measurement's code digest is the plaintext's; a tenant-sealed file keeps its own.
	if CodeDigest(data) != sha256.Sum256(plain) {
		t.Fatal("CodeDigest of a wrapped sealed file is not the plaintext's digest")
	}
	if sum, ok := WrappedDigest(data[:min(HeadSize, len(data)-5)]); !ok || sum != sha256.Sum256(plain) {
		t.Fatal("WrappedDigest of the head")
	}
	v1, _ := Seal(plain, dek, "tenant/kek/app")
	if CodeDigest(v1) != sha256.Sum256(v1) {
		t.Fatal("CodeDigest of a tenant-sealed file changed")
	}
	if _, ok := WrappedDigest(v1); ok {
		t.Fatal("a tenant-sealed file reads as wrapped")
	}
	if CodeDigest(plain) != sha256.Sum256(plain) {
		t.Fatal("CodeDigest of a plain file")
	}
}

// TestWrappedTamper: a file sealed with a wrapped content key opens only with the KEK of its
// own key id, with its own wrapped key, and only to the plaintext its header names.
func TestWrappedTamper(t *testing.T) {
	kek, dek := key(t), key(t)
	const kid = "tenant/kek/app"
	plain := []byte("the approved program")
	data, err := SealWrapped(plain, dek, kid, wrapKey(t, kek, kid, dek))
	if err != nil {
		t.Fatal(err)
	}
	hdrEnd := len(Magic) + 4 + int(binary.BigEndian.Uint32(data[len(Magic):]))
	headerOf := func(d []byte) Header {
		h, _, err := ParseHeader(d)
		if err != nil {
			t.Fatal(err)
		}
		return *h
	}
	reseal := func(h string) []byte {
		out := binary.BigEndian.AppendUint32([]byte(Magic), uint32(len(h)))
		return append(append(out, h...), data[hdrEnd:]...)
	}
	hdr := string(data[len(Magic)+4 : hdrEnd])
	// Another file sealed the same way, under its own content key.
	dek2 := key(t)
	other, _ := SealWrapped([]byte("another program!!!!!"), dek2, kid, wrapKey(t, kek, kid, dek2))
	otherWrapped := headerOf(other).WrappedKey
	// The node's own program, under the node's own content key wrapped by the real KEK (the key
	// provider wraps for anyone who reaches it), with the approved program's digest in the header.
	evil := []byte("the node's program!!")
	dek3 := key(t)
	lying := sealLying(t, evil, dek3, Header{KeyID: kid, PlaintextSHA256: headerOf(data).PlaintextSHA256,
		PlaintextSize: int64(len(evil)), WrappedKey: base64.StdEncoding.EncodeToString(wrapKey(t, kek, kid, dek3))})
	short := key(t)[:16]
	shortDEK := sealLying(t, plain, dek, Header{KeyID: kid, PlaintextSHA256: headerOf(data).PlaintextSHA256,
		PlaintextSize: int64(len(plain)), WrappedKey: base64.StdEncoding.EncodeToString(wrapKey(t, kek, kid, short))})
	cases := map[string]struct {
		data []byte
		kek  []byte
		want string
	}{
		"wrong kek": {data, key(t), "wrapped layer key does not open"},
		"kid differs": {reseal(strings.Replace(hdr, `"key_id":"tenant/kek/app"`, `"key_id":"tenant/kek/apq"`, 1)), kek,
			"wrapped by tenant/kek/app, but key_id is tenant/kek/apq"},
		"wrapped key of another file": {reseal(strings.Replace(hdr, headerOf(data).WrappedKey, otherWrapped, 1)), kek,
			"wrong key, or the file was changed"},
		"wrapped key swapped onto another file": {append(bytes.Clone(data[:hdrEnd]), other[hdrEnd:]...), kek, "wrong key, or the file was changed"},
		"digest lie":                            {lying, kek, "does not match the header's digest"},
		"content key of 16 bytes":               {shortDEK, kek, "content key is 16 bytes, want 32"},
		"wrapped key dropped": {reseal(strings.Replace(hdr, `,"wrapped_key":"`+headerOf(data).WrappedKey+`"`, "", 1)), dek,
			"wrong key, or the file was changed"},
		"empty wrapped key":      {reseal(strings.Replace(hdr, headerOf(data).WrappedKey, "", 1)), kek, "wrapped_key is not base64"},
		"wrapped key not base64": {reseal(strings.Replace(hdr, headerOf(data).WrappedKey, "e30", 1)), kek, "wrapped_key is not base64"},
		"wrapped key not a wrapped key": {reseal(strings.Replace(hdr, headerOf(data).WrappedKey, base64.StdEncoding.EncodeToString([]byte(`{"v":2}`)), 1)), kek,
			"wrapped_key: wrapped layer key"},
		"wrapped key null":  {reseal(strings.Replace(hdr, `"`+headerOf(data).WrappedKey+`"`, "null", 1)), kek, "null"},
		"wrapped key twice": {reseal(strings.Replace(hdr, "{", `{"wrapped_key":"`+otherWrapped+`",`, 1)), kek, "twice"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Unseal(c.data, func(string) ([]byte, error) { return c.kek, nil })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, %v; want an error with %q", got, err, c.want)
			}
		})
	}
}

func TestSealWrappedRefuses(t *testing.T) {
	kek, dek := key(t), key(t)
	w := wrapKey(t, kek, "a/b/c", dek)
	for name, c := range map[string]struct {
		dek     []byte
		kid     string
		wrapped []byte
		want    string
	}{
		"kid differs":   {dek, "a/b/d", w, "wrapped by a/b/c, not by the key id a/b/d"},
		"bad key id":    {dek, "a/b", w, "key id"},
		"not wrapped":   {dek, "a/b/c", []byte("{}"), "wrapped layer key"},
		"short content": {dek[:16], "a/b/c", w, "want 32"},
	} {
		if _, err := SealWrapped([]byte("x"), c.dek, c.kid, c.wrapped); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
}

func FuzzParseWrapped(f *testing.F) {
	kek, dek := make([]byte, KeySize), make([]byte, KeySize)
	w, _ := layerkey.Wrap(kek, "a/b/c", dek)
	data, _ := SealWrapped([]byte("x"), dek, "a/b/c", w)
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := Parse(data)
		if err != nil {
			return
		}
		if sf.Wrapped() != (sf.wrapped != nil) {
			t.Fatal("wrapped_key parsed without its wrapped key")
		}
		if _, err := Unseal(data, func(string) ([]byte, error) { return kek, nil }); err == nil && sf.Wrapped() {
			// Only the seed (or a file sealed the same way) opens; its digest is the header's.
			if CodeDigest(data) != sf.PlaintextSum() {
				t.Fatal("CodeDigest is not the header's digest")
			}
		}
	})
}
