package task

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestWithoutCarrier(t *testing.T) {
	const url = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	anyOf := func(env ...string) *anypb.Any {
		b, err := json.Marshal(&specs.Process{Args: []string{"/app/x.wasm"}, Cwd: "/", Env: env})
		if err != nil {
			t.Fatal(err)
		}
		return &anypb.Any{TypeUrl: url, Value: b}
	}
	tests := []struct {
		name string
		in   *anypb.Any
		want []string
	}{
		{"no spec", nil, nil},
		{"no carrier: untouched", anyOf("A=1", "RUNE_CARRIERX=1"), []string{"A=1", "RUNE_CARRIERX=1"}},
		{"carrier removed", anyOf("A=1", "RUNE_CARRIER=wasm", "B=2", "RUNE_CARRIER=native"), []string{"A=1", "B=2"}},
		{"seal removed", anyOf("A=1", "RUNE_CARRIER_SEAL=t/k/app", "RUNE_CARRIER=wasm"), []string{"A=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := withoutCarrier(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if tc.in == nil {
				if out != nil {
					t.Fatalf("got %v for no spec", out)
				}
				return
			}
			var p specs.Process
			if err := json.Unmarshal(out.GetValue(), &p); err != nil {
				t.Fatal(err)
			}
			if out.GetTypeUrl() != url || !slices.Equal(p.Env, tc.want) || !slices.Equal(p.Args, []string{"/app/x.wasm"}) {
				t.Fatalf("got %s %+v, want env %v", out.GetTypeUrl(), p, tc.want)
			}
		})
	}
	if _, err := withoutCarrier(&anypb.Any{TypeUrl: url, Value: []byte(`{"env":["RUNE_CARRIER=wasm"`)}); err == nil {
		t.Fatal("a broken process spec was accepted")
	}
}
