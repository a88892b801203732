package carrierhelper

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
