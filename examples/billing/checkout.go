package billing

import (
	"context"
	"time"

	"github.com/gotasks/gotasks/task"
)

// receipts stands for the email service; the tests replace it.
var receipts interface {
	Send(ctx context.Context, card, chargeID string) error
} = noProvider{}

func (noProvider) Send(ctx context.Context, card, chargeID string) error { return nil }

var checkout = task.Define("billing.checkout", func(ctx context.Context, c Charge) (Receipt, error) {
	// Charged once per task: a retry (the email below failed) or a
	// re-delivery after a crash gets the stored charge id back.
	id, err := task.Step(ctx, "charge", func(ctx context.Context) (string, error) {
		return payments.Charge(ctx, c.Card, c.Amount)
	})
	if err != nil {
		return Receipt{}, err
	}
	if _, err := task.Step(ctx, "receipt", func(ctx context.Context) (bool, error) {
		return true, receipts.Send(ctx, c.Card, id)
	}); err != nil {
		return Receipt{}, err // retried: the next attempt starts at the receipt
	}
	return Receipt{ChargeID: id}, nil
}, task.MaxAttempts(5), task.Backoff(time.Second, time.Minute))
