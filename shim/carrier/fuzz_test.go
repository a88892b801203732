package carrier

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// FuzzRewriteSpec: whatever config.json holds, the rewrite either fails with an error or
// yields a document whose env and annotations are exactly those given and which still
// decodes the way rune decodes it.
func FuzzRewriteSpec(f *testing.F) {
	for _, seed := range []string{
		`{"ociVersion":"1.0.2","process":{"args":["a"],"env":["A=1"],"cwd":"/"},"root":{"path":"rootfs"}}`,
		`{"process":{"env":null},"annotations":null}`,
		`{"process":{},"annotations":{"k":"v"},"x":[1,{"y":"\u00e9"}]}`,
		`{"process":{"env":["RUNE_CARRIER=wasm"]},"Process":{"env":[]}}`,
		`{"process":1}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	env := []string{"PATH=/bin", "X=<&>"}
	anns := map[string]string{"enclave.type": "sim", "io.inclavare.enclave-manifest.required": "true"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := rewriteSpec(raw, env, anns)
		if err != nil {
			return
		}
		var doc struct {
			Process struct {
				Env []string `json:"env"`
			} `json:"process"`
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("rewritten spec does not decode: %v\n%s", err, out)
		}
		if !slices.Equal(doc.Process.Env, env) || !maps.Equal(doc.Annotations, anns) {
			t.Fatalf("rewritten spec has env %q and annotations %v", doc.Process.Env, doc.Annotations)
		}
	})
}

// FuzzContainerdReply: the reader of containerd's replies (gRPC frame, protobuf fields) never
// panics, and what it accepts as a frame is exactly the bytes after a matching prefix.
func FuzzContainerdReply(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 0, 0, 0, 0},
		append([]byte{0, 0, 0, 0, 7}, protoString(1, string(protoString(3, "a:b")))...),
		protoString(1, string(protoString(3, string(protoString(2, fakeDigest))))),
		{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10},
		{0x08, 0x96, 0x01, 0x0a, 0x00},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if msg, err := unframe(data); err == nil && (len(msg) != len(data)-5 || data[0] != 0) {
			t.Fatalf("unframe accepted %x as %x", data, msg)
		}
		containerImage(data)
		imageDigest(data)
	})
}
