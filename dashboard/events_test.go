package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/task"
)

// stream is an open /api/events response, read event by event.
type stream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// openStream opens /api/events?query and reads up to the comment that
// says it is subscribed.
func (e *env) openStream(query string) *stream {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/events?"+query, nil)
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("/api/events?%s = %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{t: e.t, resp: resp, r: bufio.NewReader(resp.Body)}
	for {
		line := s.line()
		if line == ": subscribed" {
			return s
		}
	}
}

func (s *stream) line() string {
	s.t.Helper()
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read the event stream: %v", err)
	}
	return strings.TrimSuffix(l, "\n")
}

// next returns the next event's name and data, skipping comments.
func (s *stream) next() (string, map[string]any) {
	s.t.Helper()
	done := time.AfterFunc(10*time.Second, func() { _ = s.resp.Body.Close() })
	defer done.Stop()
	var name, data string
	for {
		l := s.line()
		switch {
		case strings.HasPrefix(l, "event: "):
			name = strings.TrimPrefix(l, "event: ")
		case strings.HasPrefix(l, "data: "):
			data = strings.TrimPrefix(l, "data: ")
		case l == "" && name != "":
			var v map[string]any
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				s.t.Fatalf("event data %q: %v", data, err)
			}
			return name, v
		}
	}
}

func TestEventStreamTellsOfEachChangeOfItsQueuesTasks(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	s := e.openStream("queue=q")
	e.enqueue("dashtest.other", "elsewhere", 0) // not followed
	id := e.enqueue("dashtest.ok", "q", 1)
	got, err := e.b.Claim(e.ctx, []string{"q"}, 1, time.Minute, "w-1")
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	r := got[0].Result
	r.Status, r.Value = task.StatusComplete, []byte{0x01}
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		kind, status string
		attempt      float64
	}{{"enqueued", "NEW", 0}, {"started", "RUNNING", 1}, {"completed", "COMPLETE", 1}} {
		name, ev := s.next()
		if name != "task" || ev["kind"] != want.kind || ev["id"] != id || ev["status"] != want.status ||
			ev["attempt"] != want.attempt || ev["queue"] != "q" || ev["task"] != "dashtest.ok" {
			t.Errorf("event %s %v, want task %s %s of %s", name, ev, want.kind, want.status, id)
		}
		if at, _ := ev["at_ms"].(float64); time.Since(time.UnixMilli(int64(at))) > time.Minute {
			t.Errorf("event time %v", ev["at_ms"])
		}
	}
}

func TestEventStreamNeedsQueues(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	if code, _ := e.get("/api/events"); code != http.StatusBadRequest {
		t.Errorf("/api/events without a queue = %d, want 400", code)
	}
}

func TestEventStreamNeedsTheToken(t *testing.T) {
	e := newEnv(t, dashboard.Options{Token: "s3cret"})
	if code, _ := e.get("/api/events?queue=q"); code != http.StatusUnauthorized {
		t.Errorf("/api/events without the token = %d, want 401", code)
	}
}

// plainStore is a Store without events.
type plainStore struct{ dashboard.Store }

func TestEventStreamOfAStoreWithoutEventsTellsTheBrowserNotToRetry(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	srv := httptest.NewServer(dashboard.New(plainStore{e.b}, dashboard.Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/events?queue=q")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("/api/events without events = %d, want 204 (EventSource stops)", resp.StatusCode)
	}
}

func TestShutdownEndsTheEventStreams(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	e.openStream("queue=q")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with an open stream", d)
	}
}

func TestLivePagesNameWhatTheyFollow(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	id := e.enqueue("dashtest.ok", "q", 1)
	_, body := e.get("/tasks/" + id)
	mustContain(t, "the task page", body, `data-live-queue="q" data-live-id="`+id+`"`)
	_, body = e.get("/queues/q")
	mustContain(t, "the queue page", body, `data-live-queue="q"`)
}

// The dashboard follows events through its Store when it is a Subscriber.
var _ dashboard.Subscriber = (*broker.Redis)(nil)
