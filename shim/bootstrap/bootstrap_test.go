package bootstrap

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// message builds a protobuf message from (field, value) pairs: string and []byte values
// are length-delimited, uint64 values are varints.
func message(kv ...any) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		num := protowire.Number(kv[i].(int))
		switch v := kv[i+1].(type) {
		case string:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, v)
		case []byte:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		case uint64:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
	}
	return b
}

func TestParse(t *testing.T) {
	// A runtime-options Any is what containerd 1.x writes on stdin: marshalled with the
	// protobuf library, not with the helper above, to be sure of its bytes.
	legacy, err := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x0a, 0x02, 'x', 'y'}})
	if err != nil {
		t.Fatal(err)
	}
	opts := message(fieldAnyTypeURL, "containerd.runc.v1.Options", fieldAnyValue, []byte{1, 2, 3})
	full := message(
		fieldInstanceID, "c1",
		fieldNamespace, "k8s.io",
		3, uint64(0xfffffffffffffffc), // log level DEBUG (-4), unused
		fieldContainerdVersion, "v2.4.2",
		5, "/run/containerd/containerd.sock.ttrpc",
		fieldExtensions, message(fieldExtensionValue, opts),
		fieldSocketDir, "/run/shims",
		99, "a field from a later release",
	)
	tests := []struct {
		name    string
		input   []byte
		want    *Params
		wantErr error
	}{
		{name: "full", input: full, want: &Params{InstanceID: "c1", Namespace: "k8s.io", ContainerdVersion: "v2.4.2", SocketDir: "/run/shims",
			Extensions: []*anypb.Any{{TypeUrl: "containerd.runc.v1.Options", Value: []byte{1, 2, 3}}}}},
		{name: "minimal", input: message(fieldInstanceID, "c1", fieldNamespace, "k8s.io"), want: &Params{InstanceID: "c1", Namespace: "k8s.io"}},
		{name: "empty (containerd 1.x without options)", input: nil, wantErr: ErrLegacy},
		{name: "runtime options (containerd 1.x)", input: legacy, wantErr: ErrLegacy},
		{name: "another instance", input: message(fieldInstanceID, "c2", fieldNamespace, "k8s.io"), wantErr: ErrLegacy},
		{name: "another namespace", input: message(fieldInstanceID, "c1", fieldNamespace, "default"), wantErr: ErrLegacy},
		{name: "truncated", input: full[:len(full)-3], wantErr: ErrLegacy},
		{name: "instance id as varint", input: message(fieldInstanceID, uint64(7), fieldNamespace, "k8s.io"), wantErr: ErrLegacy},
		{name: "extension value as varint", input: message(fieldInstanceID, "c1", fieldNamespace, "k8s.io", fieldExtensions, message(fieldExtensionValue, uint64(1))), wantErr: ErrLegacy},
		{name: "text", input: []byte("unix:///run/containerd/s/abc"), wantErr: ErrLegacy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.input, "c1", "k8s.io")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Parse: got %+v, %v; want error %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.InstanceID != tc.want.InstanceID || got.Namespace != tc.want.Namespace ||
				got.ContainerdVersion != tc.want.ContainerdVersion || got.SocketDir != tc.want.SocketDir ||
				len(got.Extensions) != len(tc.want.Extensions) {
				t.Fatalf("Parse: got %+v, want %+v", got, tc.want)
			}
			for i := range got.Extensions {
				if !proto.Equal(got.Extensions[i], tc.want.Extensions[i]) {
					t.Fatalf("extension %d: got %v, want %v", i, got.Extensions[i], tc.want.Extensions[i])
				}
			}
		})
	}
}

func TestExtension(t *testing.T) {
	p, err := Parse(message(fieldInstanceID, "c1", fieldNamespace, "ns",
		fieldExtensions, message(fieldExtensionValue, message(fieldAnyTypeURL, "a", fieldAnyValue, "1")),
		fieldExtensions, message(fieldExtensionValue, message(fieldAnyTypeURL, "b", fieldAnyValue, "2"))), "c1", "ns")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Extension("b"); got == nil || string(got.Value) != "2" {
		t.Fatalf("Extension(b) = %v, want value 2", got)
	}
	if got := p.Extension("c"); got != nil {
		t.Fatalf("Extension(c) = %v, want nil", got)
	}
}

// TestResult decodes the result field by field, as containerd's generated code would.
func TestResult(t *testing.T) {
	b := Result("unix:///run/containerd/s/0123")
	got := map[protowire.Number]any{}
	if err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		got[num] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	version, n := protowire.ConsumeVarint(b[1:])
	if n < 0 || b[0] != byte(fieldResultVersion<<3|int(protowire.VarintType)) || version != TaskAPIVersion {
		t.Fatalf("result does not start with version %d: % x", TaskAPIVersion, b)
	}
	if got[fieldResultAddress] != "unix:///run/containerd/s/0123" || got[fieldResultProtocol] != "ttrpc" {
		t.Fatalf("result fields %v", got)
	}
	// A result must not read as bootstrap parameters (nor the other way round).
	// (field 1 is a varint there, never a string instance id).
	if _, err := Parse(b, "", ""); !errors.Is(err, ErrLegacy) {
		t.Fatalf("a result parsed as params: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(message(fieldInstanceID, "c1", fieldNamespace, "ns"), "c1", "ns")
	f.Add(message(fieldInstanceID, "c1", fieldNamespace, "ns", fieldExtensions, message(fieldExtensionValue, message(fieldAnyTypeURL, "t", fieldAnyValue, "v"))), "c1", "ns")
	f.Add([]byte{0x0a, 0xff}, "", "")
	f.Fuzz(func(t *testing.T, input []byte, id, ns string) {
		p, err := Parse(input, id, ns)
		if err != nil {
			if !errors.Is(err, ErrLegacy) {
				t.Fatalf("error %v does not wrap ErrLegacy", err)
			}
			return
		}
		if p.InstanceID != id || p.Namespace != ns {
			t.Fatalf("accepted params for %q/%q as %q/%q", p.InstanceID, p.Namespace, id, ns)
		}
	})
}
