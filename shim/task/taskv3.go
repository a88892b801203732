package task

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

// taskV3Service is the ttrpc name of containerd's task API v3 (containerd ≥ 2.3).
const taskV3Service = "containerd.task.v3.Task"

// registerTaskV3 serves task API v3 with the v2 service. The two APIs declare the same
// messages under different package names, and only field numbers travel on the wire, so a
// v3 request decodes as its v2 twin and a v2 answer is a valid v3 answer. Registering the
// methods by hand, instead of through api/runtime/task/v3, keeps that package's gRPC code
// (and gRPC with it) out of the shim binary, whose size is most of its memory.
func registerTaskV3(server *ttrpc.Server, s taskAPI.TaskService) {
	server.RegisterService(taskV3Service, taskV3Desc(s))
}

func taskV3Desc(s taskAPI.TaskService) *ttrpc.ServiceDesc {
	return &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"State":      method(s.State),
		"Create":     method(s.Create),
		"Start":      method(s.Start),
		"Delete":     method(s.Delete),
		"Pids":       method(s.Pids),
		"Pause":      method(s.Pause),
		"Resume":     method(s.Resume),
		"Checkpoint": method(s.Checkpoint),
		"Kill":       method(s.Kill),
		"Exec":       method(s.Exec),
		"ResizePty":  method(s.ResizePty),
		"CloseIO":    method(s.CloseIO),
		"Update":     method(s.Update),
		"Wait":       method(s.Wait),
		"Stats":      method(s.Stats),
		"Connect":    method(s.Connect),
		"Shutdown":   method(s.Shutdown),
	}}
}

// method makes a ttrpc method of one handler: the request decodes into the type the
// handler takes.
func method[Req any, PReq interface {
	*Req
	proto.Message
}, Resp any](call func(context.Context, PReq) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := PReq(new(Req))
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		return call(ctx, req)
	}
}
