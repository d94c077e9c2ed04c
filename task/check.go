package task

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Check reports configuration problems, like Django's system checks: tasks
// whose backend is not configured, tasks whose options their backend would
// refuse at Enqueue (priority, queue, run_after), and backends that fail their own check (for example an unreachable
// Redis). It returns nil when all is well, otherwise every problem joined.
//
// Check only sees tasks defined with their options in Define; options added
// later with Using are checked at Enqueue.
func Check(ctx context.Context) error {
	var errs []error
	backends := configuredBackends()
	tasks.RLock()
	defs := make([]Definition, 0, len(tasks.byName))
	for _, d := range tasks.byName {
		defs = append(defs, d)
	}
	tasks.RUnlock()
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name() < defs[j].Name() })
	for _, d := range defs {
		c, ok := d.(interface{ settings() config })
		if !ok {
			continue
		}
		cfg := c.settings()
		b, ok := backends[cfg.backend]
		if !ok {
			errs = append(errs, fmt.Errorf("task %q: %w %q", d.Name(), ErrUnknownBackend, cfg.backend))
			continue
		}
		if err := cfg.validate(b); err != nil {
			errs = append(errs, fmt.Errorf("task %q: %w", d.Name(), err))
		}
	}
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c, ok := backends[n].(Checker); ok {
			if err := c.Check(ctx); err != nil {
				errs = append(errs, fmt.Errorf("backend %q: %w", n, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (t *Task[A, R]) settings() config { return t.cfg }
