package broker_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// The enqueue script writes a call's values and set entries at the end,
// one command per key in chunks, and a lone Enqueue takes a shorter path
// (see enqueueScript). These tests run on miniredis (gopher-lua) and on a
// real redis-server (Redis' Lua, whose unpack has a limit), as their
// scripts differ in what they accept.

// onBoth runs fn on a broker over miniredis and over a redis-server.
func onBoth(t *testing.T, fn func(t *testing.T, b *broker.Redis, rdb *redis.Client)) {
	t.Run("miniredis", func(t *testing.T) {
		m := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		fn(t, broker.New(rdb, broker.Options{}), rdb)
	})
	t.Run("redis-server", func(t *testing.T) {
		s := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		fn(t, broker.New(rdb, broker.Options{}), rdb)
	})
}

// dump is every key of rdb with its type and contents, to compare.
func dump(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "zset":
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			v = m
		default:
			v = rdb.Get(ctx, k).Val()
		}
		fmt.Fprintf(&b, "%s %s %v\n", k, typ, v)
	}
	return b.String()
}

func TestEnqueueLoneDuplicateIDWritesNothing(t *testing.T) {
	onBoth(t, func(t *testing.T, b *broker.Redis, rdb *redis.Client) {
		ctx := context.Background()
		first := newMsg(t, "brokertest.lone", "q", 0, 0)
		if err := b.Enqueue(ctx, first); err != nil {
			t.Fatal(err)
		}
		before := dump(t, rdb)
		for _, deferred := range []bool{false, true} {
			for _, sameTask := range []bool{false, true} {
				again := *first
				if deferred {
					again.RunAfter = time.Now().Add(time.Hour)
				}
				if !sameTask {
					again.Args = append(slices.Clone(again.Args), 0xc0)
				}
				err := b.Enqueue(ctx, &again)
				switch {
				case sameTask && (err != nil || !again.Existing):
					t.Fatalf("the same task again under %s (deferred %v) = %v, existing %v; want the stored task", first.ID, deferred, err, again.Existing)
				case !sameTask && (!errors.Is(err, task.ErrDuplicateID) || !strings.Contains(err.Error(), first.ID)):
					t.Fatalf("another task under %s (deferred %v) = %v, want ErrDuplicateID", first.ID, deferred, err)
				}
				if after := dump(t, rdb); after != before {
					t.Fatalf("an Enqueue of a taken id wrote something:\nbefore %s\nafter %s", before, after)
				}
			}
		}
	})
}

// header is the header line of a task never claimed: attempts, priority,
// seq, started, no workers (parse in scripts.go, decodeTask).
var header = regexp.MustCompile(`^0 (-?\d+) (\d+) 0 \n`)

// TestEnqueueManyLargeBatch: one call with more tasks than a chunk of the
// script's bulk writes, of several priorities, some deferred, stores every
// task in the layout the other scripts read, and they are claimed by
// priority, then in the order of the call.
func TestEnqueueManyLargeBatch(t *testing.T) {
	onBoth(t, func(t *testing.T, b *broker.Redis, rdb *redis.Client) {
		ctx := context.Background()
		const n = 2600
		prios := []int{0, 7, -3, 100, -100}
		var msgs []*task.Message
		deferred := map[string]bool{}
		for i := range n {
			m := newMsg(t, "brokertest.large", "q", prios[i%len(prios)], i)
			if i%10 == 9 {
				m.RunAfter = time.Now().Add(time.Hour)
				deferred[m.ID] = true
			}
			msgs = append(msgs, m)
		}
		if err := b.EnqueueMany(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		c, err := b.Count(ctx, "q")
		if err != nil {
			t.Fatal(err)
		}
		if c.Pending != int64(n-len(deferred)) || c.Deferred != int64(len(deferred)) {
			t.Fatalf("counts %+v, want %d pending and %d deferred", c, n-len(deferred), len(deferred))
		}
		values := rdb.HGetAll(ctx, "{gotasks:q}:tasks").Val()
		if len(values) != n {
			t.Fatalf("%d values stored, want %d", len(values), n)
		}
		var lastSeq int64
		for i, m := range msgs {
			h := header.FindStringSubmatch(values[m.ID])
			if h == nil {
				t.Fatalf("task %d: value %q has no fresh header", i, values[m.ID][:min(40, len(values[m.ID]))])
			}
			seq, _ := strconv.ParseInt(h[2], 10, 64)
			switch {
			case h[1] != strconv.Itoa(m.Priority):
				t.Fatalf("task %d: priority %s in the header, want %d", i, h[1], m.Priority)
			case deferred[m.ID] && seq != 0:
				t.Fatalf("deferred task %d has seq %d", i, seq)
			case !deferred[m.ID] && lastSeq != 0 && seq != lastSeq+1:
				t.Fatalf("task %d has seq %d after %d", i, seq, lastSeq)
			}
			if !deferred[m.ID] {
				lastSeq = seq
			}
			r, err := b.GetResultIn(ctx, "q", m.ID)
			if err != nil || r.TaskName != "brokertest.large" || !r.EnqueuedAt.Equal(m.EnqueuedAt.Truncate(time.Microsecond)) || r.Priority != m.Priority {
				t.Fatalf("task %d reads as %+v, %v", i, r, err)
			}
		}
		if seq := rdb.Get(ctx, "{gotasks:q}:seq").Val(); seq != strconv.FormatInt(lastSeq, 10) {
			t.Fatalf("seq key %s, last seq %d", seq, lastSeq)
		}
		// Claim order: priority first, then the order of the call.
		var want []string
		for _, p := range []int{100, 7, 0, -3, -100} {
			for _, m := range msgs {
				if m.Priority == p && !deferred[m.ID] {
					want = append(want, m.ID)
				}
			}
		}
		var got []string
		for len(got) < len(want) {
			cl, err := b.Claim(ctx, []string{"q"}, 500, time.Minute, "w")
			if err != nil || len(cl) == 0 {
				t.Fatalf("claim after %d: %d, %v", len(got), len(cl), err)
			}
			for _, x := range cl {
				got = append(got, x.Result.ID)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatal("tasks claimed out of order")
		}
	})
}

// A unique task that is a duplicate of an earlier task of the same call,
// one chunk or more apart, is reported, and the rest are stored.
func TestEnqueueManyUniqueAcrossChunks(t *testing.T) {
	onBoth(t, func(t *testing.T, b *broker.Redis, rdb *redis.Client) {
		ctx := context.Background()
		var msgs []*task.Message
		for i := range 1500 {
			m := newMsg(t, "brokertest.uniq", "q", 0, i)
			switch i {
			case 3, 1400:
				m.Unique = &task.Uniqueness{Key: "k"}
			case 5, 1499:
				m.Unique = &task.Uniqueness{Key: "w", For: time.Hour}
			}
			msgs = append(msgs, m)
		}
		if err := b.EnqueueMany(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			want := ""
			switch i {
			case 1400:
				want = msgs[3].ID
			case 1499:
				want = msgs[5].ID
			}
			if m.DuplicateOf != want {
				t.Errorf("task %d: DuplicateOf %q, want %q", i, m.DuplicateOf, want)
			}
		}
		if n := rdb.HLen(ctx, "{gotasks:q}:tasks").Val(); n != 1498 {
			t.Errorf("%d tasks stored, want 1498", n)
		}
	})
}
