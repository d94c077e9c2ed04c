package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// A task names its serializer: a reader configured with another one (the
// stock worker, msgpack) decodes its arguments, and its result, with the
// producer's. The same task sent again under its id is still recognised.
func TestTheProducersSerializerTravelsWithTheTask(t *testing.T) {
	onBoth(t, func(t *testing.T, _ *broker.Redis, rdb *redis.Client) {
		ctx := context.Background()
		producer := broker.New(rdb, broker.Options{Serializer: serializer.JSON{}})
		reader := broker.New(rdb, broker.Options{}) // msgpack
		type args struct {
			Who string `json:"who"`
		}
		raw, err := serializer.JSON{}.Marshal(args{Who: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		m := &task.Message{ID: task.NewID(), TaskName: "brokertest.json", Queue: "q", Backend: "default", Args: raw, EnqueuedAt: time.Now()}
		if err := producer.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
		again := *m
		again.EnqueuedAt = time.Now().Add(time.Second)
		if err := producer.Enqueue(ctx, &again); err != nil || !again.Existing {
			t.Fatalf("the same task again = %v (existing %v); want the stored task", err, again.Existing)
		}
		got, err := reader.Claim(ctx, []string{"q"}, 1, time.Minute, "w")
		if err != nil || len(got) != 1 || got[0].Bad != nil {
			t.Fatalf("claim: %v, %+v", err, got)
		}
		r := got[0].Result
		var a args
		if err := r.DecodeArgs(&a); err != nil || a.Who != "ann" || r.Serializer.Name() != "json" {
			t.Fatalf("args decoded with %v: %+v, %v; want json, ann", r.Serializer, a, err)
		}
		if r.Value, err = r.Serializer.Marshal("hello ann"); err != nil {
			t.Fatal(err)
		}
		r.Status = task.StatusComplete
		if err := reader.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
		res, err := reader.GetResult(ctx, m.ID)
		var v string
		if err != nil || res.Decode(&v) != nil || v != "hello ann" {
			t.Fatalf("result %+v, %v, value %q; want hello ann", res, err, v)
		}
	})
}

// A producer's result TTL travels with its tasks (unless it is the
// default): a worker with the default keeps their results that long, in
// one finish call with its other tasks' results kept for its own TTL.
// A task of a producer with the default TTL, with or without metadata,
// is kept for the worker's.
func TestTheProducersResultTTLTravelsWithTheTask(t *testing.T) {
	onBoth(t, func(t *testing.T, _ *broker.Redis, rdb *redis.Client) {
		ctx := context.Background()
		week := 7 * 24 * time.Hour
		producer := broker.New(rdb, broker.Options{ResultTTL: week})
		plain := broker.New(rdb, broker.Options{})
		worker := broker.New(rdb, broker.Options{ResultTTL: 2 * time.Hour})
		long := newMsg(t, "brokertest.ttl", "q", 0, 1)
		meta := newMsg(t, "brokertest.ttl", "q", 0, 2)
		meta.Metadata = task.Metadata{"k": "v"}
		short := newMsg(t, "brokertest.ttl", "q", 0, 3)
		if err := producer.EnqueueMany(ctx, []*task.Message{long, meta}); err != nil {
			t.Fatal(err)
		}
		if err := plain.Enqueue(ctx, short); err != nil {
			t.Fatal(err)
		}
		got, err := worker.Claim(ctx, []string{"q"}, 3, time.Minute, "w")
		if err != nil || len(got) != 3 {
			t.Fatalf("claim: %d, %v", len(got), err)
		}
		var rs []*task.RawResult
		for _, c := range got {
			c.Result.Status = task.StatusComplete
			rs = append(rs, c.Result)
		}
		for i, err := range worker.Store(ctx, rs...) {
			if err != nil {
				t.Fatalf("store %s: %v", rs[i].ID, err)
			}
		}
		want := map[string]time.Duration{long.ID: week, meta.ID: week, short.ID: 2 * time.Hour}
		for id, ttl := range want {
			d, err := rdb.PTTL(ctx, "{gotasks:q}:r:"+id).Result()
			if err != nil || d > ttl || d < ttl-time.Minute {
				t.Errorf("result %s kept for %v (%v); want %v", id, d, err, ttl)
			}
		}
		if r, err := worker.GetResult(ctx, meta.ID); err != nil || r.Metadata["k"] != "v" {
			t.Errorf("the metadata beside the TTL: %+v, %v", r, err)
		}
	})
}

// unknownSer is a serializer no worker knows (never registered).
type unknownSer struct{ serializer.JSON }

func (unknownSer) Name() string { return "brokertest.unknown" }

// A producer cannot open a backend with a serializer no reader could
// name; one that builds its backend with New anyway stores tasks that a
// worker fails with the reason, keeping the task's name and times.
func TestASerializerNoWorkerKnowsIsRefusedAtOpen(t *testing.T) {
	if _, err := broker.Open("redis://127.0.0.1:1/0", broker.Options{Serializer: unknownSer{}}); err == nil ||
		!strings.Contains(err.Error(), "serializer.Register") {
		t.Fatalf("Open with an unknown serializer = %v; want a refusal naming serializer.Register", err)
	}
	e := setup(t)
	producer := e.newBroker(broker.Options{Serializer: unknownSer{}})
	m := newMsg(t, "brokertest.unknownser", "q", 0, 1)
	if err := producer.Enqueue(e.ctx, m); err != nil {
		t.Fatal(err)
	}
	got := e.claim([]string{"q"}, 1, time.Minute, "w")
	if len(got) != 1 || got[0].Bad == nil || !strings.Contains(got[0].Bad.Error(), "brokertest.unknown") {
		t.Fatalf("claimed %+v; want the task, bad, naming its serializer", got)
	}
	if r := got[0].Result; r.TaskName != "brokertest.unknownser" || r.EnqueuedAt.IsZero() {
		t.Errorf("a task of an unknown serializer reads as %q enqueued %v; want its name and time", r.TaskName, r.EnqueuedAt)
	}
}
