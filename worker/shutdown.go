package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// ShutdownGrace is how long, after ShutdownTimeout, the rest of a worker's
// shutdown may take: handing the unfinished tasks back, the last outcome
// writes, stopping the scheduler.
const ShutdownGrace = 500 * time.Millisecond

// minStopWait is the least a goroutine that stops at once (an idle one) is
// waited for once the shutdown is over (see Within).
const minStopWait = 100 * time.Millisecond

// ShutdownWindow times the shutdown of a Run (and of the servers a command
// runs beside it): once its ctx is done, the tasks have ShutdownTimeout to
// finish (TasksEnd), and the rest ShutdownGrace more (End), even if Redis
// does not answer at all. go-redis ends a command only at a deadline (the
// client's read timeout, or the context's), never when its context is
// cancelled, and after a timeout it retries: so every Redis call made once
// ctx is done carries End as its deadline (Bound), and what waits for a
// call sent earlier, into a network that has since stopped answering,
// waits only until End (Within). Such a call ends by itself within the
// client's read timeout (the cancelled context stops the retries); what it
// was about is then settled by the leases: a task whose outcome is not
// stored, or that is not handed back, runs again once its lease expires
// (at-least-once).
type ShutdownWindow struct {
	ctx     context.Context
	timeout time.Duration // ShutdownTimeout
	release func() bool   // stops watching ctx

	once sync.Once
	at   time.Time // when ctx was done
}

// NewShutdownWindow returns the window of a shutdown that begins when ctx
// is done, with timeout for the tasks. Call Release when done with it.
func NewShutdownWindow(ctx context.Context, timeout time.Duration) *ShutdownWindow {
	s := &ShutdownWindow{ctx: ctx, timeout: timeout}
	s.release = context.AfterFunc(ctx, func() { s.Began() })
	return s
}

// Release stops watching the context.
func (s *ShutdownWindow) Release() { s.release() }

// Began returns when ctx was done (noted by the first to ask once it is).
func (s *ShutdownWindow) Began() time.Time {
	s.once.Do(func() { s.at = time.Now() })
	return s.at
}

// TasksEnd is when the tasks still running are handed back; End is when
// the shutdown is over. Only once ctx is done.
func (s *ShutdownWindow) TasksEnd() time.Time { return s.Began().Add(s.timeout) }

// End is when the shutdown is over: TasksEnd plus ShutdownGrace.
func (s *ShutdownWindow) End() time.Time { return s.TasksEnd().Add(ShutdownGrace) }

// Bound returns ctx with End as its deadline once the window's ctx is
// done, and ctx itself (with a cancel that does nothing) before.
func (s *ShutdownWindow) Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, s.End())
}

// Within runs stop (a wait for goroutines, the shutdown of a server) and
// waits for it; but once the window's ctx is done, only until End (at
// least minStopWait, which lets what stops at once do so after a hand-back
// that took until End). It then logs warning and returns: a stop left
// behind ends by itself, once closing the client has ended the Redis call
// it waits for, or at that call's own timeout.
func (s *ShutdownWindow) Within(log *slog.Logger, warning string, stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	select {
	case <-done:
		return
	case <-s.ctx.Done():
	}
	t := time.NewTimer(max(time.Until(s.End()), minStopWait))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn(warning, "shutdown_timeout", s.timeout)
	}
}
