package scheduler

import "time"

// FakeClock gives tests control over when periodic ticks come.
type FakeClock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// WithClock returns opts with c as the periodic entries' clock.
func WithClock(opts Options, c FakeClock) Options {
	opts.clock = c
	return opts
}

// Unregister removes an entry registered with Periodic.
func Unregister(e *Entry) { unregister(e) }
