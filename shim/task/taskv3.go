package task

import (
	"context"
	"fmt"

	taskV3API "github.com/containerd/containerd/api/runtime/task/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// taskV3 serves containerd's task API v3 (containerd ≥ 2.3) with the v2 service. The two
// APIs declare the same messages under different package names, so a request is decoded
// again as its v2 twin and the answer as its v3 twin: one implementation, two protocols.
type taskV3 struct{ s *Service }

var _ taskV3API.TTRPCTaskService = taskV3{}

// relay recodes in as the request call takes, calls it, and recodes the answer as Resp.
func relay[Resp any, PResp interface {
	*Resp
	proto.Message
}, Req any, PReq interface {
	*Req
	proto.Message
}, Out proto.Message](ctx context.Context, in proto.Message, call func(context.Context, PReq) (Out, error)) (PResp, error) {
	req := PReq(new(Req))
	if err := recode(in, req); err != nil {
		return nil, err
	}
	out, err := call(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := PResp(new(Resp))
	if err := recode(out, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func recode(from, to proto.Message) error {
	b, err := proto.Marshal(from)
	if err == nil {
		err = proto.Unmarshal(b, to)
	}
	if err != nil {
		return fmt.Errorf("task API v3: recode %s as %s: %w", from.ProtoReflect().Descriptor().FullName(), to.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

func (t taskV3) State(ctx context.Context, r *taskV3API.StateRequest) (*taskV3API.StateResponse, error) {
	return relay[taskV3API.StateResponse](ctx, r, t.s.State)
}

func (t taskV3) Create(ctx context.Context, r *taskV3API.CreateTaskRequest) (*taskV3API.CreateTaskResponse, error) {
	return relay[taskV3API.CreateTaskResponse](ctx, r, t.s.Create)
}

func (t taskV3) Start(ctx context.Context, r *taskV3API.StartRequest) (*taskV3API.StartResponse, error) {
	return relay[taskV3API.StartResponse](ctx, r, t.s.Start)
}

func (t taskV3) Delete(ctx context.Context, r *taskV3API.DeleteRequest) (*taskV3API.DeleteResponse, error) {
	return relay[taskV3API.DeleteResponse](ctx, r, t.s.Delete)
}

func (t taskV3) Pids(ctx context.Context, r *taskV3API.PidsRequest) (*taskV3API.PidsResponse, error) {
	return relay[taskV3API.PidsResponse](ctx, r, t.s.Pids)
}

func (t taskV3) Pause(ctx context.Context, r *taskV3API.PauseRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Pause)
}

func (t taskV3) Resume(ctx context.Context, r *taskV3API.ResumeRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Resume)
}

func (t taskV3) Checkpoint(ctx context.Context, r *taskV3API.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Checkpoint)
}

func (t taskV3) Kill(ctx context.Context, r *taskV3API.KillRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Kill)
}

func (t taskV3) Exec(ctx context.Context, r *taskV3API.ExecProcessRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Exec)
}

func (t taskV3) ResizePty(ctx context.Context, r *taskV3API.ResizePtyRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.ResizePty)
}

func (t taskV3) CloseIO(ctx context.Context, r *taskV3API.CloseIORequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.CloseIO)
}

func (t taskV3) Update(ctx context.Context, r *taskV3API.UpdateTaskRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Update)
}

func (t taskV3) Wait(ctx context.Context, r *taskV3API.WaitRequest) (*taskV3API.WaitResponse, error) {
	return relay[taskV3API.WaitResponse](ctx, r, t.s.Wait)
}

func (t taskV3) Stats(ctx context.Context, r *taskV3API.StatsRequest) (*taskV3API.StatsResponse, error) {
	return relay[taskV3API.StatsResponse](ctx, r, t.s.Stats)
}

func (t taskV3) Connect(ctx context.Context, r *taskV3API.ConnectRequest) (*taskV3API.ConnectResponse, error) {
	return relay[taskV3API.ConnectResponse](ctx, r, t.s.Connect)
}

func (t taskV3) Shutdown(ctx context.Context, r *taskV3API.ShutdownRequest) (*emptypb.Empty, error) {
	return relay[emptypb.Empty](ctx, r, t.s.Shutdown)
}
