package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"

	"github.com/gotasks/gotasks/internal/backoff"
	"github.com/gotasks/gotasks/task"
)

// DefaultGrace is how late a periodic tick may still be enqueued unless
// Grace says otherwise.
const DefaultGrace = time.Minute

// keyMargin is how long a tick's key outlives its grace window. Every
// scheduler gives up on a tick once it is older than the grace on its own
// clock, so the key only has to last until then on the slowest clock; the
// margin covers clock skew between hosts with room to spare.
const keyMargin = 5 * time.Minute

// fireTimeout bounds one attempt to claim or to enqueue a tick.
const fireTimeout = 10 * time.Second

// The standard five fields, as in crontab(5), plus descriptors (@hourly,
// @every 10m); no seconds field.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Entry is a task with fixed arguments that schedulers enqueue on a cron
// schedule. Create one with Periodic, which registers it for every scheduler
// in the process, or with NewEntry, for Options.Entries.
type Entry struct {
	name     string
	taskName string
	spec     string
	sched    cron.Schedule
	grace    time.Duration
	// enqueue enqueues the task under id, the tick's (see tickID).
	enqueue func(ctx context.Context, id string) error
}

// PeriodicOption changes an Entry; pass it to Periodic or NewEntry.
type PeriodicOption func(*periodicConfig)

type periodicConfig struct {
	loc   *time.Location
	name  string
	grace time.Duration
}

// In sets the time zone in which the spec's fields are read. The default is
// UTC, not time.Local, so that schedulers on hosts set to different zones
// agree on every tick. A CRON_TZ= (or TZ=) prefix in the spec does the same;
// giving both is an error. @every schedules ignore the zone.
func In(loc *time.Location) PeriodicOption { return func(c *periodicConfig) { c.loc = loc } }

// EntryName names the entry explicitly. The name identifies the entry's
// ticks in Redis, so renaming an entry (or, without EntryName, changing its
// task, spec, zone or arguments) during a rolling deploy can enqueue one
// tick twice: once by an old process and once by a new one. The default
// name is the task name and a hash of the spec, the zone and the JSON
// encoding of the arguments.
func EntryName(name string) PeriodicOption { return func(c *periodicConfig) { c.name = name } }

// Grace sets how late a tick may still be enqueued, after a scheduler was
// busy, blocked on Redis or started just after the tick. Ticks later than
// that are skipped, never replayed. Default DefaultGrace (1 minute).
func Grace(d time.Duration) PeriodicOption { return func(c *periodicConfig) { c.grace = d } }

// NewEntry returns an entry that enqueues t with args at every tick of
// spec, without registering it (see Periodic). The spec is a standard
// five-field cron expression (minute hour day-of-month month day-of-week),
// optionally prefixed with CRON_TZ=<zone>, or a descriptor: @yearly,
// @monthly, @weekly, @daily, @hourly, or @every <duration> of at least a
// second. @every ticks fall on multiples of the duration since the Unix
// epoch, so every scheduler computes the same ticks whenever it started.
//
// The task is enqueued with the options it carries (use t.Using to change
// its queue or priority); a RunAfter or RunAt option delays it past its tick.
func NewEntry[A, R any](t *task.Task[A, R], spec string, args A, opts ...PeriodicOption) (*Entry, error) {
	if t == nil {
		return nil, errors.New("periodic: nil task")
	}
	c := periodicConfig{grace: DefaultGrace}
	for _, o := range opts {
		o(&c)
	}
	if c.grace <= 0 {
		return nil, fmt.Errorf("periodic %s %q: grace %v must be positive", t.Name(), spec, c.grace)
	}
	sched, err := parseSpec(spec, c.loc)
	if err != nil {
		return nil, fmt.Errorf("periodic %s: %w", t.Name(), err)
	}
	name := c.name
	if name == "" {
		// JSON, not the task's serializer: it sorts the keys of every map
		// (msgpack only of a few map types), so that every process derives
		// the same name for the same entry.
		canon, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("periodic %s %q: arguments have no JSON encoding to name the entry by; give it an EntryName: %w", t.Name(), spec, err)
		}
		zone := ""
		if c.loc != nil {
			zone = c.loc.String()
		}
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00", spec, zone)
		h.Write(canon)
		name = t.Name() + ":" + hex.EncodeToString(h.Sum(nil))[:16]
	}
	return &Entry{
		name: name, taskName: t.Name(), spec: spec, sched: sched, grace: c.grace,
		enqueue: func(ctx context.Context, id string) error {
			_, err := t.Using(task.WithID(id)).Enqueue(ctx, args)
			return err
		},
	}, nil
}

// parseSpec parses a cron spec; loc applies when the spec has no CRON_TZ=.
func parseSpec(spec string, loc *time.Location) (s cron.Schedule, err error) {
	spec = strings.TrimSpace(spec)
	hasTZ := strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=")
	if hasTZ && loc != nil {
		return nil, fmt.Errorf("cron spec %q: both a CRON_TZ= prefix and In(%s)", spec, loc)
	}
	if hasTZ && !strings.Contains(spec, " ") {
		// The parser slices up to the first space and would panic.
		return nil, fmt.Errorf("cron spec %q: a time zone without a schedule", spec)
	}
	if rest, ok := strings.CutPrefix(spec, "@every "); ok {
		// The parser silently rounds shorter or fractional durations.
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second || d%time.Second != 0 {
			return nil, fmt.Errorf("cron spec %q: @every needs a whole number of seconds, at least 1s", spec)
		}
		return everySchedule(d), nil
	}
	s, err = cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("cron spec %q: %w", spec, err)
	}
	if ss, ok := s.(*cron.SpecSchedule); ok && !hasTZ {
		ss.Location = time.UTC
		if loc != nil {
			ss.Location = loc
		}
	}
	// The parser accepts dates that never come (February 30th); such a
	// schedule would leave its entry silent forever.
	if s.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("cron spec %q never fires", spec)
	}
	return s, nil
}

// everySchedule ticks on multiples of itself since the Unix epoch. The
// parser's own @every counts from whenever it is asked, which would give
// each scheduler its own ticks and defeat the per-tick key.
type everySchedule time.Duration

func (d everySchedule) Next(t time.Time) time.Time {
	n := t.UnixNano()
	next := n - n%int64(d) + int64(d)
	if n < 0 && n%int64(d) != 0 {
		next -= int64(d)
	}
	return time.Unix(0, next).In(t.Location())
}

// Name returns the entry's name, which identifies its ticks in Redis.
func (e *Entry) Name() string { return e.name }

// TaskName returns the name of the task the entry enqueues.
func (e *Entry) TaskName() string { return e.taskName }

// Spec returns the cron spec as given.
func (e *Entry) Spec() string { return e.spec }

// Next returns the entry's first tick strictly after t, or the zero time if
// there is none within five years.
func (e *Entry) Next(t time.Time) time.Time { return e.sched.Next(t) }

// due returns the tick to enqueue at now: the latest tick after last and no
// more than the grace before now. It returns the zero time if there is none,
// so the ticks a stopped or stalled scheduler missed are skipped, never
// enqueued in a burst.
func (e *Entry) due(now, last time.Time) time.Time {
	from := now.Add(-e.grace - time.Nanosecond)
	if from.Before(last) {
		from = last
	}
	var tick time.Time
	// Bounded: at most grace / 1s ticks fit in the window.
	for t := e.sched.Next(from); !t.IsZero() && !t.After(now); t = e.sched.Next(t) {
		tick = t
	}
	return tick
}

var registry struct {
	sync.Mutex
	byName map[string]*Entry
}

// Periodic registers an entry (see NewEntry) that every scheduler in the
// process runs, unless its Options list entries of their own. Like
// task.Define it is meant for package-level variables or init code, so that
// every worker binary that imports the package runs the schedule. An
// invalid spec or a name registered twice is a programming error: Periodic
// panics, like regexp.MustCompile; NewEntry returns the error instead.
//
// Any number of schedulers may run the same entries: each tick is enqueued
// once across all of them.
func Periodic[A, R any](t *task.Task[A, R], spec string, args A, opts ...PeriodicOption) *Entry {
	e, err := NewEntry(t, spec, args, opts...)
	if err != nil {
		panic("gotasks: " + err.Error())
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName = map[string]*Entry{}
	}
	if _, dup := registry.byName[e.name]; dup {
		panic(fmt.Sprintf("gotasks: periodic entry %q (task %s, %q) is already registered; give one an EntryName", e.name, e.taskName, spec))
	}
	registry.byName[e.name] = e
	return e
}

// Entries returns the entries registered with Periodic, sorted by name.
func Entries() []*Entry {
	registry.Lock()
	defer registry.Unlock()
	out := make([]*Entry, 0, len(registry.byName))
	for _, e := range registry.byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// unregister removes e from the registry (tests).
func unregister(e *Entry) {
	registry.Lock()
	defer registry.Unlock()
	if registry.byName[e.name] == e {
		delete(registry.byName, e.name)
	}
}

// runEntry enqueues e at each of its ticks until ctx is done.
func (s *Scheduler) runEntry(ctx context.Context, e *Entry) {
	// last is the latest tick handled; zero at start, so that a tick that
	// came just before this scheduler started (within the grace) is still
	// enqueued unless another scheduler already did.
	var last time.Time
	for ctx.Err() == nil {
		now := s.clock.Now()
		if tick := e.due(now, last); !tick.IsZero() {
			s.fire(ctx, e, tick)
			last = tick
			continue
		}
		if !last.IsZero() {
			if missed := e.sched.Next(last); !missed.IsZero() && !missed.After(now) {
				s.log.Warn("scheduler: periodic ticks missed by more than the grace are skipped",
					"entry", e.name, "task", e.taskName, "first_missed", missed, "now", now, "grace", e.grace)
			}
		}
		if now.After(last) {
			last = now
		}
		next := e.sched.Next(last)
		if next.IsZero() {
			s.log.Warn("scheduler: periodic entry has no more ticks", "entry", e.name, "spec", e.spec)
			return
		}
		s.log.Debug("scheduler: next periodic tick", "entry", e.name, "tick", next)
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(next.Sub(now)):
		}
	}
}

// tickID is the id of e's task for tick: the same in every scheduler, so
// that enqueueing it again (a retry after an error, or a request go-redis
// sent again after its reply was lost) finds the task already stored
// instead of storing a second one (see task.WithID).
func tickID(e *Entry, tick time.Time) string {
	sum := sha256.Sum256([]byte(e.name))
	return fmt.Sprintf("tick:%s:%d", hex.EncodeToString(sum[:10]), tick.Unix())
}

// fire enqueues e's task for tick unless another scheduler has: the first
// to SET the tick's key (NX) enqueues, under the tick's own id (tickID).
// Errors are retried until the tick is older than the grace. A scheduler
// that dies between its SET and its enqueue loses the tick: at most once,
// rather than twice.
func (s *Scheduler) fire(ctx context.Context, e *Entry, tick time.Time) {
	key := fmt.Sprintf("%s:periodic:%s:%d", s.b.Options().Prefix, e.name, tick.Unix())
	var bo backoff.Backoff
	claimed := false
	for attempt := 0; ; attempt++ {
		id, won, err := s.fireOnce(ctx, e, key, tickID(e, tick), claimed)
		claimed = claimed || won
		switch {
		case err == nil && !won:
			s.log.Debug("scheduler: periodic tick enqueued by another scheduler", "entry", e.name, "tick", tick)
			return
		case err == nil:
			s.log.Info("scheduler: enqueued periodic task", "entry", e.name, "task", e.taskName, "tick", tick, "id", id)
			return
		case errors.Is(err, task.ErrDuplicateID):
			// Another version of the entry (other arguments under the same
			// EntryName) enqueued this tick.
			s.log.Warn("scheduler: periodic tick enqueued with other arguments by another scheduler", "entry", e.name, "tick", tick, "err", err)
			return
		case errors.Is(err, task.ErrInvalidTask):
			// Would fail the same way on every retry and in every scheduler.
			s.log.Error("scheduler: periodic task cannot be enqueued", "entry", e.name, "tick", tick, "err", err)
			return
		case ctx.Err() != nil:
			return
		case s.clock.Now().Sub(tick) > e.grace:
			s.log.Error("scheduler: periodic tick dropped after errors", "entry", e.name, "tick", tick, "err", err)
			return
		}
		d := bo.Next()
		s.log.Warn("scheduler: periodic tick failed, retrying", "entry", e.name, "tick", tick, "err", err, "retry_in", d)
		backoff.Sleep(ctx, d)
	}
}

// fireOnce claims the tick's key (unless already claimed) and enqueues the
// task under id if this scheduler holds the claim.
func (s *Scheduler) fireOnce(ctx context.Context, e *Entry, key, id string, claimed bool) (string, bool, error) {
	if !claimed {
		ctx, cancel := context.WithTimeout(ctx, fireTimeout)
		defer cancel()
		rdb := s.b.Client()
		won, err := rdb.SetNX(ctx, key, s.id, e.grace+keyMargin).Result()
		if err != nil {
			return "", false, fmt.Errorf("claim %s: %w", key, err)
		}
		if !won {
			// Our own SET may have run with its reply lost: go-redis sends
			// it again, and the second run finds the key set, by us.
			owner, err := rdb.Get(ctx, key).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return "", false, fmt.Errorf("read claim %s: %w", key, err)
			}
			won = owner == s.id
		}
		if !won {
			return "", false, nil
		}
	}
	// Once claimed, the tick is this scheduler's alone: enqueue it even if
	// the scheduler is being stopped, or no one will.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fireTimeout)
	defer cancel()
	if err := e.enqueue(ctx, id); err != nil {
		return "", true, fmt.Errorf("enqueue periodic %s: %w", e.name, err)
	}
	return id, true, nil
}
