package worker

import (
	"context"
	"maps"
	"sync"
)

// A job is the task.StepStore of its task (through the ProgressReporter
// the context already carries, so tasks without steps pay nothing): it
// reads the steps stored by earlier attempts once, on the first Step, and
// writes each new one fenced by its attempt.

// stepsState is what a job keeps of its task's steps.
type stepsState struct {
	mu     sync.Mutex
	stored map[string][]byte // nil until read
	used   bool              // the task called task.Step
}

// LoadSteps implements task.StepStore.
func (j *job) LoadSteps(ctx context.Context) (map[string][]byte, error) {
	j.steps.mu.Lock()
	defer j.steps.mu.Unlock()
	j.steps.used = true
	if j.steps.stored == nil {
		m, err := j.progress.w.b.LoadSteps(ctx, j.r.Queue, j.r.ID)
		if err != nil {
			return nil, err
		}
		j.steps.stored = m
	}
	return maps.Clone(j.steps.stored), nil
}

// SaveStep implements task.StepStore.
func (j *job) SaveStep(ctx context.Context, name string, value []byte) error {
	if err := j.progress.w.b.SaveStep(ctx, j.r, name, value); err != nil {
		return err
	}
	j.steps.mu.Lock()
	defer j.steps.mu.Unlock()
	j.steps.used = true
	if j.steps.stored == nil {
		j.steps.stored = map[string][]byte{}
	}
	j.steps.stored[name] = value
	return nil
}

// usedSteps reports whether j's task called task.Step.
func (j *job) usedSteps() bool {
	j.steps.mu.Lock()
	defer j.steps.mu.Unlock()
	return j.steps.used
}
