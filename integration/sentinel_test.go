package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// Redis Sentinel: a master, its replicas and three sentinels, all real
// processes (redis-server <conf> --sentinel: Debian's redis-server 7.0 has
// no separate redis-sentinel binary). The master is SIGKILLed mid-run and
// the sentinels promote a replica; producer and workers, connected through
// a redis+sentinel:// URL, must carry on with the new master by themselves.

const sentinelMasterName = "mymaster"

// startSentinel starts a sentinel (redis-server <conf> --sentinel) watching
// the master on masterPort; it is killed at cleanup, and its log printed if
// the test failed.
func startSentinel(t *testing.T, masterPort int) *redistest.Server {
	t.Helper()
	return redistest.StartWith(t, redistest.Config{
		Name: "sentinel",
		Args: []string{"--sentinel"},
		// A down-after of 1s keeps the test short; the sentinel rewrites
		// this file (its state, the other sentinels, the new master), so it
		// lives in its writable temp dir.
		Conf: func(port int, dir string) string {
			return fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %[3]s 1000
sentinel failover-timeout %[3]s 5000
sentinel parallel-syncs %[3]s 1
`, port, dir, sentinelMasterName, masterPort)
		},
	})
}

// sentinelSetup is a master with replicas, watched by three sentinels.
type sentinelSetup struct {
	t         *testing.T
	Master    *redisServer
	Replicas  []*redisServer
	Sentinels []*redistest.Server
	clients   []*redis.SentinelClient
}

// startSentinelSetup starts the master, nReplicas replicas and three
// sentinels, and waits until every sentinel sees the master, every replica
// (in sync) and the other two sentinels: only then can they agree that the
// master is down and elect one of them to promote a replica.
func startSentinelSetup(t *testing.T, nReplicas int) *sentinelSetup {
	t.Helper()
	// The default diskless sync waits 5s for more replicas before it sends
	// the first one its data; a promoted replica is a master too.
	noDelay := []string{"--repl-diskless-sync-delay", "0"}
	s := &sentinelSetup{t: t, Master: startRedisWith(t, noDelay...)}
	for range nReplicas {
		args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port)}, noDelay...)
		s.Replicas = append(s.Replicas, startRedisWith(t, args...))
	}
	for range 3 {
		sp := startSentinel(t, s.Master.Port)
		s.Sentinels = append(s.Sentinels, sp)
		c := redis.NewSentinelClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: sp.Addr(), DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second})
		t.Cleanup(func() { _ = c.Close() })
		s.clients = append(s.clients, c)
	}
	s.waitWatched(20 * time.Second)
	return s
}

// URL is the redis+sentinel:// URL of the setup, db 0.
func (s *sentinelSetup) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sp := range s.Sentinels {
		addrs[i] = sp.Addr()
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + sentinelMasterName + "/0"
}

func (s *sentinelSetup) waitWatched(timeout time.Duration) {
	s.t.Helper()
	ctx := context.Background()
	replicas := make([]*redis.Client, len(s.Replicas))
	for i, r := range s.Replicas {
		replicas[i] = redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: r.Addr()})
		defer replicas[i].Close()
	}
	ready := func() (bool, string) {
		for i, r := range s.Replicas {
			info, err := replicas[i].Info(ctx, "replication").Result()
			if err != nil || !strings.Contains(info, "master_link_status:up") {
				return false, fmt.Sprintf("replica on port %d not in sync (%v)", r.Port, err)
			}
		}
		for i, c := range s.clients {
			name := fmt.Sprintf("sentinel %d (port %d)", i, s.Sentinels[i].Port)
			if err := c.CkQuorum(ctx, sentinelMasterName).Err(); err != nil {
				return false, name + ": " + err.Error()
			}
			others, err := c.Sentinels(ctx, sentinelMasterName).Result()
			if err != nil || len(others) != len(s.Sentinels)-1 {
				return false, fmt.Sprintf("%s sees %d other sentinels (%v)", name, len(others), err)
			}
			reps, err := c.Replicas(ctx, sentinelMasterName).Result()
			if err != nil {
				return false, name + ": " + err.Error()
			}
			for _, r := range s.Replicas {
				if !slices.ContainsFunc(reps, func(m map[string]string) bool {
					return m["port"] == strconv.Itoa(r.Port) && m["flags"] == "slave" && m["master-link-status"] == "ok"
				}) {
					return false, fmt.Sprintf("%s does not see replica %d in sync: %v", name, r.Port, reps)
				}
			}
		}
		return true, ""
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %v waiting until the sentinels watch the master and its replicas (last: %s)", timeout, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// masterPorts returns the master's port as each sentinel reports it (0:
// no answer).
func (s *sentinelSetup) masterPorts(ctx context.Context) []int {
	out := make([]int, len(s.clients))
	for i, c := range s.clients {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		a, err := c.GetMasterAddrByName(cctx, sentinelMasterName).Result()
		cancel()
		if err == nil && len(a) == 2 {
			out[i], _ = strconv.Atoi(a[1])
		}
	}
	return out
}

// ---------------------------------------------------------------------------

// failoverRun configures runSentinelFailover.
type failoverRun struct {
	Replicas int
	// Broker are the producer's broker options (nil: newEnvOn's).
	Broker *broker.Options
}

// failoverOutcome is what a run measured.
type failoverOutcome struct {
	Acked, Refused, Unconfirmed int
	Completed, Lost             int
	Reexecuted                  int
	SentinelFailover            time.Duration // kill → the first sentinel names the new master
	SentinelsAgree              time.Duration // kill → all of them do
	ProducerFailover            time.Duration // kill → the producer's first acknowledged enqueue after a refused one
}

func (o failoverOutcome) String() string {
	return fmt.Sprintf("%d acknowledged, %d refused, %d stored but not confirmed by a replica; %d completed, %d lost; %d re-executed; failover: first sentinel %v, all sentinels %v, producer %v after the kill",
		o.Acked, o.Refused, o.Unconfirmed, o.Completed, o.Lost, o.Reexecuted,
		o.SentinelFailover.Round(time.Millisecond), o.SentinelsAgree.Round(time.Millisecond), o.ProducerFailover.Round(time.Millisecond))
}

// The fates of one enqueue.
const (
	sendRefused     = iota // Enqueue failed: may or may not be stored
	sendAcked              // Enqueue returned nil
	sendUnconfirmed        // stored on the master, not confirmed by a replica (broker.ErrNotReplicated)
)

type sendRecord struct {
	tag  string
	id   string // of an acknowledged enqueue
	at   time.Time
	fate int
}

// TestSentinelFailover: a producer enqueues at a steady pace through a
// redis+sentinel:// URL while two worker processes run the tasks; the
// master is SIGKILLed and the sentinels promote the replica. The producer
// and the workers find the new master by themselves. Every acknowledged
// task completes, or is lost (absent from the new master) if its enqueue was
// acknowledged before the kill but never reached the replica.
func TestSentinelFailover(t *testing.T) {
	o := runSentinelFailover(t, failoverRun{Replicas: 1})
	t.Logf("sentinel failover, 1 replica, no WaitReplicas: %v", o)
}

// TestSentinelFailoverWaitReplicas: the same failover with the producer's
// broker waiting for one replica (Options.WaitReplicas): no acknowledged
// enqueue is lost. Two replicas, so that the new master still has one to
// confirm enqueues (until the sentinels have pointed the other at it, the
// producer gets ErrNotReplicated: stored, not confirmed).
func TestSentinelFailoverWaitReplicas(t *testing.T) {
	o := runSentinelFailover(t, failoverRun{Replicas: 2, Broker: &broker.Options{WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond}})
	if o.Lost > 0 {
		t.Errorf("%d enqueues confirmed by a replica were lost in the failover", o.Lost)
	}
	t.Logf("sentinel failover, 2 replicas, WaitReplicas 1: %v", o)
}

// runSentinelFailover is the failover scenario; it fails t on what it can
// assert and returns what it measured.
//
// What can be asserted, and what cannot. Redis replicates asynchronously,
// so the writes of the last moments before the kill (enqueues, claims,
// results, demo.record's lines) may be missing on the new master: an
// acknowledged enqueue may be lost, and a task may run again because its
// claim or its result was lost. A task may also run again because its
// worker could not write in the outage and the attempt failed, or its lease
// ran out: go-redis retries a command through the whole outage, so even a
// line a worker began to write before the kill can land on the new master
// after it, and the sentinels learn the new master from each other, so for
// a moment some clients reach it and some do not. Once every sentinel names
// the new master nothing is faulty any more, but for a client whose pool
// still holds a failed dial of the old master (about a second). So:
//   - a task acknowledged after that runs to its end exactly once (an
//     earlier attempt may fail while a client still dials the old master);
//   - an acknowledged task is COMPLETE, or absent (lost), and absent only if
//     the old master acknowledged it;
//   - every execution is of an attempt the new master counted, and no
//     attempt of a worker ran twice (at most one start and end line of the
//     final attempt by its worker);
//   - the run finishes: the producer is acknowledged again, each worker runs
//     a task of its own queue, and the queue drains.
//
// Re-executions of the older tasks are reported, not asserted.
func runSentinelFailover(t *testing.T, cfg failoverRun) failoverOutcome {
	setup := startSentinelSetup(t, cfg.Replicas)
	e := newEnvOn(t, setup.URL())
	if cfg.Broker != nil {
		// The same backend as newEnvOn's, with other options.
		b, err := broker.Open(e.URL, *cfg.Broker)
		if err != nil {
			t.Fatal(err)
		}
		task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
		t.Cleanup(func() { _ = b.Close() }) // before newEnvOn's cleanup unconfigures
		e.B, e.R = b, b.Client()
	}
	ctx := e.ctx
	const (
		lease = 2 * time.Second // a claim lost with the master comes back soon
		pace  = 5 * time.Millisecond
		// Short enough that the producer sees the outage as refusals, not
		// as one slow enqueue (go-redis retries through it).
		deadline   = 500 * time.Millisecond
		ackedAfter = 150 // acknowledged once the sentinels agree, before the producer stops
	)
	ws := []*workerProc{
		e.startWorker(workerConfig{ID: "w-sentinel-1", Concurrency: 4, Lease: lease, Ready: true}),
		e.startWorker(workerConfig{ID: "w-sentinel-2", Concurrency: 4, Lease: lease, Ready: true}),
	}

	// The producer. Attempts that failed because a worker could not write
	// demo.record's lines in the outage are retried, so that every task can
	// COMPLETE; the retries outlast the sentinels' disagreement.
	record := recordTask.Using(task.MaxAttempts(20), task.Backoff(50*time.Millisecond, 500*time.Millisecond))
	var (
		mu      sync.Mutex
		sends   []sendRecord
		lastErr string
		stop    = make(chan struct{})
		stopped = make(chan struct{})
	)
	go func() {
		defer close(stopped)
		rng := rand.New(rand.NewPCG(7, 26379))
		for i := 0; i < 1_000_000; i++ { // bounded; stop ends it long before
			select {
			case <-stop:
				return
			default:
			}
			tag := "s" + strconv.Itoa(i)
			cctx, cancel := context.WithTimeout(ctx, deadline)
			r, err := record.Enqueue(cctx, sleepArgs{Ms: rng.IntN(15), Tag: tag})
			cancel()
			s := sendRecord{tag: tag, at: time.Now()}
			switch {
			case err == nil:
				s.fate, s.id = sendAcked, r.ID
			case errors.Is(err, broker.ErrNotReplicated):
				s.fate = sendUnconfirmed
			default:
				s.fate = sendRefused
			}
			mu.Lock()
			sends = append(sends, s)
			if err != nil {
				lastErr = err.Error()
			}
			mu.Unlock()
			time.Sleep(pace)
		}
	}()
	stopProducer := sync.OnceFunc(func() {
		close(stop)
		<-stopped
	})
	t.Cleanup(stopProducer)
	count := func(fate int, after time.Time) (n int, last string) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sends {
			if s.fate == fate && s.at.After(after) {
				n++
			}
		}
		return n, lastErr
	}

	// Tasks are running, and some done, when the master dies.
	e.eventually(15*time.Second, "tasks are acknowledged and some completed", func() (bool, string) {
		n, _ := count(sendAcked, time.Time{})
		runs, err := e.R.LLen(ctx, "demo:executions").Result()
		return n >= 150 && runs >= 100 && err == nil, fmt.Sprintf("%d acknowledged, %d execution records (%v)", n, runs, err)
	})
	oldMaster := setup.Master.Port
	killedAt := time.Now()
	setup.Master.Kill()

	var o failoverOutcome
	var newMaster int
	e.eventually(20*time.Second, "a sentinel names a new master", func() (bool, string) {
		ports := setup.masterPorts(ctx)
		for _, p := range ports {
			if p != 0 && p != oldMaster {
				newMaster = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("masters as the sentinels report them: %v", ports)
	})
	failoverAt := time.Now()
	o.SentinelFailover = failoverAt.Sub(killedAt)
	e.eventually(15*time.Second, "every sentinel names the new master", func() (bool, string) {
		ports := setup.masterPorts(ctx)
		for _, p := range ports {
			if p != newMaster {
				return false, fmt.Sprintf("masters as the sentinels report them: %v (new: %d)", ports, newMaster)
			}
		}
		return true, ""
	})
	agreedAt := time.Now()
	o.SentinelsAgree = agreedAt.Sub(killedAt)

	e.eventually(15*time.Second, "the producer is acknowledged again once the sentinels agree", func() (bool, string) {
		n, last := count(sendAcked, agreedAt)
		return n >= ackedAfter, fmt.Sprintf("%d acknowledged; last error %q", n, last)
	})
	// Each worker claims from the new master (not stuck on the dead one).
	for _, w := range ws {
		e.waitReady(w)
	}
	stopProducer()
	e.waitDrained(task.DefaultQueue, 30*time.Second)

	mu.Lock()
	all := slices.Clone(sends)
	mu.Unlock()
	var ackedIDs []string
	byTag := map[string]bool{}
	refusedBefore := 0
	// An enqueue acknowledged just after killedAt may still be the old
	// master's: the producer is back once it is acknowledged after failing.
	failedSinceKill := false
	for _, s := range all {
		byTag[s.tag] = true
		if s.at.After(killedAt) && s.fate != sendAcked {
			failedSinceKill = true
		}
		switch s.fate {
		case sendAcked:
			o.Acked++
			ackedIDs = append(ackedIDs, s.id)
			if failedSinceKill && o.ProducerFailover == 0 {
				o.ProducerFailover = s.at.Sub(killedAt)
			}
		case sendRefused:
			o.Refused++
			if s.at.Before(killedAt) {
				refusedBefore++
			}
		case sendUnconfirmed:
			o.Unconfirmed++
		}
	}

	starts, ends := map[string][]execution{}, map[string][]execution{}
	execs := e.executions()
	for _, x := range execs {
		if !byTag[x.Tag] {
			t.Errorf("demo:executions has %v, of a task that was never enqueued", x)
			continue
		}
		switch x.Kind {
		case "start":
			starts[x.Tag] = append(starts[x.Tag], x)
		case "end":
			ends[x.Tag] = append(ends[x.Tag], x)
		}
	}

	results := readResults(t, e.client(), ackedIDs, true)
	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	lostRan, otherRan, failedLate := 0, 0, 0
	attempts := map[int]int{}
	j := 0
	for _, s := range all {
		if s.fate != sendAcked {
			if len(starts[s.tag]) > 0 {
				otherRan++ // stored although not acknowledged
			}
			continue
		}
		r := results[j]
		j++
		if r == nil {
			o.Lost++
			// The old master is gone a whole down-after period before a
			// sentinel names the new one, and no enqueue takes that long
			// (deadline): this one was the new master's.
			if s.at.After(failoverAt) {
				report("task %s (%s), acknowledged %v after a sentinel named the new master, is lost", s.tag, s.id, s.at.Sub(failoverAt))
			}
			if len(starts[s.tag]) > 0 {
				lostRan++
			}
			continue
		}
		if r.Status != task.StatusComplete || r.Attempts < 1 || len(r.WorkerIDs) != r.Attempts {
			report("task %s (%s): status %s (%v), attempts %d, workers %v; want COMPLETE", s.tag, r.ID, r.Status, r.Err, r.Attempts, r.WorkerIDs)
			continue
		}
		o.Completed++
		attempts[r.Attempts]++
		ss, es := starts[s.tag], ends[s.tag]
		if len(ss) > 1 || r.Attempts > 1 {
			o.Reexecuted++
		}
		last := r.WorkerIDs[r.Attempts-1]
		finalStarts, finalEnds := 0, 0
		for _, x := range append(slices.Clone(ss), es...) {
			if x.ID != r.ID || x.Attempt < 1 || x.Attempt > r.Attempts {
				report("task %s (%s): %v is not of an attempt the new master counted (attempts %d, workers %v)", s.tag, r.ID, x, r.Attempts, r.WorkerIDs)
			}
			if x.Attempt == r.Attempts && x.Worker == last {
				if x.Kind == "start" {
					finalStarts++
				} else {
					finalEnds++
				}
			}
		}
		if finalStarts > 1 || finalEnds > 1 {
			report("task %s (%s): its final attempt %d on %s ran more than once (starts %v, ends %v)", s.tag, r.ID, r.Attempts, last, ss, es)
		}
		// After the sentinels agree, a task still runs to its end exactly
		// once: one end line, its final attempt's. An earlier attempt may
		// have started and failed: a client of the worker's (demo.record's
		// lines, or the store) can still dial the old master for a moment,
		// because go-redis' pool, after failed dials, returns the last dial
		// error until a background redial (about once a second) succeeds.
		// Such an attempt fails, is retried, and is counted, not refused.
		if s.at.After(agreedAt) {
			if len(es) != 1 || finalStarts != 1 || finalEnds != 1 || len(ss) > r.Attempts {
				report("task %s (%s), acknowledged after the failover: attempts %d, workers %v, starts %v, ends %v; want exactly one execution to its end, of the final attempt",
					s.tag, r.ID, r.Attempts, r.WorkerIDs, ss, es)
			} else if r.Attempts > 1 {
				failedLate++
			}
		}
	}
	if bad > 20 {
		t.Errorf("... %d problems in all", bad)
	}
	if o.Refused == refusedBefore {
		t.Errorf("no enqueue was refused after the kill: the outage tested nothing")
	}
	for _, w := range ws {
		if !w.Running() {
			t.Errorf("worker %s is gone", w.ID)
		}
	}
	t.Logf("failover to port %d: %d enqueues in all (%d refused before the kill); attempts per completed task %v; %d lost tasks had run before the kill; %d enqueues not acknowledged were stored and ran anyway; %d tasks acknowledged after the sentinels agreed had a failed attempt before the one that ended; %d execution records; last producer error %q",
		newMaster, len(all), refusedBefore, attempts, lostRan, otherRan, failedLate, len(execs), lastErr)
	return o
}
