package worker

import (
	"context"
	"sync"
	"time"

	"github.com/gotasks/gotasks/task"
)

// ProgressInterval is the least time between two writes of one task's
// progress to Redis: a task may call task.SetProgress in a tight loop,
// and the latest report within each interval is the one written.
const ProgressInterval = 250 * time.Millisecond

// progressState is a job's progress: the latest report, and the write to
// Redis scheduled for it. Nothing is allocated until the task reports.
type progressState struct {
	w *Worker

	mu      sync.Mutex
	last    task.Progress
	has     bool
	written time.Time   // when the last write began
	timer   *time.Timer // the write scheduled; nil if none
	done    bool        // the job is over: write nothing more
}

// Report is task.ProgressReporter: it keeps p and schedules a write, at
// once or at the end of the current interval.
func (j *job) Report(p task.Progress) {
	s := &j.progress
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.has = p, true
	if s.timer != nil || s.done {
		return // the scheduled write takes the latest
	}
	wait := max(ProgressInterval-time.Since(s.written), 0)
	s.timer = time.AfterFunc(wait, func() { j.writeProgress() })
}

// writeProgress writes the latest report. A write that finds the lease
// lost (the task finished, or another attempt owns it) changes nothing.
func (j *job) writeProgress() {
	s := &j.progress
	s.mu.Lock()
	p, done := s.last, s.done
	s.timer, s.written = nil, time.Now()
	s.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 5*time.Second)
	defer cancel()
	if err := s.w.b.SetProgress(ctx, j.r, p); err != nil {
		s.w.log.Debug("worker: progress not written", "id", j.r.ID, "err", err)
	}
}

// final ends the reporting and returns the last report, nil if none: it
// is stored with the outcome.
func (s *progressState) final() *task.Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !s.has {
		return nil
	}
	p := s.last
	return &p
}
