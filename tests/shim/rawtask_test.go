package shim

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// tasksClient drives containerd's task API directly: ctr has no "create the task, do not start
// it", which a test of what happens between create and start needs.
type tasksClient struct {
	containers containersapi.ContainersClient
	snapshots  snapshotsapi.SnapshotsClient
	tasks      tasksapi.TasksClient
}

func dialTasks(t *testing.T, sock string) *tasksClient {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &tasksClient{containersapi.NewContainersClient(cc), snapshotsapi.NewSnapshotsClient(cc), tasksapi.NewTasksClient(cc)}
}

// rawTask is a created task with its stdout and stderr FIFOs read into out.
type rawTask struct {
	c        *tasksClient
	id       string
	out      chan string
	closeOut func()
}

// create creates the task of container id (the shim's Create: for a carrier, the conversion and
// rune create) with its stdout and stderr on FIFOs read by the test; deleted at cleanup.
func (c *tasksClient) create(ctx context.Context, t *testing.T, id, fifoDir string) (*rawTask, error) {
	t.Helper()
	ctx = namespaces.WithNamespace(ctx, namespace)
	ctr, err := c.containers.Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := c.snapshots.Mounts(ctx, &snapshotsapi.MountsRequest{Snapshotter: ctr.Container.Snapshotter, Key: ctr.Container.SnapshotKey})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(fifoDir, id+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	stdout := filepath.Join(dir, "stdout")
	if err := syscall.Mkfifo(stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened read-write so that the shim's open for writing never blocks and EOF comes only
	// when the test closes it.
	f, err := os.OpenFile(stdout, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	task := &rawTask{c: c, id: id, out: make(chan string, 1)}
	go func() {
		var buf []byte
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			buf = append(buf, b[:n]...)
			if err != nil {
				break
			}
		}
		task.out <- string(buf)
	}()
	_, err = c.tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Rootfs: mounts.Mounts, Stdout: stdout, Stderr: stdout})
	if err != nil {
		f.Close()
		return nil, err
	}
	t.Cleanup(func() {
		c.tasks.Kill(ctx, &tasksapi.KillRequest{ContainerID: id, Signal: 9})
		c.tasks.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id})
		f.Close()
	})
	task.closeOut = func() { f.SetReadDeadline(time.Now()) }
	return task, nil
}

// run starts the task and waits for it; it returns the exit status and the output.
func (r *rawTask) run(ctx context.Context, t *testing.T, timeout time.Duration) (uint32, string, error) {
	t.Helper()
	ctx = namespaces.WithNamespace(ctx, namespace)
	if _, err := r.c.tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: r.id}); err != nil {
		return 0, r.output(), err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := r.c.tasks.Wait(wctx, &tasksapi.WaitRequest{ContainerID: r.id})
	if err != nil {
		t.Fatalf("wait for %s: %v", r.id, err)
	}
	return st.ExitStatus, r.output(), nil
}

// output is what the task wrote, once it ended (or failed to start).
func (r *rawTask) output() string {
	// The shim closes its ends when the process ended; give the copy a moment, then stop.
	time.Sleep(200 * time.Millisecond)
	r.closeOut()
	select {
	case s := <-r.out:
		return s
	case <-time.After(5 * time.Second):
		return ""
	}
}
