package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// Helpers of the network fault suite (network_test.go,
// network_random_test.go), on top of toxiproxy_helpers_test.go: a toxic
// that loses exactly one reply, a world with a proxy in front of its
// redis-server, and readers of what Redis holds.

// ---------------------------------------------------------------------------
// losing exactly one reply

// A reply is lost by two toxics on one proxy, a pair per connection:
//
//   - net_mark_request, upstream (client → Redis), looks at each request
//     while it passes. While the dropper is armed, a request that its match
//     function accepts marks its connection.
//   - net_lose_reply, downstream (Redis → client), swallows the next chunk
//     of reply data on a marked connection (Redis has run the command: the
//     reply is its answer), runs the test's gap function (another worker
//     acting in the gap, through a client that bypasses the proxy), and then
//     closes the connection. (A NOSCRIPT error is let through: the script
//     did not run, and the EVAL that follows it is the request to lose.)
//     go-redis reads EOF and sends the command
//     again on a new connection: a re-sent script.
//
// Only the marked connection loses its reply, however many others are busy
// (concurrent Enqueue calls, a scheduler's BLPOP): the two toxics of one
// connection share its state. toxiproxy starts the upstream then the
// downstream link of each connection it accepts, one connection at a time
// (Proxy.server), and makes each stateful toxic's state as it starts the
// link, so the state the upstream toxic makes is handed to the downstream
// toxic made next. That holds for connections opened after the toxics were
// added, so netAttachDropper adds them before any client connects.

const (
	netMarkType = "net_mark_request"
	netLoseType = "net_lose_reply"
)

func init() {
	toxics.Register(netMarkType, new(netMarkToxic))
	toxics.Register(netLoseType, new(netLoseToxic))
}

// netDroppers are the droppers by name: toxiproxy makes its toxics from
// JSON, so a toxic finds its dropper by the name in its attributes.
var netDroppers sync.Map // string → *netDropper

func netLookupDropper(name string) *netDropper {
	d, _ := netDroppers.Load(name)
	dd, _ := d.(*netDropper)
	return dd
}

// netDropper loses replies on one proxy when armed.
type netDropper struct {
	name string

	mu       sync.Mutex
	match    func(req []byte) bool // nil: disarmed
	reply    func(rep []byte) bool // nil: any reply
	left     int                   // replies still to lose; < 0: no limit
	gap      func(n int)           // run in the gap after the nth lost reply
	pending  *netConn              // made by the upstream toxic, for the downstream one
	conns    int
	lostN    int
	lostLog  []string // what was lost, abbreviated
	problems []string
}

// netConn is what the two toxics of one proxied connection share.
type netConn struct {
	id   int
	lose bool // the next reply is to be lost (guarded by the dropper's mu)
}

// arm makes the dropper lose the replies to the next n requests (n < 0:
// every request until disarm) that match accepts; match sees a chunk of
// the request stream as sent (RESP), which holds a whole command or
// pipeline unless it is larger than the proxy's 32 KB buffer. gap, if not
// nil, runs after each lost reply (n counts them from 1), before the
// connection is closed. Arm right before the call under test.
func (d *netDropper) arm(n int, match func(req []byte) bool, gap func(n int)) {
	d.armWhere(n, match, nil, gap)
}

// armWhere is arm that loses only replies that reply accepts (it sees the
// first chunk of the reply); the others are let through, uncounted.
func (d *netDropper) armWhere(n int, match, reply func([]byte) bool, gap func(n int)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.match, d.reply, d.left, d.gap = match, reply, n, gap
}

// disarm stops the dropper from marking more requests (a connection
// already marked still loses its reply).
func (d *netDropper) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.match, d.reply, d.left, d.gap = nil, nil, 0, nil
}

// lost returns how many replies the dropper lost so far.
func (d *netDropper) lost() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lostN
}

// lostReplies describes the replies lost so far.
func (d *netDropper) lostReplies() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lostLog, "; ")
}

func (d *netDropper) sawRequest(c *netConn, req []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.match == nil || d.left == 0 || !d.match(req) {
		return
	}
	c.lose = true
	if d.left > 0 {
		d.left--
	}
}

// takeReply reports whether c's reply chunk is to be lost, and if so
// counts it and returns the gap function and the number of the loss.
func (d *netDropper) takeReply(c *netConn, reply []byte) (lose bool, gap func(int), n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !c.lose {
		return false, nil, 0
	}
	c.lose = false
	if bytes.HasPrefix(reply, []byte("-NOSCRIPT")) || d.reply != nil && !d.reply(reply) {
		// Not a reply to lose. NOSCRIPT: the script did not run, and
		// go-redis' Script.Run sends it again with EVAL (which the match
		// function also accepts), whose reply is the one to lose.
		if d.match != nil && d.left >= 0 {
			d.left++
		}
		return false, nil, 0
	}
	d.lostN++
	d.lostLog = append(d.lostLog, fmt.Sprintf("conn %d: %q", c.id, netAbbrev(reply, 60)))
	return true, d.gap, d.lostN
}

func (d *netDropper) newUpstream() *netConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns++
	c := &netConn{id: d.conns}
	if d.pending != nil {
		d.problems = append(d.problems, fmt.Sprintf("connection %d: its downstream toxic never took its state", d.pending.id))
	}
	d.pending = c
	return c
}

func (d *netDropper) newDownstream() *netConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.pending
	d.pending = nil
	if c == nil {
		d.problems = append(d.problems, "a downstream link without an upstream one: connections opened before the toxics were added?")
	}
	return c
}

func netAbbrev(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// netMarkToxic is net_mark_request (see above).
type netMarkToxic struct {
	Dropper string `json:"dropper"`
}

func (x *netMarkToxic) NewState() any {
	if d := netLookupDropper(x.Dropper); d != nil {
		return d.newUpstream()
	}
	return (*netConn)(nil)
}

func (x *netMarkToxic) Pipe(stub *toxics.ToxicStub) {
	d := netLookupDropper(x.Dropper)
	c, _ := stub.State.(*netConn)
	for {
		select {
		case <-stub.Interrupt:
			return
		case chunk := <-stub.Input:
			if chunk == nil {
				stub.Close()
				return
			}
			if d != nil && c != nil {
				d.sawRequest(c, chunk.Data)
			}
			stub.Output <- chunk
		}
	}
}

// netLoseToxic is net_lose_reply (see above).
type netLoseToxic struct {
	Dropper string `json:"dropper"`
}

func (x *netLoseToxic) NewState() any {
	if d := netLookupDropper(x.Dropper); d != nil {
		return d.newDownstream()
	}
	return (*netConn)(nil)
}

func (x *netLoseToxic) Pipe(stub *toxics.ToxicStub) {
	d := netLookupDropper(x.Dropper)
	c, _ := stub.State.(*netConn)
	for {
		select {
		case <-stub.Interrupt:
			return
		case chunk := <-stub.Input:
			if chunk == nil {
				stub.Close()
				return
			}
			if d != nil && c != nil {
				if lose, gap, n := d.takeReply(c, chunk.Data); lose {
					if gap != nil {
						gap(n)
					}
					// Closing the stub closes the client's connection
					// (toxiproxy's link ends, and closes the one to Redis).
					stub.Close()
					for {
						select {
						case <-stub.Interrupt:
							return
						case chunk := <-stub.Input:
							if chunk == nil {
								return
							}
						}
					}
				}
			}
			stub.Output <- chunk
		}
	}
}

// netAttachDropper adds the two toxics of a dropper to p, which no client
// may have connected to yet, and returns the dropper (disarmed).
func netAttachDropper(t *testing.T, p *toxiproxy.Proxy) *netDropper {
	t.Helper()
	d := &netDropper{name: fmt.Sprintf("%s/%s/%p", t.Name(), p.Name, p)}
	netDroppers.Store(d.name, d)
	t.Cleanup(func() {
		netDroppers.Delete(d.name)
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, p := range d.problems {
			t.Errorf("reply dropper: %s", p)
		}
	})
	addToxic(t, p, toxic{Name: "net_mark", Type: netMarkType, Stream: "upstream", Attributes: map[string]any{"dropper": d.name}})
	addToxic(t, p, toxic{Name: "net_lose", Type: netLoseType, Stream: "downstream", Attributes: map[string]any{"dropper": d.name}})
	return d
}

// netHas returns a match function that accepts a request holding every
// one of parts.
func netHas(parts ...string) func([]byte) bool {
	return func(req []byte) bool {
		for _, p := range parts {
			if !bytes.Contains(req, []byte(p)) {
				return false
			}
		}
		return true
	}
}

// netAnyRequest accepts every request.
func netAnyRequest([]byte) bool { return true }

// netBulk is s as a RESP bulk string: how an argument (a script's key, a
// command name) appears in a request.
func netBulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// ---------------------------------------------------------------------------
// a world with a proxy

// netEnv is a redis-server, the test process's direct clients on it (the
// embedded env: the "default" task backend, setup and checks) and a
// toxiproxy in front of it with a reply dropper.
type netEnv struct {
	*env
	Toxi     *toxi
	Proxy    *toxiproxy.Proxy
	Drop     *netDropper
	ProxyURL string // redis:// URL of the Redis through the proxy
}

// newNetEnv starts a redis-server, a proxy to it with a dropper, and the
// producer's direct backend.
func newNetEnv(t *testing.T) *netEnv {
	t.Helper()
	e := newEnv(t)
	x := startToxiproxy(t)
	p := x.proxy(t, "redis", e.Redis.Addr())
	d := netAttachDropper(t, p)
	return &netEnv{env: e, Toxi: x, Proxy: p, Drop: d, ProxyURL: proxyURL(p)}
}

// openNet opens a broker that reaches Redis through the proxy, closed at
// cleanup. query (without '?') sets go-redis options, e.g.
// "read_timeout=1s".
func (n *netEnv) openNet(opts broker.Options, query string) *broker.Redis {
	n.t.Helper()
	url := n.ProxyURL
	if query != "" {
		url += "?" + query
	}
	b, err := broker.Open(url, opts)
	if err != nil {
		n.t.Fatalf("broker.Open through the proxy: %v", err)
	}
	n.t.Cleanup(func() { _ = b.Close() })
	return b
}

// ---------------------------------------------------------------------------
// what Redis holds

// netTag is the hash tag of queue's keys.
func netTag(queue string) string { return "{" + broker.DefaultPrefix + ":" + queue + "}" }

// netPlace is where one task is, read straight from its queue's keys.
type netPlace struct {
	Live                      bool // in T:tasks
	Ready                     int  // times in T:ready
	Pending, Delayed, Running bool
	Result                    task.Status // status of T:r:<id>; "" if none
	Attempts                  int         // from the stored header (live, or the result's)
	Workers                   []string
}

func (p netPlace) String() string {
	var where []string
	if p.Live {
		where = append(where, "live")
	}
	if p.Ready > 0 {
		where = append(where, fmt.Sprintf("ready×%d", p.Ready))
	}
	for _, x := range []struct {
		in   bool
		name string
	}{{p.Pending, "pending"}, {p.Delayed, "delayed"}, {p.Running, "running"}} {
		if x.in {
			where = append(where, x.name)
		}
	}
	if p.Result != "" {
		where = append(where, "result "+string(p.Result))
	}
	if len(where) == 0 {
		where = append(where, "missing")
	}
	return fmt.Sprintf("%s, attempts %d, workers %v", strings.Join(where, " "), p.Attempts, p.Workers)
}

// netHeader parses the header line of a stored task value: its attempts
// and workers (see broker/scripts.go).
func netHeader(v string) (attempts int, workers []string) {
	line, _, _ := strings.Cut(v, "\n")
	f := strings.SplitN(line, " ", 5)
	if len(f) < 4 {
		return 0, nil
	}
	attempts, _ = strconv.Atoi(f[0])
	if len(f) == 5 && f[4] != "" {
		workers = strings.Split(f[4], ",")
	}
	return attempts, workers
}

// netWhere reads where task id of queue is.
func netWhere(t *testing.T, r redis.UniversalClient, queue, id string) netPlace {
	t.Helper()
	ctx := context.Background()
	tag := netTag(queue)
	pipe := r.Pipeline()
	live := pipe.HGet(ctx, tag+":tasks", id)
	ready := pipe.LRange(ctx, tag+":ready", 0, -1)
	pending := pipe.ZScore(ctx, tag+":pending", id)
	delayed := pipe.ZScore(ctx, tag+":delayed", id)
	running := pipe.ZScore(ctx, tag+":running", id)
	result := pipe.HMGet(ctx, tag+":r:"+id, "t", "s")
	_, _ = pipe.Exec(ctx)
	var p netPlace
	for _, c := range []redis.Cmder{live, pending, delayed, running} {
		if err := c.Err(); err != nil && err != redis.Nil {
			t.Fatalf("read task %s: %v", id, err)
		}
	}
	if v, err := live.Result(); err == nil {
		p.Live = true
		p.Attempts, p.Workers = netHeader(v)
	}
	for _, x := range ready.Val() {
		if x == id {
			p.Ready++
		}
	}
	p.Pending, p.Delayed, p.Running = pending.Err() == nil, delayed.Err() == nil, running.Err() == nil
	if vals, err := result.Result(); err == nil && len(vals) == 2 && vals[1] != nil {
		p.Result = task.Status(fmt.Sprint(vals[1]))
		if !p.Live {
			v, _ := vals[0].(string)
			p.Attempts, p.Workers = netHeader(v)
		}
	}
	return p
}

// netCheckQueue fails the test unless queue's keys agree: every live task
// is in exactly one of ready (once), pending, delayed and running, and
// nothing else is in them. It returns the running ids.
func netCheckQueue(t *testing.T, r redis.UniversalClient, queue string) (running []string) {
	t.Helper()
	ctx := context.Background()
	tag := netTag(queue)
	pipe := r.Pipeline()
	liveC := pipe.HKeys(ctx, tag+":tasks")
	readyC := pipe.LRange(ctx, tag+":ready", 0, -1)
	pendingC := pipe.ZRange(ctx, tag+":pending", 0, -1)
	delayedC := pipe.ZRange(ctx, tag+":delayed", 0, -1)
	runningC := pipe.ZRange(ctx, tag+":running", 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		t.Fatalf("read queue %s: %v", queue, err)
	}
	places := map[string][]string{}
	for _, x := range []struct {
		name string
		ids  []string
	}{{"ready", readyC.Val()}, {"pending", pendingC.Val()}, {"delayed", delayedC.Val()}, {"running", runningC.Val()}} {
		for _, id := range x.ids {
			places[id] = append(places[id], x.name)
		}
	}
	live := map[string]bool{}
	bad := 0
	for _, id := range liveC.Val() {
		live[id] = true
		if len(places[id]) != 1 {
			if bad++; bad <= 10 {
				t.Errorf("queue %s: task %s is in %v; want exactly one of ready, pending, delayed, running", queue, id, places[id])
			}
		}
	}
	for id, ps := range places {
		if !live[id] {
			if bad++; bad <= 10 {
				t.Errorf("queue %s: %s is in %v but not a stored task", queue, id, ps)
			}
		}
	}
	if bad > 10 {
		t.Errorf("queue %s: %d problems in all", queue, bad)
	}
	return runningC.Val()
}

// netDone reads queue's total of tasks that finished with status s.
func netDone(t *testing.T, r redis.UniversalClient, queue string, s task.Status) int {
	t.Helper()
	v, err := r.HGet(context.Background(), netTag(queue)+":done", string(s)).Int()
	if err != nil && err != redis.Nil {
		t.Fatalf("read %s:done: %v", netTag(queue), err)
	}
	return v
}

// netRedisNow is Redis' clock.
func netRedisNow(t *testing.T, r redis.UniversalClient) time.Time {
	t.Helper()
	now, err := r.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return now
}

// ---------------------------------------------------------------------------
// demo.record's record in a file

// netRecordFile makes the worker processes started from now on record
// demo.record's executions in a file of the test's (see
// cmd/worker/tasks.go) and returns its path.
func netRecordFile(t *testing.T) string {
	t.Helper()
	path := t.TempDir() + "/executions.log"
	t.Setenv("GOTASKS_DEMO_RECORD_FILE", path)
	return path
}

// netExecutions reads the record file: "start|end <id> <attempt> <worker> <tag>" lines.
func netExecutions(t *testing.T, path string) []execution {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []execution
	sc := bufio.NewScanner(f)
	for i := 1; sc.Scan(); i++ {
		l := sc.Text()
		fs := strings.SplitN(l, " ", 5)
		if len(fs) != 5 || (fs[0] != "start" && fs[0] != "end") {
			t.Fatalf("%s:%d = %q: not \"start|end <id> <attempt> <worker> <tag>\"", path, i, l)
		}
		a, err := strconv.Atoi(fs[2])
		if err != nil {
			t.Fatalf("%s:%d = %q: bad attempt", path, i, l)
		}
		out = append(out, execution{Kind: fs[0], ID: fs[1], Attempt: a, Worker: fs[3], Tag: fs[4]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ---------------------------------------------------------------------------
// worker metrics

// netFreeAddr returns a 127.0.0.1 address with a port that was free a
// moment ago (for a worker's --metrics-addr).
func netFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// netScrape sums the samples of metric in the Prometheus text served at
// http://addr/metrics whose labels include every one of labels
// (`name="value"`).
func netScrape(addr, metric string, labels ...string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		name, rest, ok := strings.Cut(l, "{")
		if !ok || name != metric {
			continue
		}
		lbls, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		have := strings.Split(lbls, ",")
		if !slices.ContainsFunc(labels, func(l string) bool { return !slices.Contains(have, l) }) {
			f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return 0, fmt.Errorf("metric line %q: %v", l, err)
			}
			sum += f
		}
	}
	return sum, sc.Err()
}
