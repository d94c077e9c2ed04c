package billing

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/gotaskstest"
)

// fakeReceipts fails its first fails sends.
type fakeReceipts struct {
	mu           sync.Mutex
	fails, calls int
}

func (f *fakeReceipts) Send(ctx context.Context, card, chargeID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return errors.New("smtp: connection refused")
	}
	return nil
}

// TestCheckoutChargesOnceWhenTheReceiptFails: the receipt fails twice;
// the task is retried twice, and the card is charged once.
func TestCheckoutChargesOnceWhenTheReceiptFails(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	pay := &fakePayments{}
	usePayments(t, pay)
	mail := &fakeReceipts{fails: 2}
	old := receipts
	receipts = mail
	t.Cleanup(func() { receipts = old })

	res, err := checkout.Enqueue(ctx, Charge{Card: "4242", Amount: 1999})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		env.RunUntilIdle(ctx)
		env.Advance(time.Minute) // past the backoff
	}
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); err != nil || v.ChargeID != "ch_4242" || res.Attempts != 3 {
		t.Fatalf("%s after %d attempts: %+v, %v", res.Status, res.Attempts, v, err)
	}
	if pay.calls != 1 || mail.calls != 3 {
		t.Errorf("charged %d times, %d receipts sent; want 1 and 3", pay.calls, mail.calls)
	}
}
