package task

import "testing"

// Unregister removes a task definition, for tests that define tasks which
// must not outlive them (go test -count=N runs every test again in the
// same process, whose registry is global).
func Unregister(name string) {
	tasks.Lock()
	defer tasks.Unlock()
	delete(tasks.byName, name)
}

// IsolateMiddleware empties the process-wide middleware lists (UseEnqueue,
// UseRun) for the duration of the test and restores them at its end, so
// that a test's middleware does not outlive it.
func IsolateMiddleware(t testing.TB) {
	t.Helper()
	e, r := middleware.enqueue.Load(), middleware.run.Load()
	middleware.enqueue.Store(nil)
	middleware.run.Store(nil)
	t.Cleanup(func() {
		middleware.enqueue.Store(e)
		middleware.run.Store(r)
	})
}
