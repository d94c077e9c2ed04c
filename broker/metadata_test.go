package broker_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// Metadata travels with the task through Redis: to the worker that claims
// it, and on its result once finished; with either serializer. It is not
// part of what makes an enqueue the same task again.
func TestMetadataTravelsWithTheTask(t *testing.T) {
	onBoth(t, func(t *testing.T, _ *broker.Redis, rdb *redis.Client) {
		ctx := context.Background()
		for _, ser := range []serializer.Serializer{serializer.Msgpack{}, serializer.JSON{}} {
			b := broker.New(rdb, broker.Options{Serializer: ser})
			meta := task.Metadata{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme", "empty": ""}
			for i := range 20 {
				meta[fmt.Sprintf("k%02d", i)] = "v" // past a fixmap's 15 entries
			}
			raw, _ := ser.Marshal(1)
			m := &task.Message{ID: task.NewID(), TaskName: "brokertest.meta", Queue: "meta-" + ser.Name(), Backend: "default", Args: raw, EnqueuedAt: time.Now(), Metadata: meta}
			if err := b.Enqueue(ctx, m); err != nil {
				t.Fatal(err)
			}
			again := *m
			again.Metadata = task.Metadata{"traceparent": "another"}
			if err := b.Enqueue(ctx, &again); err != nil || !again.Existing {
				t.Fatalf("%s: the same task with other metadata = %v (existing %v); want the stored task", ser.Name(), err, again.Existing)
			}
			got, err := b.Claim(ctx, []string{m.Queue}, 1, time.Minute, "w")
			if err != nil || len(got) != 1 || got[0].Bad != nil {
				t.Fatalf("%s: claim %v %+v", ser.Name(), err, got)
			}
			r := got[0].Result
			if !maps.Equal(r.Metadata, meta) || r.Serializer.Name() != ser.Name() {
				t.Fatalf("%s: claimed metadata %v (serializer %v), want %v", ser.Name(), r.Metadata, r.Serializer, meta)
			}
			r.Status = task.StatusComplete
			if err := b.Finish(ctx, r); err != nil {
				t.Fatal(err)
			}
			res, err := b.GetResult(ctx, m.ID)
			if err != nil || !maps.Equal(res.Metadata, meta) {
				t.Fatalf("%s: result metadata %v, %v; want %v", ser.Name(), res.Metadata, err, meta)
			}
		}
	})
}
