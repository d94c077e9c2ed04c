// Package backoff spaces out retries after errors talking to Redis:
// exponential with jitter, so that many workers that lost Redis at the same
// moment do not all come back at the same moment.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields growing delays: each is drawn from [ceil/2, ceil], where
// ceil doubles from Base up to Max. The zero value uses 50ms and 5s. Not
// safe for concurrent use.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Next returns the next delay.
func (b *Backoff) Next() time.Duration {
	base, limit := b.Base, b.Max
	if base <= 0 {
		base = 50 * time.Millisecond
	}
	if limit <= 0 {
		limit = 5 * time.Second
	}
	ceil := limit
	if b.n < 30 && base<<b.n < limit {
		ceil = base << b.n
	}
	b.n++
	return ceil/2 + rand.N(ceil/2+1)
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits for d or until ctx is done, and reports whether the full d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
