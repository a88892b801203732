package task

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types/runc/options"
	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/events"
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/containerd/runtime"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/inclavare-containers/inclavare-go/shim/config"
)

func marshal(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	return typeurl.MarshalProto(a)
}

func TestDecodeRuntimeOptions(t *testing.T) {
	runcOpts := &options.Options{BinaryName: "/x/rune", Root: "/r", ShimCgroup: "/shim", IoUid: 7}
	tests := []struct {
		name    string
		in      *anypb.Any
		want    RequestOptions
		wantErr string
	}{
		{name: "none", in: nil},
		{name: "empty any", in: &anypb.Any{}},
		{name: "runc options", in: marshal(t, runcOpts), want: RequestOptions{Runc: runcOpts}},
		{name: "config path (ctr --runtime-config-path)", in: marshal(t, &runtimeoptions.Options{ConfigPath: "/etc/x.toml"}), want: RequestOptions{ConfigPath: "/etc/x.toml"}},
		{name: "config body (CRI options section)", in: marshal(t, &runtimeoptions.Options{ConfigBody: []byte("log_level = \"debug\"\n")}), want: RequestOptions{ConfigBody: []byte("log_level = \"debug\"\n")}},
		{name: "other type", in: marshal(t, &emptypb.Empty{}), wantErr: `runtime options of type "google.protobuf.Empty" are not supported`},
		{name: "unknown type", in: &anypb.Any{TypeUrl: "example.com/Nope", Value: []byte{1}}, wantErr: `decode runtime options of type "example.com/Nope"`},
		{name: "corrupt value", in: &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0xff, 0xff}}, wantErr: "decode runtime options"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in typeurl.Any
			if tc.in != nil {
				in = tc.in
			}
			got, err := DecodeRuntimeOptions(in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got.Runc, tc.want.Runc) || got.ConfigPath != tc.want.ConfigPath || string(got.ConfigBody) != string(tc.want.ConfigBody) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPinToRune(t *testing.T) {
	cfg := config.Default()
	cfg.Rune.Root = "/run/rune"
	systemd := config.Default()
	systemd.Rune.SystemdCgroup = true
	const rune = "/usr/local/bin/rune"
	tests := []struct {
		name    string
		req     *options.Options
		cfg     *config.Config
		want    *options.Options
		wantErr string
	}{
		{name: "no options", cfg: cfg, want: &options.Options{BinaryName: rune, Root: "/run/rune"}},
		{name: "client's other options kept", cfg: cfg,
			req:  &options.Options{ShimCgroup: "/pods/x", IoUid: 1000, IoGid: 1000, NoPivotRoot: true, CriuWorkPath: "/c"},
			want: &options.Options{ShimCgroup: "/pods/x", IoUid: 1000, IoGid: 1000, NoPivotRoot: true, CriuWorkPath: "/c", BinaryName: rune, Root: "/run/rune"}},
		{name: "client root kept", cfg: cfg, req: &options.Options{Root: "/mine"}, want: &options.Options{BinaryName: rune, Root: "/mine"}},
		{name: "same binary accepted", cfg: cfg, req: &options.Options{BinaryName: rune}, want: &options.Options{BinaryName: rune, Root: "/run/rune"}},
		{name: "systemd from config", cfg: systemd, want: &options.Options{BinaryName: rune, Root: config.DefaultRuneRoot, SystemdCgroup: true}},
		{name: "systemd from client", cfg: cfg, req: &options.Options{SystemdCgroup: true}, want: &options.Options{BinaryName: rune, Root: "/run/rune", SystemdCgroup: true}},
		{name: "other binary refused", cfg: cfg, req: &options.Options{BinaryName: "/usr/sbin/runc"}, wantErr: `name binary "/usr/sbin/runc", but this shim runs rune "/usr/local/bin/rune" only`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before *options.Options
			if tc.req != nil {
				before = proto.Clone(tc.req).(*options.Options)
			}
			got, err := PinToRune(tc.req, tc.cfg, rune)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if tc.req != nil && !proto.Equal(tc.req, before) {
				t.Fatalf("PinToRune changed the request's options: %v, was %v", tc.req, before)
			}
		})
	}
}

func TestOptionsFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := &options.Options{BinaryName: "/bin/rune", Root: "/run/rune", SystemdCgroup: true, IoUid: 3}
	if err := WriteOptions(dir, in); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, OptionsFile))
	if err != nil {
		t.Fatal(err)
	}
	// The file uses the protobuf field names, as the runc shim's does.
	for _, key := range []string{`"binary_name"`, `"root"`, `"systemd_cgroup"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("%s lacks %s: %s", OptionsFile, key, raw)
		}
	}
	out, err := ReadOptions(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip: %v, want %v", out, in)
	}
	if _, err := ReadOptions(t.TempDir()); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestSharesPidNamespace(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want bool
	}{
		{"own pid namespace", `{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}`, false},
		{"joins a pod's pid namespace", `{"linux":{"namespaces":[{"type":"pid","path":"/proc/7/ns/pid"}]}}`, true},
		{"host pid namespace", `{"linux":{"namespaces":[{"type":"mount"}]}}`, true},
		{"no linux section", `{}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.spec), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := sharesPidNamespace(dir)
			if err != nil || got != tc.want {
				t.Fatalf("sharesPidNamespace = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sharesPidNamespace(dir); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("corrupt spec: %v", err)
	}
}

func TestTopicOf(t *testing.T) {
	tests := []struct {
		e    events.Event
		want string
	}{
		{&eventstypes.TaskCreate{}, runtime.TaskCreateEventTopic},
		{&eventstypes.TaskStart{}, runtime.TaskStartEventTopic},
		{&eventstypes.TaskExit{}, runtime.TaskExitEventTopic},
		{&eventstypes.TaskDelete{}, runtime.TaskDeleteEventTopic},
		{&eventstypes.TaskExecAdded{}, runtime.TaskExecAddedEventTopic},
		{&eventstypes.TaskExecStarted{}, runtime.TaskExecStartedEventTopic},
		{&eventstypes.TaskPaused{}, runtime.TaskPausedEventTopic},
		{&eventstypes.TaskResumed{}, runtime.TaskResumedEventTopic},
		{&eventstypes.TaskOOM{}, runtime.TaskOOMEventTopic},
		{&eventstypes.TaskCheckpointed{}, runtime.TaskCheckpointedEventTopic},
		{&eventstypes.ContainerCreate{}, runtime.TaskUnknownTopic},
	}
	for _, tc := range tests {
		if got := topicOf(tc.e); got != tc.want {
			t.Errorf("topicOf(%T) = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestTaskStatus(t *testing.T) {
	want := map[string]apitask.Status{
		"created": apitask.Status_CREATED, "running": apitask.Status_RUNNING, "stopped": apitask.Status_STOPPED,
		"paused": apitask.Status_PAUSED, "pausing": apitask.Status_PAUSING, "": apitask.Status_UNKNOWN, "zombie": apitask.Status_UNKNOWN,
	}
	got := map[string]apitask.Status{}
	for st := range want {
		got[st] = taskStatus(st)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("taskStatus: %v, want %v", got, want)
	}
}

func TestEventQueueAfterClose(t *testing.T) {
	q := newEventQueue()
	q.send(&eventstypes.TaskStart{ContainerID: "a"})
	q.close()
	q.close()                                       // twice is harmless
	q.send(&eventstypes.TaskExit{ContainerID: "a"}) // dropped, must not panic
	var got []events.Event
	for e := range q.ch {
		got = append(got, e)
	}
	if len(got) != 1 {
		t.Fatalf("queued events after close: %v, want the one sent before", got)
	}
}
