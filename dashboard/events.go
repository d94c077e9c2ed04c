package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// Subscriber is implemented by stores whose task events the dashboard
// can follow (*broker.Redis): the queue and task pages then update as
// tasks change, without reloading. With a Store that is not one, they
// show what they read when loaded.
type Subscriber interface {
	Subscribe(ctx context.Context, queues []string, kinds ...broker.EventKind) (*broker.Subscription, error)
}

// maxStreams bounds the event streams open at once: each holds a Redis
// connection.
const maxStreams = 64

// maxStreamQueues bounds the queues one stream follows.
const maxStreamQueues = 32

// streamPing is how often an idle stream sends a comment, so that proxies
// and browsers keep it open.
const streamPing = 15 * time.Second

// eventJSON is one event of /api/events.
type eventJSON struct {
	Kind    broker.EventKind `json:"kind"`
	ID      string           `json:"id,omitempty"`
	Task    string           `json:"task,omitempty"`
	Queue   string           `json:"queue,omitempty"`
	Status  task.Status      `json:"status,omitempty"`
	Attempt int              `json:"attempt"`
	AtMS    int64            `json:"at_ms"`
}

// streams counts the open event streams of every dashboard of the
// process (they share Redis' connections).
var streams atomic.Int64

// events is /api/events?queue=q...: the queues' task events as
// server-sent events ("task", and "missed" when some were lost), until
// the client leaves or the server shuts down. Without a Subscriber store
// it answers 204, which tells EventSource not to retry.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	sub, ok := h.store.(Subscriber)
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	queues := r.URL.Query()["queue"]
	if len(queues) == 0 || len(queues) > maxStreamQueues {
		http.Error(w, fmt.Sprintf("name 1 to %d queues: ?queue=a&queue=b", maxStreamQueues), http.StatusBadRequest)
		return
	}
	if streams.Add(1) > maxStreams {
		streams.Add(-1)
		http.Error(w, "too many event streams are open; reload the page later", http.StatusServiceUnavailable)
		return
	}
	defer streams.Add(-1)
	ctx, cancel := h.ctx(r)
	s, err := sub.Subscribe(ctx, queues)
	cancel()
	if err != nil {
		h.log.Warn("dashboard: subscribe to task events", "queues", queues, "err", err)
		http.Error(w, "cannot follow the task events (the details are in the server's log)", http.StatusBadGateway)
		return
	}
	defer s.Close()
	// Before the stream says it is subscribed: a Shutdown that comes
	// after that line must find the stream registered to be ended.
	stopping := h.shuttingDown(r)
	rc := http.NewResponseController(w)
	// The server's write timeout is for pages: a stream lasts.
	_ = rc.SetWriteDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not hold the events back
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n: subscribed\n\n")
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-stopping:
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case ev, ok := <-s.Events():
			if !ok {
				return
			}
			name := "task"
			if ev.Kind == broker.EventMissed {
				name = "missed"
			}
			data, _ := json.Marshal(eventJSON{ev.Kind, ev.ID, ev.Task, ev.Queue, ev.Status, ev.Attempt, ev.At.UnixMilli()})
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// shuttingDown returns a channel closed when the server that serves r
// shuts down (http.Server.Shutdown waits for handlers to return, and a
// stream would otherwise hold it until its deadline).
func (h *handler) shuttingDown(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	h.smu.Lock()
	defer h.smu.Unlock()
	if h.stops == nil {
		h.stops = map[*http.Server]chan struct{}{}
	}
	c, ok := h.stops[srv]
	if !ok {
		c = make(chan struct{})
		h.stops[srv] = c
		srv.RegisterOnShutdown(sync.OnceFunc(func() { close(c) }))
	}
	return c
}
