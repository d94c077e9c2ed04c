package broker_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// Options.WaitReplicas against real redis-servers: miniredis answers WAIT
// with 0 at once, so it can only show the error path (see
// TestWaitReplicasWithoutReplicas).

// startReplServer starts a redis-server with args on a free port, in a temp
// dir, and kills it at cleanup (internal/redistest; its defaults include no
// diskless-sync delay: by default a master waits 5s for more replicas
// before it sends the first one its data). Without redis-server the test
// skips, or fails in CI.
func startReplServer(t *testing.T, args ...string) *redistest.Server {
	t.Helper()
	return redistest.Start(t, args...)
}

// clientOf is a client of s that does not retry, closed by the caller.
func clientOf(s *redistest.Server) *redis.Client {
	return redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
}

// waitFor polls cond every 10ms until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s (last: %s)", timeout, what, detail)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitInSync waits until the replica has finished its first sync.
func waitInSync(t *testing.T, replica *redistest.Server) {
	t.Helper()
	c := clientOf(replica)
	defer c.Close()
	waitFor(t, 20*time.Second, "the replica on port "+strconv.Itoa(replica.Port)+" is in sync", func() (bool, string) {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up"), fmt.Sprint(info, err)
	})
}

// masterWithReplica starts a master and one replica of it, in sync.
func masterWithReplica(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	master = startReplServer(t)
	replica = startReplServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	waitInSync(t, replica)
	return master, replica
}

func openOn(t *testing.T, s *redistest.Server, opts broker.Options) *broker.Redis {
	t.Helper()
	b, err := broker.Open("redis://"+s.Addr()+"/0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// hasTask reports whether the server c talks to holds the unfinished task
// msg.
func hasTask(ctx context.Context, c redis.Cmdable, msg *task.Message) (bool, error) {
	return c.HExists(ctx, "{"+broker.DefaultPrefix+":"+msg.Queue+"}:tasks", msg.ID).Result()
}

// TestWaitReplicasConfirmed: with WaitReplicas, an acknowledged enqueue is
// on the replica the moment Enqueue returns, for single enqueues and for
// batches over several queues. Without it, the replica usually has it too,
// a moment later (on loopback the window is tiny: the count is logged).
func TestWaitReplicasConfirmed(t *testing.T) {
	master, replica := masterWithReplica(t)
	ctx := context.Background()
	rc := clientOf(replica)
	defer rc.Close()
	check := func(b *broker.Redis, n int, label string) (missing, total int) {
		for i := range n {
			msgs := []*task.Message{newMsg(t, "brokertest.wait", "q"+strconv.Itoa(i%3), 0, i)}
			if i%10 == 0 {
				msgs = append(msgs, newMsg(t, "brokertest.wait", "other", 0, i), newMsg(t, "brokertest.wait", "third", 0, i))
			}
			if err := b.EnqueueMany(ctx, msgs); err != nil {
				t.Fatalf("%s: enqueue %d: %v", label, i, err)
			}
			total += len(msgs)
			for _, m := range msgs {
				ok, err := hasTask(ctx, rc, m)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					missing++
				}
			}
		}
		return missing, total
	}
	waited := openOn(t, master, broker.Options{WaitReplicas: 1, WaitTimeout: 2 * time.Second})
	if missing, total := check(waited, 300, "WaitReplicas=1"); missing > 0 {
		t.Errorf("WaitReplicas=1: %d of %d acknowledged tasks were not on the replica when Enqueue returned", missing, total)
	}
	plain := openOn(t, master, broker.Options{})
	missing, total := check(plain, 300, "WaitReplicas=0")
	t.Logf("without WaitReplicas, %d of %d acknowledged tasks were not yet on the replica when Enqueue returned", missing, total)
}

// TestWaitReplicasStoppedReplica: a replica that does not answer (SIGSTOP)
// makes an enqueue wait WaitTimeout and fail with ErrNotReplicated, with
// the task stored on the master; once the replica is back, enqueues are
// confirmed again and it catches up. This also shows that WAIT runs on the
// enqueue's own connection: on another one, with no writes of its own, it
// would be satisfied at once by the replica's last acknowledgement.
func TestWaitReplicasStoppedReplica(t *testing.T) {
	master, replica := masterWithReplica(t)
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	b := openOn(t, master, broker.Options{WaitReplicas: 1, WaitTimeout: timeout})
	// While the replica is up, a timeout the loaded CI machine (a race
	// build of every package at once) cannot miss: the confirmation, not
	// its speed, is what those steps check.
	patient := openOn(t, master, broker.Options{WaitReplicas: 1, WaitTimeout: 10 * time.Second})
	plain := openOn(t, master, broker.Options{})
	if err := patient.Enqueue(ctx, newMsg(t, "brokertest.wait", "default", 0, 0)); err != nil {
		t.Fatalf("with the replica up: %v", err)
	}

	replica.Pause()
	msg := newMsg(t, "brokertest.wait", "default", 0, 1)
	began := time.Now()
	err := b.Enqueue(ctx, msg)
	took := time.Since(began)
	if !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("with the replica stopped: err %v; want ErrNotReplicated", err)
	}
	if took < timeout*9/10 {
		t.Errorf("ErrNotReplicated after %v; the WAIT should have waited %v", took, timeout)
	}
	t.Logf("stopped replica: %v after %v", err, took.Round(time.Millisecond))
	r, err := plain.GetResult(ctx, msg.ID)
	if err != nil || r.Status != task.StatusNew {
		t.Fatalf("the task that was not replicated: %v, %v; want it stored, NEW", r, err)
	}
	batch := []*task.Message{newMsg(t, "brokertest.wait", "default", 0, 2), newMsg(t, "brokertest.wait", "elsewhere", 0, 3)}
	if err := b.EnqueueMany(ctx, batch); !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("EnqueueMany with the replica stopped: err %v; want ErrNotReplicated", err)
	}
	// Without WaitReplicas nothing waits for the replica.
	if err := plain.Enqueue(ctx, newMsg(t, "brokertest.wait", "default", 0, 4)); err != nil {
		t.Fatalf("without WaitReplicas, with the replica stopped: %v", err)
	}

	replica.Resume()
	rc := clientOf(replica)
	defer rc.Close()
	waitFor(t, 10*time.Second, "the replica has the tasks stored while it was stopped", func() (bool, string) {
		for _, m := range append(batch, msg) {
			if ok, err := hasTask(ctx, rc, m); !ok {
				return false, fmt.Sprintf("%s missing (%v)", m.ID, err)
			}
		}
		return true, ""
	})
	if err := patient.Enqueue(ctx, newMsg(t, "brokertest.wait", "default", 0, 5)); err != nil {
		t.Fatalf("with the replica back: %v", err)
	}

	// A master whose replica is gone cannot confirm anything either.
	replica.Kill()
	if err := b.Enqueue(ctx, newMsg(t, "brokertest.wait", "default", 0, 6)); !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("with the replica killed: err %v; want ErrNotReplicated", err)
	}
}

// TestWaitReplicasWithoutReplicas: miniredis answers WAIT with 0, like a
// Redis without replicas: every enqueue is stored but not confirmed.
func TestWaitReplicasWithoutReplicas(t *testing.T) {
	e := setup(t, broker.Options{WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	msg := newMsg(t, "brokertest.wait", "default", 0, 1)
	err := e.b.Enqueue(e.ctx, msg)
	if !errors.Is(err, broker.ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("err %v; want ErrNotReplicated, 0 of 1 replicas", err)
	}
	r, err := e.b.GetResult(e.ctx, msg.ID)
	if err != nil || r.Status != task.StatusNew {
		t.Fatalf("GetResult: %v, %v; want the task stored", r, err)
	}
	if qs, err := e.b.KnownQueues(e.ctx); err != nil || len(qs) != 1 || qs[0] != "default" {
		t.Fatalf("known queues %v, %v; want [default]", qs, err)
	}
}

// TestWaitReplicasCluster: in a Redis Cluster the wait is per master node.
// Two masters, a replica for the first only: enqueues on its queues are
// confirmed (and on the replica at once), a batch that also touches the
// other master is not, and nor is anything once the replica stops.
func TestWaitReplicasCluster(t *testing.T) {
	ctx := context.Background()
	// A master declares the cluster up only a node timeout after it joined
	// (5s at most): keep it short.
	clusterArgs := func() []string {
		return []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}
	}
	a, bNode, rep := startReplServer(t, clusterArgs()...), startReplServer(t, clusterArgs()...), startReplServer(t, clusterArgs()...)
	ca, cb, cr := clientOf(a), clientOf(bNode), clientOf(rep)
	defer ca.Close()
	defer cb.Close()
	defer cr.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ca.Do(ctx, "cluster", "addslotsrange", 0, 8191).Err())
	must(cb.Do(ctx, "cluster", "addslotsrange", 8192, 16383).Err())
	must(ca.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(bNode.Port)).Err())
	must(cr.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(a.Port)).Err())
	aID, err := ca.Do(ctx, "cluster", "myid").Text()
	must(err)
	waitFor(t, 20*time.Second, "the replica knows the first master", func() (bool, string) {
		nodes, err := cr.ClusterNodes(ctx).Result()
		return err == nil && strings.Contains(nodes, aID), nodes
	})
	must(cr.ClusterReplicate(ctx, aID).Err())
	waitInSync(t, rep)
	for _, c := range []*redis.Client{ca, cb, cr} {
		waitFor(t, 20*time.Second, "the cluster is up", func() (bool, string) {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3"), info
		})
	}

	url := fmt.Sprintf("redis+cluster://%s,%s", a.Addr(), bNode.Addr())
	cc, err := broker.NewClient(url, broker.ConnOptions{})
	must(err)
	defer cc.Close()
	onA := func(key string) bool {
		n, err := cc.(*redis.ClusterClient).MasterForKey(ctx, key)
		must(err)
		return n.Options().Addr == a.Addr()
	}
	// A prefix whose queue set is on the master with the replica, and a
	// queue on each master.
	var prefix, qa, qb string
	for i := 0; prefix == ""; i++ {
		if p := "wr" + strconv.Itoa(i); onA(p + ":queues") {
			prefix = p
		}
	}
	for i := 0; qa == "" || qb == ""; i++ {
		q := "q" + strconv.Itoa(i)
		if onA("{" + prefix + ":" + q + "}:tasks") {
			qa = cmp.Or(qa, q)
		} else {
			qb = cmp.Or(qb, q)
		}
	}
	b, err := broker.Open(url, broker.Options{Prefix: prefix, WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
	must(err)
	defer b.Close()
	// The confirmed enqueues get a timeout a loaded CI machine cannot
	// miss; the refused ones the short one, to keep the test quick.
	patient, err := broker.Open(url, broker.Options{Prefix: prefix, WaitReplicas: 1, WaitTimeout: 10 * time.Second})
	must(err)
	defer patient.Close()
	// Reads from a cluster replica need READONLY on their connection.
	rconn := cr.Conn()
	defer rconn.Close()
	must(rconn.ReadOnly(ctx).Err())
	for i := range 50 {
		msgs := []*task.Message{newMsg(t, "brokertest.wait", qa, 0, i), newMsg(t, "brokertest.wait", qa, 0, -i)}
		if err := patient.EnqueueMany(ctx, msgs); err != nil {
			t.Fatalf("enqueue %d on %s (the master with a replica): %v", i, qa, err)
		}
		for _, m := range msgs {
			ok, err := rconn.HExists(ctx, "{"+prefix+":"+m.Queue+"}:tasks", m.ID).Result()
			if err != nil || !ok {
				t.Fatalf("task %s on %s is not on the replica after its enqueue returned (%v)", m.ID, qa, err)
			}
		}
	}
	both := []*task.Message{newMsg(t, "brokertest.wait", qa, 0, 100), newMsg(t, "brokertest.wait", qb, 0, 101)}
	if err := b.EnqueueMany(ctx, both); !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("a batch on both masters, one without replicas: err %v; want ErrNotReplicated", err)
	}
	for _, m := range both {
		if r, err := b.GetResult(ctx, m.ID); err != nil || r.Status != task.StatusNew {
			t.Fatalf("task on %s of that batch: %v, %v; want it stored", m.Queue, r, err)
		}
	}
	rep.Pause()
	defer rep.Resume()
	if err := b.Enqueue(ctx, newMsg(t, "brokertest.wait", qa, 0, 102)); !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("with the replica stopped: err %v; want ErrNotReplicated", err)
	}
}
