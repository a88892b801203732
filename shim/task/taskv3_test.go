package task

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	taskV3API "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// echoTasks answers from the request, so that a round trip shows every field arrived.
type echoTasks struct {
	taskAPI.TaskService // methods not overridden panic: the test calls only these
	killed              chan *taskAPI.KillRequest
}

func (e echoTasks) State(_ context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	return &taskAPI.StateResponse{ID: r.ID, ExecID: r.ExecID, Pid: 42, Stdout: "/fifo/" + r.ID}, nil
}

func (e echoTasks) Kill(_ context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	e.killed <- r
	return &emptypb.Empty{}, nil
}

func (e echoTasks) Delete(_ context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	return nil, errdefs.ToGRPC(errdefs.ErrNotFound)
}

// TestTaskV3 calls the v2 service through containerd's own generated v3 client over a real
// ttrpc connection.
func TestTaskV3(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	svc := echoTasks{killed: make(chan *taskAPI.KillRequest, 1)}
	registerTaskV3(server, svc)
	go server.Serve(context.Background(), l)
	t.Cleanup(func() { server.Close() })

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	v3 := taskV3API.NewTTRPCTaskClient(client)
	ctx := context.Background()

	st, err := v3.State(ctx, &taskV3API.StateRequest{ID: "c1", ExecID: "e1"})
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if st.ID != "c1" || st.ExecID != "e1" || st.Pid != 42 || st.Stdout != "/fifo/c1" {
		t.Fatalf("State answered %v", st)
	}
	if _, err := v3.Kill(ctx, &taskV3API.KillRequest{ID: "c1", Signal: 9, All: true}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if k := <-svc.killed; k.ID != "c1" || k.Signal != 9 || !k.All {
		t.Fatalf("Kill arrived as %v", k)
	}
	if _, err := v3.Delete(ctx, &taskV3API.DeleteRequest{ID: "gone"}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Fatalf("Delete: %v, want not found", err)
	}
	// The v2 service is not reachable under its own name on this server.
	if err := client.Call(ctx, "containerd.task.v2.Task", "State", &taskAPI.StateRequest{ID: "c1"}, &taskAPI.StateResponse{}); err == nil {
		t.Fatal("v2 answered although only v3 was registered")
	} else if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestTaskV3Complete: every method of containerd's task API v3 is served.
func TestTaskV3Complete(t *testing.T) {
	var want []string
	typ := reflect.TypeOf((*taskV3API.TTRPCTaskService)(nil)).Elem()
	for i := range typ.NumMethod() {
		want = append(want, typ.Method(i).Name)
	}
	var got []string
	for name := range taskV3Desc(echoTasks{}).Methods {
		got = append(got, name)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("v3 methods served %v, want %v", got, want)
	}
}
