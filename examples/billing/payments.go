// Package billing is the README's example of retries, timeouts and safe
// enqueues: a task that charges a card.
package billing

import (
	"context"
	"errors"
)

type Charge struct {
	Card   string
	Amount int64 // cents
}

type Receipt struct{ ChargeID string }

// payments stands for a payment provider's client; the tests replace it.
var payments interface {
	Charge(ctx context.Context, card string, cents int64) (chargeID string, err error)
} = noProvider{}

// errRateLimited is what the provider returns when asked too often.
var errRateLimited = errors.New("payments: rate limited")

type noProvider struct{}

func (noProvider) Charge(ctx context.Context, card string, cents int64) (string, error) {
	return "", errors.New("payments: no provider configured")
}
