package task

import "context"

// FinishWaiter is implemented by backends that can tell a waiter soon
// after a task finishes, instead of being polled (the Redis backend, by
// the events its scripts publish). Result.Wait uses it when the backend
// has it, and polls as well.
type FinishWaiter interface {
	// WaitFinished starts watching task id of queue and returns once it
	// watches: every finish from then on is signalled. The channel gets
	// a value whenever the task may have finished (its finish, or news
	// that may have been lost, such as a reconnection), so the caller
	// reads the result then; it may get values for other reasons too.
	// stop ends the watch and must be called. An error means the backend
	// cannot watch now: the caller polls instead.
	WaitFinished(ctx context.Context, id, queue string) (finished <-chan struct{}, stop func(), err error)
}
