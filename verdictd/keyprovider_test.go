package verdictd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ociconfig "github.com/containers/ocicrypt/config"
	keyproviderconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	ocikp "github.com/containers/ocicrypt/keywrap/keyprovider"
	kppb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/inclavare-containers/inclavare-go/layerkey"
	"github.com/inclavare-containers/inclavare-go/verdictd"
)

const kid = "tenant/key/image"

// opts stands for ocicrypt's optsdata of a layer (its symmetric key and cipher options).
var opts = []byte(`{"symkey":"bGF5ZXIga2V5IG9mIHRoZSB0ZW5hbnQncyBpbWFnZSEhIQ==","cipheroptions":{"nonce":"AAECAwQFBgcICQoL"}}`)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type kpFixture struct {
	addr   string // as ocicrypt's configuration names it
	kek    []byte // the KEK at kid
	dir    string // the resources
	log    *lockedBuffer
	client kppb.KeyProviderServiceClient
}

// startKeyProvider serves a key provider on a loopback port (or a unix socket in a fresh
// directory) over real gRPC, with a 32-byte KEK at kid and extra resources.
func startKeyProvider(t *testing.T, allowUnwrap, unixSocket bool, extra map[string][]byte) *kpFixture {
	t.Helper()
	f := &kpFixture{dir: t.TempDir(), kek: make([]byte, layerkey.KEKSize), log: &lockedBuffer{}}
	rand.Read(f.kek)
	res := map[string][]byte{kid: f.kek}
	for k, v := range extra {
		res[k] = v
	}
	for id, data := range res {
		p := filepath.Join(f.dir, filepath.FromSlash(id))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store, err := verdictd.OpenStore(f.dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kp, err := verdictd.NewKeyProvider(verdictd.KeyProviderConfig{Store: store, AllowUnwrap: allowUnwrap,
		Log: slog.New(slog.NewJSONHandler(f.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:0"
	if unixSocket {
		addr = "unix://" + filepath.Join(t.TempDir(), "kp.sock")
	}
	network, address, err := verdictd.ParseKeyProviderAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := verdictd.ListenKeyProvider(network, address)
	if err != nil {
		t.Fatal(err)
	}
	f.addr = verdictd.KeyProviderAddr(l)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- kp.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	f.client = kppb.NewKeyProviderServiceClient(cc)
	return f
}

// call sends a protocol input (JSON) to WrapKey or UnWrapKey and decodes the output.
func (f *kpFixture) call(t *testing.T, unwrap bool, in any) (*ocikp.KeyProviderKeyWrapProtocolOutput, error) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req := &kppb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: b}
	var resp *kppb.KeyProviderKeyWrapProtocolOutput
	if unwrap {
		resp, err = f.client.UnWrapKey(context.Background(), req)
	} else {
		resp, err = f.client.WrapKey(context.Background(), req)
	}
	if err != nil {
		return nil, err
	}
	var out ocikp.KeyProviderKeyWrapProtocolOutput
	if err := json.Unmarshal(resp.GetKeyProviderKeyWrapProtocolOutput(), &out); err != nil {
		t.Fatalf("output: %v", err)
	}
	return &out, nil
}

func wrapInput(params map[string][][]byte, optsData []byte) ocikp.KeyProviderKeyWrapProtocolInput {
	return ocikp.KeyProviderKeyWrapProtocolInput{Operation: ocikp.OpKeyWrap,
		KeyWrapParams: ocikp.KeyWrapParams{Ec: &ociconfig.EncryptConfig{Parameters: params}, OptsData: optsData}}
}

func unwrapInput(annotation []byte) ocikp.KeyProviderKeyWrapProtocolInput {
	return ocikp.KeyProviderKeyWrapProtocolInput{Operation: ocikp.OpKeyUnwrap,
		KeyUnwrapParams: ocikp.KeyUnwrapParams{Dc: &ociconfig.DecryptConfig{Parameters: map[string][][]byte{"verdictd": {[]byte("Enabled")}}}, Annotation: annotation}}
}

func wantStatus(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	s, ok := status.FromError(err)
	if !ok || s.Code() != code || !strings.Contains(s.Message(), text) {
		t.Errorf("got %v, want %s with %q", err, code, text)
	}
}

// TestKeyProviderWithOcicrypt drives the provider with ocicrypt's own key wrapper (the code skopeo
// runs for provider:verdictd), over gRPC on loopback and on a unix socket.
func TestKeyProviderWithOcicrypt(t *testing.T) {
	for _, unixSocket := range []bool{false, true} {
		f := startKeyProvider(t, true, unixSocket, nil)
		kw := ocikp.NewKeyWrapper("verdictd", keyproviderconfig.KeyProviderAttrs{Grpc: f.addr})
		if kw.GetAnnotationID() != verdictd.AnnotationName {
			t.Fatalf("annotation %s, ocicrypt uses %s", verdictd.AnnotationName, kw.GetAnnotationID())
		}
		// What ocicrypt makes of --encryption-key provider:verdictd:tenant/key/image.
		cc, err := ociconfig.EncryptWithKeyProvider([][]byte{[]byte("verdictd:" + kid)})
		if err != nil {
			t.Fatal(err)
		}
		annotation, err := kw.WrapKeys(cc.EncryptConfig, opts)
		if err != nil {
			t.Fatalf("%s: wrap: %v", f.addr, err)
		}
		w, err := layerkey.Parse(annotation)
		if err != nil || w.KID != kid {
			t.Fatalf("%s: the annotation is not a layerkey wrapped key for %s: %v %q", f.addr, kid, err, annotation)
		}
		if bytes.Contains(annotation, opts) {
			t.Fatal("the annotation holds the layer key")
		}
		if got, err := w.Unwrap(f.kek); err != nil || !bytes.Equal(got, opts) {
			t.Fatalf("unwrap with the KEK: %v %q", err, got)
		}
		dc, err := ociconfig.DecryptWithKeyProvider([][]byte{[]byte("verdictd")})
		if err != nil {
			t.Fatal(err)
		}
		got, err := kw.UnwrapKey(dc.DecryptConfig, annotation)
		if err != nil || !bytes.Equal(got, opts) {
			t.Fatalf("%s: unwrap through the provider: %v %q", f.addr, err, got)
		}
		logs := f.log.String()
		for _, want := range []string{`"msg":"wrapped"`, `"step":"keywrap"`, `"kid":"` + kid + `"`, `"remote":`, `"msg":"unwrapped"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("%s: log lacks %s:\n%s", f.addr, want, logs)
			}
		}
		if strings.Contains(logs, "bGF5ZXIga2V5") {
			t.Errorf("the log holds the layer key:\n%s", logs)
		}
	}
}

func TestKeyProviderUnixSocketMode(t *testing.T) {
	f := startKeyProvider(t, false, true, nil)
	st, err := os.Stat(strings.TrimPrefix(f.addr, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want a socket with 0600", st.Mode())
	}
}

func TestKeyProviderUnwrapRefusedByDefault(t *testing.T) {
	f := startKeyProvider(t, false, false, nil)
	out, err := f.call(t, false, wrapInput(map[string][][]byte{"verdictd": {[]byte(kid)}}, opts))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.call(t, true, unwrapInput(out.KeyWrapResults.Annotation))
	wantStatus(t, err, codes.PermissionDenied, "layer keys are unwrapped only inside attested enclaves, which fetch the key-encryption key through the KBS protocol")
	if !strings.Contains(f.log.String(), `"step":"keyunwrap","remote":"tcp:127.0.0.1:`) || !strings.Contains(f.log.String(), `"kid":"`+kid+`","reason":"rpc error: code = PermissionDenied`) {
		t.Errorf("the refusal is not logged:\n%s", f.log.String())
	}
}

func TestKeyProviderWrapRefusals(t *testing.T) {
	f := startKeyProvider(t, true, false, map[string][]byte{
		"tenant/key/short": make([]byte, 31),
		"tenant/key/long":  make([]byte, 33),
	})
	if err := os.Symlink(filepath.Join(f.dir, "tenant/key/image"), filepath.Join(f.dir, "tenant/key/link")); err != nil {
		t.Fatal(err)
	}
	param := func(ids ...string) map[string][][]byte {
		var v [][]byte
		for _, id := range ids {
			v = append(v, []byte(id))
		}
		return map[string][][]byte{"verdictd": v}
	}
	for _, tc := range []struct {
		name string
		in   any
		code codes.Code
		want string
	}{
		{"no parameters for verdictd", wrapInput(map[string][][]byte{"other": {[]byte(kid)}}, opts), codes.InvalidArgument, `no key id for provider "verdictd"`},
		{"provider without key id", wrapInput(param("Enabled"), opts), codes.InvalidArgument, "no key id after provider:verdictd"},
		{"two key ids", wrapInput(param(kid, "tenant/key/other"), opts), codes.InvalidArgument, "2 key ids"},
		{"traversal", wrapInput(param("../key/image"), opts), codes.InvalidArgument, `starts with '.'`},
		{"absolute", wrapInput(param("/etc/passwd"), opts), codes.InvalidArgument, `component "" must be`},
		{"too deep", wrapInput(param("tenant/key/image/x"), opts), codes.InvalidArgument, "want <repository>/<type>/<tag>"},
		{"missing KEK", wrapInput(param("tenant/key/absent"), opts), codes.NotFound, "tenant/key/absent"},
		{"short KEK", wrapInput(param("tenant/key/short"), opts), codes.FailedPrecondition, "key-encryption key tenant/key/short is 31 bytes, want exactly 32"},
		{"long KEK", wrapInput(param("tenant/key/long"), opts), codes.FailedPrecondition, "key-encryption key tenant/key/long is 33 bytes"},
		{"KEK through a symlink", wrapInput(param("tenant/key/link"), opts), codes.InvalidArgument, "crosses a symbolic link"},
		{"wrong op", unwrapInput([]byte("{}")), codes.InvalidArgument, `op "keyunwrap", want "keywrap"`},
		{"not JSON", json.RawMessage(`[1]`), codes.InvalidArgument, "key provider protocol input"},
		{"huge optsdata", wrapInput(param(kid), make([]byte, 1<<20)), codes.InvalidArgument, "too large"},
	} {
		_, err := f.call(t, false, tc.in)
		wantStatus(t, err, tc.code, tc.want)
	}
	// A request beyond the message bound is refused by gRPC before it is decoded.
	_, err := f.call(t, false, wrapInput(param(kid), make([]byte, 5<<20)))
	wantStatus(t, err, codes.ResourceExhausted, "larger than max")
}

func TestKeyProviderUnwrapRefusals(t *testing.T) {
	other := make([]byte, layerkey.KEKSize)
	rand.Read(other)
	f := startKeyProvider(t, true, false, map[string][]byte{
		"tenant/key/other": other,
		"tenant/key/short": make([]byte, 16),
	})
	out, err := f.call(t, false, wrapInput(map[string][][]byte{"verdictd": {[]byte(kid)}}, opts))
	if err != nil {
		t.Fatal(err)
	}
	good := out.KeyWrapResults.Annotation
	edit := func(mod func(w *layerkey.Wrapped)) []byte {
		var w layerkey.Wrapped
		if err := json.Unmarshal(good, &w); err != nil {
			t.Fatal(err)
		}
		mod(&w)
		b, _ := json.Marshal(w)
		return b
	}
	for _, tc := range []struct {
		name       string
		annotation []byte
		code       codes.Code
		want       string
	}{
		{"kid changed to another KEK", edit(func(w *layerkey.Wrapped) { w.KID = "tenant/key/other" }), codes.PermissionDenied, "does not open with key tenant/key/other"},
		{"ct tampered", edit(func(w *layerkey.Wrapped) {
			// Another base64 character in the first place: the ciphertext still decodes, and
			// its first byte differs.
			c := []byte(w.CT)
			if c[0] = 'A'; w.CT[0] == 'A' {
				c[0] = 'B'
			}
			w.CT = string(c)
		}), codes.PermissionDenied, "does not open with key " + kid},
		{"kid missing", edit(func(w *layerkey.Wrapped) { w.KID = "tenant/key/absent" }), codes.NotFound, "tenant/key/absent"},
		{"kid traversal", edit(func(w *layerkey.Wrapped) { w.KID = "tenant/../image" }), codes.InvalidArgument, "kid"},
		{"KEK of the wrong size", edit(func(w *layerkey.Wrapped) { w.KID = "tenant/key/short" }), codes.FailedPrecondition, "tenant/key/short is 16 bytes"},
		{"not a wrapped key", []byte(`{"v":1}`), codes.InvalidArgument, verdictd.AnnotationName},
	} {
		_, err := f.call(t, true, unwrapInput(tc.annotation))
		wantStatus(t, err, tc.code, tc.want)
	}
	if _, err := f.call(t, true, unwrapInput(good)); err != nil {
		t.Fatalf("the untouched key: %v", err)
	}
}

func TestParseKeyProviderAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:50000":        "tcp 127.0.0.1:50000",
		"127.1.2.3:0":            "tcp 127.1.2.3:0",
		"[::1]:50000":            "tcp [::1]:50000",
		"[::ffff:127.0.0.1]:1":   "tcp 127.0.0.1:1",
		"unix:///run/kp.sock":    "unix /run/kp.sock",
		"0.0.0.0:50000":          "not a loopback address",
		"[::]:50000":             "not a loopback address",
		":50000":                 "not an IP address",
		"localhost:50000":        "not an IP address",
		"198.18.0.1:50000":       "not a loopback address",
		"[fe80::1%lo]:50000":     "not an IP address",
		"127.0.0.1":              "want a loopback IP:PORT",
		"127.0.0.1:http":         "not a number",
		"unix://run/kp.sock":     "clean absolute path",
		"unix:///run/../kp.sock": "clean absolute path",
	} {
		network, address, err := verdictd.ParseKeyProviderAddr(addr)
		got := network + " " + address
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

// TestKeyProviderServeStops: Serve returns nil when its context ends, and a unix socket is gone.
func TestKeyProviderServeStops(t *testing.T) {
	store, err := verdictd.OpenStore(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kp, err := verdictd.NewKeyProvider(verdictd.KeyProviderConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "kp.sock")
	l, err := verdictd.ListenKeyProvider("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- kp.Serve(ctx, l) }()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("the socket is left: %v", err)
	}
	if _, err := verdictd.NewKeyProvider(verdictd.KeyProviderConfig{}); err == nil {
		t.Fatal("a key provider without a store")
	}
}

// FuzzKeyProviderRequest: any request bytes to WrapKey and UnWrapKey (unwrap allowed) are answered
// without a panic, and an unwrap succeeds only for a wrapped key that authenticates: it then gives
// exactly the options that were wrapped.
func FuzzKeyProviderRequest(f *testing.F) {
	dir := f.TempDir()
	kek := make([]byte, layerkey.KEKSize)
	rand.Read(kek)
	if err := os.MkdirAll(filepath.Join(dir, "tenant", "key"), 0o700); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tenant", "key", "image"), kek, 0o600); err != nil {
		f.Fatal(err)
	}
	store, err := verdictd.OpenStore(dir, 0)
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	kp, err := verdictd.NewKeyProvider(verdictd.KeyProviderConfig{Store: store, AllowUnwrap: true})
	if err != nil {
		f.Fatal(err)
	}
	wrapped, err := layerkey.Wrap(kek, kid, opts)
	if err != nil {
		f.Fatal(err)
	}
	seed := func(v any) []byte { b, _ := json.Marshal(v); return b }
	f.Add(seed(unwrapInput(wrapped)))
	f.Add(seed(wrapInput(map[string][][]byte{"verdictd": {[]byte(kid)}}, opts)))
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":"e30="}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &kppb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: data}
		_, _ = kp.WrapKey(context.Background(), req)
		resp, err := kp.UnWrapKey(context.Background(), req)
		if err != nil {
			return
		}
		var out ocikp.KeyProviderKeyWrapProtocolOutput
		if err := json.Unmarshal(resp.GetKeyProviderKeyWrapProtocolOutput(), &out); err != nil {
			t.Fatalf("output: %v", err)
		}
		if !bytes.Equal(out.KeyUnwrapResults.OptsData, opts) {
			t.Fatalf("unwrapped %q from %q", out.KeyUnwrapResults.OptsData, data)
		}
	})
}
