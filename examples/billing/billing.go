package billing

import (
	"context"
	"errors"
	"time"

	"github.com/gotasks/gotasks/task"
)

var charge = task.Define("billing.charge", chargeCard,
	task.MaxAttempts(5),                       // default 1: no retry, as in django-tasks
	task.Backoff(time.Second, 10*time.Minute), // 1s, 2s, 4s … capped, with jitter
	task.Timeout(30*time.Second))              // per attempt

func chargeCard(ctx context.Context, c Charge) (Receipt, error) {
	if c.Amount <= 0 {
		return Receipt{}, task.Permanent(errors.New("bad amount")) // FAILED now, no retry
	}
	id, err := payments.Charge(ctx, c.Card, c.Amount) // your payment provider's client
	if errors.Is(err, errRateLimited) {
		return Receipt{}, task.Retry(30 * time.Second) // next attempt in 30s (within MaxAttempts)
	}
	if err != nil {
		return Receipt{}, err // next attempt after the backoff (within MaxAttempts)
	}
	return Receipt{ChargeID: id}, nil
}

// chargeOrder1234 enqueues the charge of order 1234 at most once, however
// often it is called and whatever the network loses.
func chargeOrder1234(ctx context.Context, c Charge) (*task.Result[Receipt], error) {
	res, err := charge.Using(task.WithID("order-1234")).Enqueue(ctx, c) // your idempotency key
	var maybe *task.MaybeEnqueuedError
	if errors.As(err, &maybe) { // the ids to enqueue again, also for EnqueueMany
		res, err = charge.Using(task.WithID(maybe.IDs[0])).Enqueue(ctx, c)
	}
	return res, err
}
