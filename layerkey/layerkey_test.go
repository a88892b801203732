package layerkey

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func kek(t *testing.T) []byte {
	k := make([]byte, KEKSize)
	rand.Read(k)
	return k
}

func TestWrapUnwrap(t *testing.T) {
	k := kek(t)
	opts := []byte(`{"symkey":"c2VjcmV0","cipheroptions":{"nonce":"bm9uY2U="}}`)
	data, err := Wrap(k, "tenant/key/image", opts)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("c2VjcmV0")) {
		t.Fatal("the wrapped key holds the layer key")
	}
	w, err := Parse(data)
	if err != nil || w.KID != "tenant/key/image" {
		t.Fatalf("parse: %v %+v", err, w)
	}
	got, err := w.Unwrap(k)
	if err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("unwrap: %v %q", err, got)
	}
}

// TestTamper: a wrapped key opens only with its KEK, under its own kid, unchanged.
func TestTamper(t *testing.T) {
	k := kek(t)
	data, _ := Wrap(k, "tenant/key/image", []byte("optsdata"))
	for name, c := range map[string]struct {
		data []byte
		kek  []byte
		want string
	}{
		"wrong kek":      {data, kek(t), "does not open"},
		"short kek":      {data, k[:16], "want 32"},
		"kid moved":      {bytes.Replace(data, []byte("tenant/key/image"), []byte("tenant/key/imagf"), 1), k, "does not open"},
		"ct changed":     {bytes.Replace(data, []byte(`"ct":"`), []byte(`"ct":"AAAA`), 1), k, "does not open"},
		"unknown member": {bytes.Replace(data, []byte(`{`), []byte(`{"x":1,`), 1), k, "unknown"},
		"duplicate":      {bytes.Replace(data, []byte(`{`), []byte(`{"v":1,`), 1), k, "twice"},
		"version":        {bytes.Replace(data, []byte(`"v":1`), []byte(`"v":2`), 1), k, "version 2"},
		"kid traversal":  {bytes.Replace(data, []byte("tenant/key/image"), []byte("tenant/../image"), 1), k, "starts with '.'"},
		"not json":       {[]byte("garbage"), k, "wrapped layer key"},
	} {
		t.Run(name, func(t *testing.T) {
			w, err := Parse(c.data)
			if err == nil {
				_, err = w.Unwrap(c.kek)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	data, _ := Wrap(make([]byte, KEKSize), "a/b/c", []byte("x"))
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		if w, err := Parse(data); err == nil {
			_, _ = w.Unwrap(make([]byte, KEKSize))
		}
	})
}
