package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// redisCluster is a Redis Cluster of three masters (no replicas), each a
// redis-server owned by the test.
type redisCluster struct {
	t     *testing.T
	Nodes []*redisServer
}

// startCluster starts three cluster-enabled redis-servers on free ports and
// joins them with redis-cli --cluster create, which spreads the 16384 slots
// evenly over them.
func startCluster(t *testing.T) *redisCluster {
	t.Helper()
	requireRedis(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		cli = filepath.Join(filepath.Dir(redisServerBin), "redis-cli")
	}
	c := &redisCluster{t: t}
	var addrs []string
	for range 3 {
		// Each node keeps its cluster state in its own temp dir.
		n := startRedisWith(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, tail(out, 3000))
	}
	// redis-cli waits until the nodes agree on the slots; wait also until
	// each node says the cluster is up, so that the first command is served.
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: n.Addr()})
		for {
			info, err := client.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				client.Close()
				t.Fatalf("cluster node %s not ready: %v %s", n.Addr(), err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		client.Close()
	}
	return c
}

// URL is the redis+cluster:// URL listing every node.
func (c *redisCluster) URL() string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// flush empties every master, between tests sharing the cluster.
func (c *redisCluster) flush() {
	c.t.Helper()
	for _, n := range c.Nodes {
		client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: n.Addr()})
		err := client.FlushAll(context.Background()).Err()
		client.Close()
		if err != nil {
			c.t.Fatalf("flush cluster node %s: %v", n.Addr(), err)
		}
	}
}

// shardOf returns the address of the master that holds queue's keys.
func shardOf(t *testing.T, cc *redis.ClusterClient, queue string) string {
	t.Helper()
	node, err := cc.MasterForKey(context.Background(), "{"+broker.DefaultPrefix+":"+queue+"}:pending")
	if err != nil {
		t.Fatalf("node of queue %s: %v", queue, err)
	}
	return node.Options().Addr
}

// TestCluster runs the end-to-end suite on a 3-master Redis Cluster: the
// producer, GetResult from a third client and the worker processes all use
// a redis+cluster:// URL, and the queues the tests use live on different
// shards.
func TestCluster(t *testing.T) {
	c := startCluster(t)
	cc, ok := func() (*redis.ClusterClient, bool) {
		client, err := broker.NewClient(c.URL(), broker.ConnOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Close() })
		cc, ok := client.(*redis.ClusterClient)
		return cc, ok
	}()
	if !ok {
		t.Fatalf("%s did not give a cluster client", c.URL())
	}

	// The suite's queues are spread over the shards (hash tags put each
	// queue's keys on one slot; which slot depends on the name).
	shards := map[string][]string{}
	for _, q := range []string{task.DefaultQueue, "qa", "qb"} {
		s := shardOf(t, cc, q)
		shards[s] = append(shards[s], q)
	}
	t.Logf("queues by shard: %v", shards)
	if len(shards) < 2 {
		t.Fatalf("the suite's queues are all on one shard (%v): the cluster test would not cross shards", shards)
	}
	if shardOf(t, cc, "qa") == shardOf(t, cc, "qb") {
		t.Fatalf("qa and qb are on the same shard: TestPriorityAcrossQueues would not cross shards")
	}

	for _, sub := range []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"EndToEnd", testEndToEnd},
		{"PriorityAndFIFO", testPriorityAndFIFO},
		{"PriorityAcrossQueues", testPriorityAcrossQueues},
		{"RunAfter", testRunAfter},
		{"SIGKILLMidTask", testSIGKILLMidTask},
		{"ExactlyOnceWithoutFaults", testExactlyOnceWithoutFaults},
		{"QueuesOnEveryShard", testQueuesOnEveryShard},
		{"NewQueueServedAtOnce", testNewQueueServedAtOnce},
		{"NoWakeUpLost", testNoWakeUpLost},
		{"WaitWithoutClientUnblock", testWaitWithoutClientUnblock},
	} {
		t.Run(sub.name, func(t *testing.T) {
			c.flush()
			sub.run(t, newEnvOn(t, c.URL()))
		})
	}
}

// testQueuesOnEveryShard: one worker serving queues on all three shards
// (one BLPOP per queue, on its own node) wakes for a task on any of them,
// and GetResult finds each by id alone.
func testQueuesOnEveryShard(t *testing.T, e *env) {
	cc := e.R.(*redis.ClusterClient)
	// Pick one queue per shard.
	byShard := map[string]string{}
	for i := 0; len(byShard) < 3 && i < 1000; i++ {
		q := fmt.Sprintf("shard-q%d", i)
		if s := shardOf(t, cc, q); byShard[s] == "" {
			byShard[s] = q
		}
	}
	if len(byShard) != 3 {
		t.Fatalf("found queues on %d shards; want 3", len(byShard))
	}
	var queues []string
	for _, q := range byShard {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	e.startWorker(workerConfig{ID: "w-shards", Queues: queues, Concurrency: 2, Ready: true})

	// One at a time, so that each task has to wake the idle worker through
	// its own queue's wait.
	for round := range 2 {
		for i, q := range queues {
			r, err := addTask.Using(task.Queue(q)).Enqueue(e.ctx, addArgs{A: round, B: i})
			if err != nil {
				t.Fatalf("enqueue on %s: %v", q, err)
			}
			raw := e.waitStatus(e.client(), r.ID, 10*time.Second, task.StatusComplete, task.StatusFailed)
			var sum int
			if err := raw.Decode(&sum); err != nil || raw.Status != task.StatusComplete || sum != round+i || raw.Queue != q {
				t.Errorf("task on %s: %s, %d, %v, queue %q; want COMPLETE %d", q, raw.Status, sum, err, raw.Queue, round+i)
			}
			// Woken, not polled: an idle worker polls once a second.
			if wait := raw.StartedAt.Sub(raw.EnqueuedAt); wait > 500*time.Millisecond {
				t.Errorf("task on %s started %v after its enqueue: the worker did not wake for it", q, wait)
			}
		}
	}
}

// queuesOnShards returns n queue names spread over the cluster's shards.
func queuesOnShards(t *testing.T, cc *redis.ClusterClient, n int) []string {
	t.Helper()
	var qs []string
	perShard := map[string]int{}
	for i := 0; len(qs) < n && i < 10000; i++ {
		q := fmt.Sprintf("spread-q%d", i)
		if s := shardOf(t, cc, q); perShard[s] < (n+2)/3 {
			perShard[s]++
			qs = append(qs, q)
		}
	}
	return qs
}

// testNoWakeUpLost: a worker waiting on queues of every shard wakes for one
// of them, and the tokens other waits popped meanwhile go back: each wait
// consumes exactly one token.
func testNoWakeUpLost(t *testing.T, e *env) {
	cc := e.R.(*redis.ClusterClient)
	qs := queuesOnShards(t, cc, 12)
	wake := func(q string) string { return "{" + broker.DefaultPrefix + ":" + q + "}:wake" }
	for round := range 100 {
		for _, q := range qs {
			if err := cc.Del(e.ctx, wake(q)).Err(); err != nil {
				t.Fatal(err)
			}
			if err := cc.RPush(e.ctx, wake(q), "1").Err(); err != nil {
				t.Fatal(err)
			}
		}
		ok, err := e.B.WaitReady(e.ctx, qs, 2*time.Second)
		if err != nil || !ok {
			t.Fatalf("round %d: WaitReady = %v, %v; want a wake-up", round, ok, err)
		}
		left := 0
		for _, q := range qs {
			n, err := cc.LLen(e.ctx, wake(q)).Result()
			if err != nil {
				t.Fatal(err)
			}
			left += int(n)
		}
		if left != len(qs)-1 {
			t.Fatalf("round %d: %d wake-up tokens left of %d; want exactly one consumed", round, left, len(qs))
		}
	}
}

// testWaitWithoutClientUnblock: a Redis user that may not run CLIENT
// UNBLOCK (it is in @admin) still gets prompt wake-ups on a cluster, where
// every multi-queue wait ends the other queues' waits.
func testWaitWithoutClientUnblock(t *testing.T, e *env) {
	cc := e.R.(*redis.ClusterClient)
	err := cc.ForEachMaster(e.ctx, func(ctx context.Context, n *redis.Client) error {
		return n.Do(ctx, "ACL", "SETUSER", "limited", "on", ">s3cret", "~*", "&*", "+@all", "-client|unblock").Err()
	})
	if err != nil {
		t.Fatalf("create ACL user: %v", err)
	}
	t.Cleanup(func() {
		_ = cc.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
			return n.Do(ctx, "ACL", "DELUSER", "limited").Err()
		})
	})
	b, err := broker.OpenWith(e.URL, broker.Options{}, broker.ConnOptions{Username: "limited", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	qs := queuesOnShards(t, cc, 3)
	const timeout = 2 * time.Second
	for i := range 5 {
		if err := cc.RPush(e.ctx, "{"+broker.DefaultPrefix+":"+qs[0]+"}:wake", "1").Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ok, err := b.WaitReady(e.ctx, qs, timeout)
		took := time.Since(start)
		if err != nil || !ok {
			t.Fatalf("wait %d: WaitReady = %v, %v", i, ok, err)
		}
		if took > timeout/2 {
			t.Errorf("wait %d took %v with a token ready: the other queues' waits were not ended", i, took)
		}
	}
}
