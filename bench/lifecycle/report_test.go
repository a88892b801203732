package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range v {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"odd median unsorted", ms(9, 1, 5), 0.5, 5 * time.Millisecond},
		{"even median is mean of middle two", ms(4, 1, 3, 2), 0.5, 2500 * time.Microsecond},
		{"p90 interpolates", ms(0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), 0.9, 90 * time.Millisecond},
		{"max", ms(3, 8, 1), 1, 8 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := append([]time.Duration(nil), tc.in...)
			if got := quantile(tc.in, tc.q); got != tc.want {
				t.Errorf("quantile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
			}
			for i := range orig {
				if orig[i] != tc.in[i] {
					t.Fatalf("quantile reordered its input: %v", tc.in)
				}
			}
		})
	}
}

func TestSetProcessTrue(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"runc spec shape", `{"ociVersion":"1.0.2-dev","process":{"terminal":true,"args":["sh"],"cwd":"/"},"root":{"path":"rootfs","readonly":true}}`, ""},
		{"no terminal field", `{"process":{"args":["sh","-c","x"]}}`, ""},
		{"not JSON", `{"process":`, "parse OCI config"},
		{"no process", `{"root":{"path":"rootfs"}}`, "no process object"},
		{"process not an object", `{"process":["sh"]}`, "no process object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := setProcessTrue([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Process struct {
					Terminal bool     `json:"terminal"`
					Args     []string `json:"args"`
					Cwd      string   `json:"cwd"`
				} `json:"process"`
				Root *struct {
					Readonly bool `json:"readonly"`
				} `json:"root"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if got.Process.Terminal || len(got.Process.Args) != 1 || got.Process.Args[0] != "true" {
				t.Errorf("process = %+v, want args [true] and no terminal", got.Process)
			}
			var orig map[string]any
			_ = json.Unmarshal([]byte(tc.in), &orig)
			if p := orig["process"].(map[string]any); p["cwd"] != nil && got.Process.Cwd != p["cwd"] {
				t.Errorf("cwd changed to %q", got.Process.Cwd)
			}
			if orig["root"] != nil && (got.Root == nil || !got.Root.Readonly) {
				t.Errorf("root object not preserved: %s", out)
			}
		})
	}
}

func TestNewRuntimesLabels(t *testing.T) {
	rts, err := newRuntimes([]string{"/bin/sh", "/bin/true", "/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, rt := range rts {
		labels = append(labels, rt.label)
	}
	if got, want := strings.Join(labels, ","), "sh,true,sh#2"; got != want {
		t.Errorf("labels = %s, want %s", got, want)
	}
	if _, err := newRuntimes([]string{"/nonexistent/runtime"}); err == nil {
		t.Error("newRuntimes accepted a missing binary")
	}
}
