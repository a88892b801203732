package sealed

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"regexp"
	"strings"
	"testing"
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
