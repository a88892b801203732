package task

import (
	"context"
	"sync"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/runtime"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
)

// topicOf is the containerd topic of a task event.
func topicOf(e events.Event) string {
	switch e.(type) {
	case *eventstypes.TaskCreate:
		return runtime.TaskCreateEventTopic
	case *eventstypes.TaskStart:
		return runtime.TaskStartEventTopic
	case *eventstypes.TaskExit:
		return runtime.TaskExitEventTopic
	case *eventstypes.TaskDelete:
		return runtime.TaskDeleteEventTopic
	case *eventstypes.TaskExecAdded:
		return runtime.TaskExecAddedEventTopic
	case *eventstypes.TaskExecStarted:
		return runtime.TaskExecStartedEventTopic
	case *eventstypes.TaskPaused:
		return runtime.TaskPausedEventTopic
	case *eventstypes.TaskResumed:
		return runtime.TaskResumedEventTopic
	case *eventstypes.TaskOOM:
		return runtime.TaskOOMEventTopic
	case *eventstypes.TaskCheckpointed:
		return runtime.TaskCheckpointedEventTopic
	}
	return runtime.TaskUnknownTopic
}

// eventQueue publishes task events to containerd in the order they were sent: a client
// must see a task's start before its exit. Sending never blocks on containerd (which may
// be restarting); the publisher retries on its own.
type eventQueue struct {
	mu     sync.Mutex
	ch     chan events.Event
	closed bool
}

func newEventQueue() *eventQueue {
	return &eventQueue{ch: make(chan events.Event, 128)}
}

func (q *eventQueue) send(e events.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return // the shim is shutting down; nobody listens any more
	}
	q.ch <- e
}

func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}

// forward publishes until the queue is closed, then closes the publisher.
func (q *eventQueue) forward(ctx context.Context, publisher shim.Publisher) {
	ns, _ := namespaces.Namespace(ctx)
	// Publishing must outlive a cancelled request context.
	pubCtx := namespaces.WithNamespace(context.Background(), ns)
	for e := range q.ch {
		if err := publisher.Publish(pubCtx, topicOf(e), e); err != nil {
			log.G(ctx).WithError(err).WithField("topic", topicOf(e)).Error("publish task event")
		}
	}
	publisher.Close()
}
