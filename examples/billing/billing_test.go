package billing

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/gotaskstest"
	"github.com/gotasks/gotasks/task"
)

// fakePayments answers with errs in turn, then with success.
type fakePayments struct {
	mu    sync.Mutex
	errs  []error
	calls int
}

func (f *fakePayments) Charge(ctx context.Context, card string, cents int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return "", err
	}
	return "ch_" + card, nil
}

func usePayments(t *testing.T, f *fakePayments) {
	old := payments
	payments = f
	t.Cleanup(func() { payments = old })
}

func TestBadAmountFailsAtOnce(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	usePayments(t, &fakePayments{})
	res, err := charge.Enqueue(ctx, Charge{Card: "4242", Amount: 0})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := env.RunUntilIdle(ctx); n != 1 || err != nil {
		t.Fatalf("ran %d: %v", n, err)
	}
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusFailed || res.Attempts != 1 || res.Err == nil || res.Err.Message != "bad amount" {
		t.Fatalf("%s after %d attempts: %+v", res.Status, res.Attempts, res.Err)
	}
}

func TestRateLimitedThenBackoffThenCharged(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	pay := &fakePayments{errs: []error{errRateLimited, errors.New("connection reset")}}
	usePayments(t, pay)
	res, err := charge.Enqueue(ctx, Charge{Card: "4242", Amount: 1999})
	if err != nil {
		t.Fatal(err)
	}
	env.RunUntilIdle(ctx)
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if wait := res.RunAfter.Sub(env.Now()); res.Status != task.StatusNew || wait < 25*time.Second || wait > 31*time.Second {
		t.Fatalf("after a rate limit: %s, next attempt in %v", res.Status, wait)
	}
	env.Advance(30 * time.Second) // the rate limit's retry
	env.RunUntilIdle(ctx)
	env.Advance(time.Minute) // past the backoff after the reset
	env.RunUntilIdle(ctx)
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); err != nil || v.ChargeID != "ch_4242" || res.Attempts != 3 || len(res.Errors) != 2 {
		t.Fatalf("got %+v, %v after %d attempts (errors %v)", v, err, res.Attempts, res.Errors)
	}
}

// lostReply is the Redis backend behind a network that loses the reply of
// the first enqueue: the task is stored, the producer hears nothing.
type lostReply struct {
	*broker.Redis
	once sync.Once
}

func (l *lostReply) Enqueue(ctx context.Context, msg *task.Message) error {
	err := l.Redis.Enqueue(ctx, msg)
	l.once.Do(func() {
		if err == nil {
			err = &task.MaybeEnqueuedError{IDs: []string{msg.ID}, Err: io.ErrUnexpectedEOF}
		}
	})
	return err
}

// TestEnqueueAgainAfterLostReply: the README's retry after
// ErrMaybeEnqueued stores the task once, and so does calling it again.
func TestEnqueueAgainAfterLostReply(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	usePayments(t, &fakePayments{})
	task.Configure(map[string]task.Backend{"default": &lostReply{Redis: env.Broker}})
	c := Charge{Card: "4242", Amount: 1999}
	res, err := chargeOrder1234(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := chargeOrder1234(ctx, c)
	if err != nil || again.ID != res.ID || res.ID != "order-1234" {
		t.Fatalf("again: %v, ids %s and %s", err, res.ID, again.ID)
	}
	if n, err := env.RunUntilIdle(ctx); n != 1 || err != nil {
		t.Fatalf("ran %d tasks, want 1: %v", n, err)
	}
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); err != nil || v.ChargeID != "ch_4242" {
		t.Fatalf("got %+v, %v", v, err)
	}
	// Other arguments under the same id are another task: refused.
	if _, err := chargeOrder1234(ctx, Charge{Card: "4242", Amount: 1}); !errors.Is(err, task.ErrDuplicateID) {
		t.Fatalf("other arguments: %v", err)
	}
}
