package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// resource is one advertised resource: its devices, and the gRPC server that serves it to
// the kubelet on its own socket.
type resource struct {
	pb.UnimplementedDevicePluginServer

	plugin     *Plugin
	name       string
	socketName string
	socketPath string

	mu         sync.Mutex
	devices    []*pb.Device
	changed    chan struct{} // closed (and replaced) whenever devices change
	server     *grpc.Server
	stopping   chan struct{} // closed when server stops, to end its ListAndWatch streams
	served     sync.WaitGroup
	socket     fileIdentity // the socket server listens on
	registered fileIdentity // the kubelet socket this resource was last registered with
}

func newResource(p *Plugin, name string, devs []*pb.Device) *resource {
	return &resource{
		plugin:     p,
		name:       name,
		socketName: socketNames[name],
		socketPath: filepath.Join(p.cfg.PluginDir, socketNames[name]),
		devices:    devs,
		changed:    make(chan struct{}),
	}
}

// snapshot returns the devices and a channel closed at their next change.
func (r *resource) snapshot() ([]*pb.Device, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.devices, r.changed
}

func (r *resource) setDevices(devs []*pb.Device) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sameDevices(r.devices, devs) {
		return false
	}
	r.devices = devs
	close(r.changed)
	r.changed = make(chan struct{})
	return true
}

// setHealth marks every device healthy or unhealthy; it reports whether anything changed.
func (r *resource) setHealth(health string) bool {
	r.mu.Lock()
	devs := make([]*pb.Device, len(r.devices))
	for i, d := range r.devices {
		devs[i] = &pb.Device{ID: d.ID, Health: health, Topology: d.Topology}
	}
	r.mu.Unlock()
	return r.setDevices(devs)
}

func (r *resource) registeredWith() fileIdentity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

func (r *resource) setRegistered(id fileIdentity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = id
}

// ensureServing starts the server if it is not running, or restarts it on a fresh socket if
// its socket file was removed or replaced (the kubelet removes plugin sockets when it
// starts). A new socket needs a new registration.
func (r *resource) ensureServing() error {
	r.mu.Lock()
	running := r.server != nil
	want := r.socket
	r.mu.Unlock()
	if running {
		if got, ok := socketIdentity(r.socketPath); ok && got == want {
			return nil
		}
		r.plugin.log.Warnf("%s: socket %s is gone or replaced; serving on a new one", r.name, r.socketPath)
		r.stopServing()
	}
	if err := os.Remove(r.socketPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", r.socketPath)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", r.socketPath, err)
	}
	id, ok := socketIdentity(r.socketPath)
	if !ok {
		l.Close()
		return fmt.Errorf("socket %s vanished right after it was created", r.socketPath)
	}
	srv := grpc.NewServer()
	ep := &endpoint{resource: r, stopping: make(chan struct{})}
	pb.RegisterDevicePluginServer(srv, ep)
	r.mu.Lock()
	r.server, r.stopping, r.socket = srv, ep.stopping, id
	r.registered = fileIdentity{}
	r.mu.Unlock()
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		if err := srv.Serve(l); err != nil {
			r.plugin.log.Errorf("%s: serve: %v", r.name, err)
		}
	}()
	return nil
}

// stopServing ends the server (after its ListAndWatch streams) and removes its socket if it is
// still the one it listened on.
func (r *resource) stopServing() {
	r.mu.Lock()
	srv, stopping, id := r.server, r.stopping, r.socket
	r.server, r.stopping, r.socket, r.registered = nil, nil, fileIdentity{}, fileIdentity{}
	r.mu.Unlock()
	if srv == nil {
		return
	}
	close(stopping)
	srv.GracefulStop()
	r.served.Wait()
	if got, ok := socketIdentity(r.socketPath); ok && got == id {
		os.Remove(r.socketPath)
	}
}

// GetDevicePluginOptions returns the options the resource registered with.
func (r *resource) GetDevicePluginOptions(context.Context, *pb.Empty) (*pb.DevicePluginOptions, error) {
	return pluginOptions(), nil
}

// endpoint is a resource as one gRPC server serves it: its ListAndWatch streams end when
// that server stops, even while a newer server of the same resource runs.
type endpoint struct {
	*resource
	stopping chan struct{}
}

// ListAndWatch sends the device list now and again at every change, until the kubelet hangs
// up or the server stops.
func (e *endpoint) ListAndWatch(_ *pb.Empty, stream grpc.ServerStreamingServer[pb.ListAndWatchResponse]) error {
	for {
		devs, changed := e.snapshot()
		if err := stream.Send(&pb.ListAndWatchResponse{Devices: devs}); err != nil {
			return fmt.Errorf("send %s devices: %w", e.name, err)
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		case <-e.stopping:
			return nil
		}
	}
}

// GetPreferredAllocation picks devices for each container; see preferredAllocation.
func (r *resource) GetPreferredAllocation(_ context.Context, req *pb.PreferredAllocationRequest) (*pb.PreferredAllocationResponse, error) {
	devs, _ := r.snapshot()
	topo := make(map[string]int64, len(devs))
	order := make(map[string]int, len(devs))
	for i, d := range devs {
		topo[d.ID], order[d.ID] = numaNode(d), i
	}
	resp := &pb.PreferredAllocationResponse{}
	for i, c := range req.GetContainerRequests() {
		ids, err := preferredAllocation(c.GetAvailableDeviceIDs(), c.GetMustIncludeDeviceIDs(), int(c.GetAllocationSize()), topo, order)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: container request %d: %v", r.name, i, err)
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pb.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

// Allocate checks that every requested device was advertised and is healthy, then returns
// what each container needs to use them.
func (r *resource) Allocate(_ context.Context, req *pb.AllocateRequest) (*pb.AllocateResponse, error) {
	devs, _ := r.snapshot()
	health := make(map[string]string, len(devs))
	for _, d := range devs {
		health[d.ID] = d.Health
	}
	resp := &pb.AllocateResponse{}
	for i, c := range req.GetContainerRequests() {
		ids := c.GetDevicesIds()
		if len(ids) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "%s: container request %d names no device", r.name, i)
		}
		seen := map[string]bool{}
		for _, id := range ids {
			switch h, ok := health[id]; {
			case !ok:
				return nil, status.Errorf(codes.NotFound, "%s: unknown device %q", r.name, id)
			case h != pb.Healthy:
				return nil, status.Errorf(codes.FailedPrecondition, "%s: device %q is %s", r.name, id, h)
			case seen[id]:
				return nil, status.Errorf(codes.InvalidArgument, "%s: device %q requested twice", r.name, id)
			}
			seen[id] = true
		}
		resp.ContainerResponses = append(resp.ContainerResponses, r.plugin.containerResponse(r.name, ids))
	}
	return resp, nil
}

// PreStartContainer is not required (PreStartRequired is false); it only checks the IDs.
func (r *resource) PreStartContainer(_ context.Context, req *pb.PreStartContainerRequest) (*pb.PreStartContainerResponse, error) {
	devs, _ := r.snapshot()
	known := make(map[string]bool, len(devs))
	for _, d := range devs {
		known[d.ID] = true
	}
	for _, id := range req.GetDevicesIds() {
		if !known[id] {
			return nil, status.Errorf(codes.NotFound, "%s: unknown device %q", r.name, id)
		}
	}
	return &pb.PreStartContainerResponse{}, nil
}
