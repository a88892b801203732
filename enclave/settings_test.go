package enclave

import (
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestFromSpec(t *testing.T) {
	cases := []struct {
		name    string
		env     []string
		ann     map[string]string
		want    *Settings
		wantEnv []string
		err     string
	}{
		{name: "ordinary", env: []string{"PATH=/bin"}, wantEnv: []string{"PATH=/bin"}},
		{name: "env", env: []string{"PATH=/bin", "ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm", "ENCLAVE_RUNTIME_ARGS=memory=64M,x=1", "ENCLAVE_RUNTIME_LOGLEVEL=debug"},
			want:    &Settings{Type: "sim", RuntimePath: "builtin:wasm", Args: []string{"memory=64M", "x=1"}, LogLevel: "debug"},
			wantEnv: []string{"PATH=/bin"}},
		{name: "annotations", ann: map[string]string{"enclave.type": "sim", "enclave.runtime.path": "builtin:native"},
			want: &Settings{Type: "sim", RuntimePath: "builtin:native", LogLevel: "info"}, wantEnv: []string{}},
		{name: "env wins over annotation", env: []string{"ENCLAVE_TYPE=sim"}, ann: map[string]string{"enclave.type": "tdx", "enclave.runtime.path": "builtin:wasm"},
			want: &Settings{Type: "sim", RuntimePath: "builtin:wasm", LogLevel: "info"}, wantEnv: []string{}},
		{name: "path without type", env: []string{"ENCLAVE_RUNTIME_PATH=builtin:wasm"}, err: "ENCLAVE_TYPE is not"},
		{name: "unknown type", env: []string{"ENCLAVE_TYPE=x", "ENCLAVE_RUNTIME_PATH=builtin:wasm"}, err: `unknown enclave type "x"`},
		{name: "relative PAL", env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=libpal.so"}, err: "absolute host path"},
		{name: "native needs sim", env: []string{"ENCLAVE_TYPE=snp", "ENCLAVE_RUNTIME_PATH=builtin:native"}, err: "only available with ENCLAVE_TYPE=sim"},
		{name: "bad level", env: []string{"ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=builtin:wasm", "ENCLAVE_RUNTIME_LOGLEVEL=LOUD"}, err: "invalid ENCLAVE_RUNTIME_LOGLEVEL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{Env: tc.env}, Annotations: tc.ann}
			got, err := FromSpec(spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("settings %+v, want %+v", got, tc.want)
			}
			if len(spec.Process.Env) != len(tc.wantEnv) || (len(tc.wantEnv) > 0 && !reflect.DeepEqual(spec.Process.Env, tc.wantEnv)) {
				t.Errorf("env left %q, want %q", spec.Process.Env, tc.wantEnv)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		p    Process
		want Resolved
		err  string
	}{
		{p: Process{Path: "/app/x"}, want: Resolved{Path: "/app/x", Dir: "/", Args: []string{"/app/x"}}},
		{p: Process{Path: "x", Dir: "/app", Args: []string{"x", "a"}}, want: Resolved{Path: "/app/x", Dir: "/app", Args: []string{"x", "a"}}},
		{p: Process{Path: "x", Dir: "app"}, err: "not absolute"},
		{p: Process{}, err: "empty"},
	} {
		got, err := tc.p.Resolve()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want %q", tc.p, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: %+v %v, want %+v", tc.p, got, err, tc.want)
		}
	}
}
