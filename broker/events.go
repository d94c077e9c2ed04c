package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// Events: every script that changes a task's state (enqueue, claim,
// retry, finish, cancel, and the operator's retry of a failed task)
// publishes what it changed on the queue's channel T:events, in the same
// atomic step, one message per script call (a finish of 20 tasks is one
// message listing them). A script sent twice publishes only on the path
// that made the change, so a change is told once.
//
// Events cost the scripts a little (a few string operations per task and
// a PUBLISH per call), so they are written only while someone listens: a
// subscriber sets the key named like the channel (T:events, a string with
// a TTL) before it subscribes, and again every eventsRefresh; a script
// whose queue has no such key publishes nothing, at the cost of one
// EXISTS.
//
// Redis pub/sub keeps nothing: a subscriber sees the events published
// while it is subscribed, and a subscriber that was cut off (a reset, a
// restart, a failover) misses those published until it is back; it then
// gets an EventMissed. Events are for watching live (Result.Wait, the
// dashboard); the state in Redis stays the truth.
//
// A message is the time of the change in unix µs (Redis' clock), then a
// line per task: "<kind> <id> <attempt> <length> <task name>", the kind
// a letter (see kindLetters), the name after its length in bytes (a name
// may hold spaces or newlines).

// EventMode says how a backend publishes events (Options.Events).
type EventMode string

// The event modes.
const (
	// EventsAuto is the default: PUBLISH, or SPUBLISH on Redis Cluster
	// (a cluster client), which keeps each message to the shard of its
	// queue instead of broadcasting it to every node; on a server before
	// Redis 7.0, which has no SPUBLISH, the scripts fall back to PUBLISH
	// and subscribers to SUBSCRIBE.
	EventsAuto EventMode = ""
	// EventsPublish always uses PUBLISH and SUBSCRIBE: for a cluster
	// whose every process must agree with one that uses it.
	EventsPublish EventMode = "publish"
	// EventsSharded always uses SPUBLISH and SSUBSCRIBE (with the same
	// fallback as EventsAuto).
	EventsSharded EventMode = "sharded"
	// EventsOff publishes nothing: subscribers see no events of this
	// backend's changes, and Result.Wait polls.
	EventsOff EventMode = "off"
)

// ErrEventsOff is returned by WaitFinished on a backend whose events are
// off (Options.Events): Result.Wait then polls.
var ErrEventsOff = errors.New("gotasks: events are off on this backend")

// publishCommand is the command the scripts publish with under mode m on
// client c; "" for none.
func publishCommand(c redis.UniversalClient, m EventMode) string {
	switch m {
	case EventsOff:
		return ""
	case EventsPublish:
		return "PUBLISH"
	case EventsSharded:
		return "SPUBLISH"
	}
	if _, ok := c.(*redis.ClusterClient); ok {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// EventKind is what happened to a task.
type EventKind string

// The kinds of events, and EventMissed.
const (
	EventEnqueued  EventKind = "enqueued"  // stored (NEW), deferred or not
	EventStarted   EventKind = "started"   // claimed by a worker (RUNNING); Attempt is the new attempt
	EventRetried   EventKind = "retried"   // NEW again after a failed attempt, or an operator's retry of a FAILED task
	EventCompleted EventKind = "completed" // COMPLETE
	EventFailed    EventKind = "failed"    // FAILED
	EventCancelled EventKind = "cancelled" // CANCELLED
	// EventMissed is not a task's event: the subscription was cut off and
	// is back, or its reader fell behind, and events of the time between
	// are lost. Queue names the queue whose events were lost, or is the
	// empty string for every queue of the subscription. A reader that
	// keeps state from events reads it again from Redis. It is sent
	// whatever kinds the subscription asked for.
	EventMissed EventKind = "missed"
)

// EventKinds are the kinds of task events, in a task's order of life.
var EventKinds = []EventKind{EventEnqueued, EventStarted, EventRetried, EventCompleted, EventFailed, EventCancelled}

// The listener keys: a subscriber sets its queues' keys for
// eventsListenTTL, every eventsRefresh.
const (
	eventsListenTTL = 30 * time.Second
	eventsRefresh   = 10 * time.Second
)

// listen sets the listener keys, so that the scripts publish on their
// channels.
func listen(ctx context.Context, rdb redis.UniversalClient, keys []string) error {
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.Set(ctx, k, "1", eventsListenTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("mark the events as listened to: %w", err)
	}
	return nil
}

// kindLetters map the letters of event messages to kinds and statuses.
var kindLetters = map[byte]struct {
	kind   EventKind
	status task.Status
}{
	'e': {EventEnqueued, task.StatusNew},
	's': {EventStarted, task.StatusRunning},
	'r': {EventRetried, task.StatusNew},
	'c': {EventCompleted, task.StatusComplete},
	'f': {EventFailed, task.StatusFailed},
	'x': {EventCancelled, task.StatusCancelled},
	'k': {EventCancelRequested, task.StatusRunning}, // on T:cancels only
}

// Event is one change of one task, as published by the script that made
// it.
type Event struct {
	Kind    EventKind
	ID      string
	Task    string // the task name
	Queue   string
	Status  task.Status // the status the change left the task in
	Attempt int         // the attempt it concerns: 0 for an enqueue, the new one for a start
	At      time.Time   // Redis' clock when the change was made
}

// parseEvents reads one message of queue's channel; it stops at the first
// line it cannot read.
func parseEvents(queue, msg string) ([]Event, error) {
	head, rest, _ := strings.Cut(msg, "\n")
	us, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("event message on %s: bad time %q", queue, head)
	}
	at := time.UnixMicro(us)
	var out []Event
	for rest != "" {
		var ev Event
		if ev, rest, err = parseEvent(rest); err != nil {
			return out, fmt.Errorf("event message on %s: %w", queue, err)
		}
		ev.Queue, ev.At = queue, at
		out = append(out, ev)
	}
	return out, nil
}

// parseEvent reads one line of a message and returns the rest.
func parseEvent(s string) (Event, string, error) {
	var ev Event
	f := make([]string, 0, 4)
	for range 4 {
		field, rest, ok := strings.Cut(s, " ")
		if !ok {
			return ev, "", fmt.Errorf("short line %q", s)
		}
		f, s = append(f, field), rest
	}
	if len(f[0]) != 1 {
		return ev, "", fmt.Errorf("unknown kind %q", f[0])
	}
	k, ok := kindLetters[f[0][0]]
	if !ok {
		return ev, "", fmt.Errorf("unknown kind %q", f[0])
	}
	att, err1 := strconv.Atoi(f[2])
	n, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || n < 0 || n > len(s) {
		return ev, "", fmt.Errorf("bad line %q", f)
	}
	ev = Event{Kind: k.kind, Status: k.status, ID: f[1], Attempt: att, Task: s[:n]}
	s = s[n:]
	if s != "" {
		if s[0] != '\n' {
			return ev, "", fmt.Errorf("line of %s does not end after its name", ev.ID)
		}
		s = s[1:]
	}
	return ev, s, nil
}

// Subscription receives the events of some queues (see Subscribe).
type Subscription struct {
	out   chan Event
	kinds map[EventKind]bool // nil: every kind
	rdb   redis.UniversalClient
	wait  time.Duration // for confirmations and pongs

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	feeds    []*feed
	closed   bool
	overflow bool // events were dropped: send EventMissed before the next

	keys   []string // the listener keys of every queue
	listen bool     // keep the listener keys set (not for cancels)
}

// EventBuffer is how many events a Subscription holds for its reader;
// beyond that it drops them and sends EventMissed once there is room.
const EventBuffer = 1024

// Subscribe starts receiving the events of queues, of the given kinds
// (none: every kind), from every process that publishes them (see
// Options.Events). It returns once Redis has confirmed the subscription:
// every change made after that is received, unless the subscription is
// cut off meanwhile (then EventMissed tells, once it is back; it
// reconnects by itself). ctx bounds subscribing; the subscription lasts
// until Close. It holds a connection of its own (one per queue with
// SSUBSCRIBE, which cannot span shards), and keeps a key per queue set
// (T:events, see scripts.go), which tells the scripts that someone
// listens: the Redis user needs to write it.
//
// Read Events promptly: a reader more than EventBuffer events behind
// loses events, and gets an EventMissed.
func (b *Redis) Subscribe(ctx context.Context, queues []string, kinds ...EventKind) (*Subscription, error) {
	return b.subscribe(ctx, queues, func(k keys) string { return k.events }, true, kinds)
}

// subscribe subscribes to the channel of each queue that channel names;
// with listen it keeps their listener keys set (see listen).
func (b *Redis) subscribe(ctx context.Context, queues []string, channel func(keys) string, listen bool, kinds []EventKind) (*Subscription, error) {
	if len(queues) == 0 {
		return nil, errors.New("subscribe: no queues")
	}
	s := &Subscription{out: make(chan Event, EventBuffer), rdb: b.rdb, wait: readTimeoutOf(b.rdb), listen: listen}
	if len(kinds) > 0 {
		s.kinds = map[EventKind]bool{}
		for _, k := range kinds {
			s.kinds[k] = true
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	sharded := b.shardedEvents()
	_, ring := b.rdb.(*redis.Ring)
	queues = slices.Compact(slices.Sorted(slices.Values(queues)))
	var groups [][]string
	if sharded || ring {
		// SSUBSCRIBE takes channels of one slot, and a ring's channels
		// live on the shard of their queue's keys.
		for _, q := range queues {
			groups = append(groups, []string{q})
		}
	} else {
		groups = [][]string{queues}
	}
	type started struct {
		f   *feed
		ps  *redis.PubSub
		err error
	}
	res := make(chan started, len(groups))
	for _, g := range groups {
		f := &feed{s: s, sharded: sharded, byChannel: map[string]string{}}
		for _, q := range g {
			ch := channel(b.keys(q))
			f.channels = append(f.channels, ch)
			f.byChannel[ch] = q
		}
		if len(g) == 1 {
			f.queue = g[0]
		}
		go func() {
			ps, err := f.connect(ctx)
			res <- started{f, ps, err}
		}()
	}
	var errs []error
	var ok []started
	for range groups {
		r := <-res
		if r.err != nil {
			errs = append(errs, r.err)
		} else {
			ok = append(ok, r)
		}
	}
	if len(errs) > 0 {
		for _, r := range ok {
			_ = r.ps.Close()
		}
		s.cancel()
		return nil, fmt.Errorf("subscribe to the events of %v: %w", queues, errors.Join(errs...))
	}
	for _, r := range ok {
		r.f.ps = r.ps
		s.feeds = append(s.feeds, r.f)
		s.keys = append(s.keys, r.f.channels...)
		s.wg.Add(1)
		go r.f.run(r.ps)
	}
	if listen {
		s.wg.Add(1)
		go s.refresh()
	}
	return s, nil
}

// refresh keeps the listener keys set until the subscription is closed.
// If they could not be set for longer than they last, the scripts may
// have stopped publishing meanwhile: it sends EventMissed once they are
// set again.
func (s *Subscription) refresh() {
	defer s.wg.Done()
	ok := time.Now()
	t := time.NewTicker(eventsRefresh)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.wait)
		err := listen(ctx, s.rdb, s.keys)
		cancel()
		if err != nil {
			continue
		}
		if time.Since(ok) > eventsListenTTL {
			s.send(Event{Kind: EventMissed, At: time.Now()})
		}
		ok = time.Now()
	}
}

// shardedEvents reports whether subscribers use SSUBSCRIBE.
func (b *Redis) shardedEvents() bool {
	switch b.opts.Events {
	case EventsSharded:
		return true
	case EventsPublish:
		return false
	}
	_, ok := b.rdb.(*redis.ClusterClient)
	return ok
}

// Events returns the channel of events, in the order each queue's
// changes were made; it is closed after Close.
func (s *Subscription) Events() <-chan Event { return s.out }

// Close ends the subscription and closes its connections and Events.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	feeds := s.feeds
	s.mu.Unlock()
	s.cancel()
	for _, f := range feeds {
		f.close()
	}
	s.wg.Wait()
	close(s.out)
	return nil
}

// send hands ev to the reader, or drops it if the reader is behind.
func (s *Subscription) send(ev Event) {
	if s.kinds != nil && ev.Kind != EventMissed && !s.kinds[ev.Kind] {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.overflow {
		select {
		case s.out <- Event{Kind: EventMissed, At: time.Now()}:
			s.overflow = false
		default:
			return
		}
	}
	select {
	case s.out <- ev:
	default:
		s.overflow = true
	}
}

// feed is one connection of a Subscription and the channels on it.
type feed struct {
	s         *Subscription
	channels  []string
	byChannel map[string]string // channel → queue
	queue     string            // the only queue, or the empty string
	sharded   bool              // SSUBSCRIBE (until the server refuses it)

	mu sync.Mutex
	ps *redis.PubSub // the current connection
}

// connect subscribes to f's channels on a new connection and waits for
// Redis to confirm. Messages that come before the last confirmation are
// delivered.
func (f *feed) connect(ctx context.Context) (*redis.PubSub, error) {
	// Before subscribing: a change made once Redis confirms is published.
	if f.s.listen {
		if err := listen(ctx, f.s.rdb, f.channels); err != nil {
			return nil, err
		}
	}
	if f.sharded {
		ps, err := f.subscribe(ctx, true)
		if err == nil || !unknownCommand(err) {
			return ps, err
		}
		f.sharded = false // a server before 7.0: the scripts PUBLISH too
	}
	return f.subscribe(ctx, false)
}

func (f *feed) subscribe(ctx context.Context, sharded bool) (*redis.PubSub, error) {
	var ps *redis.PubSub
	var err error
	if sharded {
		ps = f.s.rdb.SSubscribe(ctx)
		err = ps.SSubscribe(ctx, f.channels...)
	} else {
		ps = f.s.rdb.Subscribe(ctx)
		err = ps.Subscribe(ctx, f.channels...)
	}
	var early []*redis.Message
	for want := map[string]bool{}; err == nil && len(want) < len(f.channels); {
		var msg any
		msg, err = ps.ReceiveTimeout(ctx, f.s.wait)
		switch m := msg.(type) {
		case *redis.Subscription:
			want[m.Channel] = true
		case *redis.Message:
			early = append(early, m)
		}
	}
	if err != nil {
		_ = ps.Close()
		return nil, err
	}
	for _, m := range early {
		f.deliver(m)
	}
	return ps, nil
}

// unknownCommand reports whether err is Redis not knowing a command.
func unknownCommand(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(strings.ToLower(re.Error()), "unknown command")
}

// eventsPing is how long a feed waits for a message before it pings the
// connection; a ping unanswered for as long again means it is cut off.
const eventsPing = 15 * time.Second

// run receives on ps until the subscription is closed, reconnecting
// when the connection is lost.
func (f *feed) run(ps *redis.PubSub) {
	defer f.s.wg.Done()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(f.s.ctx, eventsPing)
		if f.s.ctx.Err() != nil {
			return
		}
		if err == nil {
			pinged = false
			if m, ok := msg.(*redis.Message); ok {
				f.deliver(m)
			}
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !pinged {
			pinged = true
			if ps.Ping(f.s.ctx) == nil {
				continue
			}
		}
		// Cut off: whatever is published until the new connection is
		// subscribed is lost.
		_ = ps.Close()
		if ps = f.reconnect(); ps == nil {
			return
		}
		pinged = false
		f.s.send(Event{Kind: EventMissed, Queue: f.queue, At: time.Now()})
	}
}

// reconnect subscribes again, retrying with a growing pause, until it
// succeeds (the new connection) or the subscription is closed (nil).
func (f *feed) reconnect() *redis.PubSub {
	pause := time.Duration(0)
	for {
		select {
		case <-f.s.ctx.Done():
			return nil
		case <-time.After(pause):
		}
		ctx, cancel := context.WithTimeout(f.s.ctx, f.s.wait)
		ps, err := f.connect(ctx)
		cancel()
		if err == nil {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.s.ctx.Err() != nil {
				_ = ps.Close()
				return nil
			}
			f.ps = ps
			return ps
		}
		pause = min(max(2*pause, 50*time.Millisecond), 2*time.Second)
	}
}

// close closes the current connection, which ends a receive in progress.
func (f *feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ps != nil {
		_ = f.ps.Close()
	}
}

// deliver sends the events of message m.
func (f *feed) deliver(m *redis.Message) {
	q, ok := f.byChannel[m.Channel]
	if !ok {
		return
	}
	evs, _ := parseEvents(q, m.Payload) // a line it cannot read ends the message
	for _, ev := range evs {
		f.s.send(ev)
	}
}

// WaitFinished implements task.FinishWaiter, for Result.Wait: it returns
// once the events of queue are subscribed to, and then the channel gets a
// value when task id may have finished: its completed, failed or
// cancelled event, or an EventMissed of its queue (the waiter should read
// the result either way). stop ends the watch. The Waits of one backend
// share one subscription per queue, kept for a few seconds after the last
// one ends; Close ends them.
//
// It returns ErrEventsOff when this backend publishes no events, and the
// error of subscribing when Redis refuses it (a proxy without pub/sub, a
// user not allowed the channel): the caller then polls.
func (b *Redis) WaitFinished(ctx context.Context, id, queue string) (<-chan struct{}, func(), error) {
	if b.pub == "" {
		return nil, nil, ErrEventsOff
	}
	if queue == "" {
		return nil, nil, fmt.Errorf("wait for %s: no queue", id)
	}
	b.waitsOnce.Do(func() { b.waits = &waitHub{b: b, queues: map[string]*queueWaits{}} })
	if b.waits == nil {
		return nil, nil, errWaitClosed // Close came first
	}
	return b.waits.join(ctx, queue, id)
}

var errWaitClosed = errors.New("gotasks: wait: the backend is closed")

// waitHub shares subscriptions among the WaitFinished calls of a backend.
type waitHub struct {
	b      *Redis
	mu     sync.Mutex
	queues map[string]*queueWaits
	closed bool
}

// queueWaits are the waiters of one queue and its subscription.
type queueWaits struct {
	ready   chan struct{} // closed once subscribed, or failed (err)
	err     error
	at      time.Time // when it failed
	sub     *Subscription
	waiters map[string][]chan struct{} // by task id
	n       int                        // number of waiters
	idle    *time.Timer                // ends sub once no one waits
}

// waitLinger is how long a queue's subscription outlives its last
// waiter, so that a loop of Waits subscribes once.
const waitLinger = 10 * time.Second

// waitRetry is how long a failed subscription is reported to new waiters
// before one tries again.
const waitRetry = time.Second

func (h *waitHub) join(ctx context.Context, queue, id string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, nil, errWaitClosed
	}
	qw := h.queues[queue]
	if qw != nil && qw.err != nil && time.Since(qw.at) < waitRetry {
		h.mu.Unlock()
		return nil, nil, qw.err
	}
	if qw == nil || qw.err != nil {
		qw = &queueWaits{ready: make(chan struct{}), waiters: map[string][]chan struct{}{}}
		h.queues[queue] = qw
		go h.subscribe(queue, qw)
	}
	qw.waiters[id] = append(qw.waiters[id], ch)
	qw.n++
	if qw.idle != nil {
		qw.idle.Stop()
		qw.idle = nil
	}
	h.mu.Unlock()
	stop := sync.OnceFunc(func() { h.leave(queue, qw, id, ch) })
	select {
	case <-qw.ready:
	case <-ctx.Done():
		stop()
		return nil, nil, ctx.Err()
	}
	if qw.err != nil {
		stop()
		return nil, nil, qw.err
	}
	return ch, stop, nil
}

// subscribe makes qw's subscription and then dispatches its events.
func (h *waitHub) subscribe(queue string, qw *queueWaits) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*readTimeoutOf(h.b.rdb))
	sub, err := h.b.Subscribe(ctx, []string{queue}, EventCompleted, EventFailed, EventCancelled)
	cancel()
	h.mu.Lock()
	if err == nil && h.closed {
		err = errWaitClosed
		_ = sub.Close()
	}
	if err != nil {
		qw.err, qw.at = fmt.Errorf("wait: %w", err), time.Now()
		close(qw.ready)
		h.mu.Unlock()
		return
	}
	qw.sub = sub
	close(qw.ready)
	h.lingerLocked(queue, qw)
	h.mu.Unlock()
	for ev := range sub.Events() {
		h.mu.Lock()
		if ev.Kind == EventMissed {
			for _, chs := range qw.waiters {
				for _, c := range chs {
					poke(c)
				}
			}
		} else {
			for _, c := range qw.waiters[ev.ID] {
				poke(c)
			}
		}
		h.mu.Unlock()
	}
}

// poke tells a waiter to look, unless it has yet to look since last time.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (h *waitHub) leave(queue string, qw *queueWaits, id string, ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	chs := qw.waiters[id]
	if i := slices.Index(chs, ch); i >= 0 {
		chs = slices.Delete(chs, i, i+1)
		qw.n--
	}
	if len(chs) == 0 {
		delete(qw.waiters, id)
	} else {
		qw.waiters[id] = chs
	}
	h.lingerLocked(queue, qw)
}

// lingerLocked ends qw's subscription waitLinger from now if no one waits.
func (h *waitHub) lingerLocked(queue string, qw *queueWaits) {
	if qw.n > 0 || qw.sub == nil || qw.idle != nil {
		return
	}
	qw.idle = time.AfterFunc(waitLinger, func() {
		h.mu.Lock()
		if qw.n > 0 || h.queues[queue] != qw {
			h.mu.Unlock()
			return
		}
		delete(h.queues, queue)
		h.mu.Unlock()
		_ = qw.sub.Close()
	})
}

// close ends every subscription of the hub.
func (h *waitHub) close() {
	h.mu.Lock()
	h.closed = true
	var subs []*Subscription
	for q, qw := range h.queues {
		if qw.idle != nil {
			qw.idle.Stop()
		}
		if qw.sub != nil {
			subs = append(subs, qw.sub)
		}
		delete(h.queues, q)
	}
	h.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
}
