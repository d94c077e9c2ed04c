package dashboard

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gotasks/gotasks/task"
)

// AttemptsLine describes a task's attempts for people, as its page here
// and `worker admin show` print them: the attempt count, the limit on
// automatic attempts (MaxAttempts), and what took the count past that
// limit, as far as the result tells:
//
//	1 (max attempts 3)
//	2 (max attempts 1; retried by hand)
//	3 (max attempts 3; 1 handed back unstarted)
//
// A retry by hand (broker.RetryFailed) keeps the count, so the task's next
// attempt is numbered past the limit; it shows when the failed attempts
// reach the limit and the task is not FAILED, or exceed it. A claim handed
// back unstarted (a worker shutting down) and a delivery that ended
// without an outcome (its worker died, or lost the lease) each use up an
// attempt number too.
func AttemptsLine(r *task.RawResult) string {
	limit := max(r.MaxAttempts, 1)
	failed := len(r.Errors)
	// A final error stored without its attempt's (an older worker).
	if r.Err != nil && (failed == 0 || *r.Errors[failed-1] != *r.Err) {
		failed++
	}
	handedBack := 0
	for _, w := range r.WorkerIDs {
		if w == task.UndeliveredWorker {
			handedBack++
		}
	}
	current := 0 // the attempt that is running, or that completed
	if r.Status == task.StatusRunning || r.Status == task.StatusComplete {
		current = 1
	}
	notes := []string{fmt.Sprintf("max attempts %d", limit)}
	if failed > limit || (failed == limit && r.Status != task.StatusFailed) {
		notes = append(notes, "retried by hand")
	}
	if handedBack > 0 {
		notes = append(notes, fmt.Sprintf("%d handed back unstarted", handedBack))
	}
	if lost := r.Attempts - failed - handedBack - current; lost > 0 {
		notes = append(notes, fmt.Sprintf("%d ended without an outcome", lost))
	}
	return fmt.Sprintf("%d (%s)", r.Attempts, strings.Join(notes, "; "))
}

// ProgressLine is how the dashboard and admin show a task's last
// progress: "3 of 10 (30%): copying files, 2s ago", or "3" with nothing
// more known.
func ProgressLine(p *task.Progress) string {
	s := strconv.FormatInt(p.Done, 10)
	if p.Total > 0 {
		s += " of " + strconv.FormatInt(p.Total, 10) + " (" + strconv.FormatInt(p.Done*100/p.Total, 10) + "%)"
	}
	if p.Message != "" {
		s += ": " + p.Message
	}
	if !p.At.IsZero() {
		s += ", " + p.At.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return s
}
