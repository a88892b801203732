package manager

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
)

// script writes an executable shell script standing in for `rune features` output.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rune")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func configOptions(t *testing.T, config string) []byte {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigBody: []byte(config)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInfo(t *testing.T) {
	good := script(t, `[ "$1" = features ] && echo '{"ociVersionMin":"1.0.0","ociVersionMax":"1.3.0","linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":true}}}}'`)
	tests := []struct {
		name    string
		stdin   []byte
		wantErr string
	}{
		{name: "features of the configured rune", stdin: configOptions(t, "[rune]\npath = \""+good+"\"\n")},
		{name: "rune missing", stdin: configOptions(t, "[rune]\npath = \"/nonexistent/rune\"\n"), wantErr: "/nonexistent/rune"},
		{name: "features not JSON", stdin: configOptions(t, "[rune]\npath = \""+script(t, "echo nope")+"\"\n"), wantErr: "features"},
		{name: "features fail", stdin: configOptions(t, "[rune]\npath = \""+script(t, "echo broken >&2; exit 3")+"\"\n"), wantErr: "broken"},
		{name: "bad configuration", stdin: configOptions(t, "[rune]\nnot_a_key = 1\n"), wantErr: "not_a_key"},
		{name: "options not protobuf", stdin: []byte{0xff, 0xff}, wantErr: "runtime options"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := New("io.containerd.rune.v2").Info(context.Background(), bytes.NewReader(tc.stdin))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Info: got %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Info: %v", err)
			}
			if info.Name != "io.containerd.rune.v2" || info.Options == nil {
				t.Fatalf("Info = %v, want the runtime name and the options echoed", info)
			}
			v, err := typeurl.UnmarshalAny(info.Features)
			if err != nil {
				t.Fatalf("decode features: %v", err)
			}
			f, ok := v.(*features.Features)
			if !ok || f.OCIVersionMax != "1.3.0" || f.Linux == nil || len(f.Linux.Namespaces) != 1 {
				t.Fatalf("features = %#v, want what rune printed", v)
			}
			// The shim cannot mount a rootfs with idmapped layers: it must not offer idmap,
			// or containerd 2.x starts user-namespaced pods that fail.
			if idmap := f.Linux.MountExtensions.IDMap; idmap == nil || idmap.Enabled == nil || *idmap.Enabled {
				t.Fatalf("idmap = %#v, want it offered as disabled", idmap)
			}
		})
	}
}
