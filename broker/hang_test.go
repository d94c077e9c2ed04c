package broker_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
)

// A wait (WaitReady, as an idle worker's; WaitDeferred, as a scheduler's)
// whose context is cancelled returns within half a second even when Redis
// does not answer at all: go-redis would end its commands only at their
// read timeout, and retry them. What it leaves behind ends by itself
// within the wait's timeout plus the read timeout.
func TestWaitCancelledWhileRedisHangs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) string // Redis' address
		// blocked reports whether Redis at addr has a client blocked in
		// BLPOP (nil: cannot tell).
		blocked func(t *testing.T, addr string) bool
	}{
		{"CLIENT UNBLOCK (redis-server)", func(t *testing.T) string { return redistest.Start(t).Addr() }, blpopRunning},
		// No CLIENT UNBLOCK: the wait runs in steps of 50ms, one BLPOP
		// after the other.
		{"stepped (miniredis)", func(t *testing.T) string { return miniredis.RunT(t).Addr() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.start(t)
			p := startSwallowProxy(t, addr)
			const readTimeout = time.Second
			c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, ReadTimeout: readTimeout,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
			t.Cleanup(func() { _ = c.Close() })
			b := broker.New(c, broker.Options{})
			bg := context.Background()
			// A first wait finds out whether CLIENT UNBLOCK may be used.
			if _, err := b.WaitReady(bg, []string{"q"}, 10*time.Millisecond); err != nil {
				t.Fatal(err)
			}

			const timeout = 900 * time.Millisecond
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			errc := make(chan error, 1)
			sent := p.blpops.Load()
			go func() {
				_, err := b.WaitReady(ctx, []string{"q"}, timeout)
				errc <- err
			}()
			// Hang once the wait is blocked in BLPOP.
			deadline := time.Now().Add(5 * time.Second)
			for p.blpops.Load() == sent || (tc.blocked != nil && !tc.blocked(t, addr)) {
				if time.Now().After(deadline) {
					t.Fatal("the wait's BLPOP never reached Redis")
				}
				time.Sleep(time.Millisecond)
			}
			p.hang()
			cancel()
			cancelled := time.Now()
			select {
			case err := <-errc:
				took := time.Since(cancelled)
				t.Logf("WaitReady returned %v after its context was cancelled: %v", took.Round(time.Millisecond), err)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("WaitReady: %v; want context.Canceled", err)
				}
				if took > 800*time.Millisecond {
					t.Errorf("WaitReady took %v to return after its context was cancelled, with Redis not answering; want about 500ms", took)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("WaitReady did not return within 20s of its context being cancelled")
			}

			// The network comes back (what was sent meanwhile is lost): what
			// the wait left behind ends by itself, and the client works.
			p.restore()
			deadline = cancelled.Add(timeout + readTimeout + 2*time.Second)
			for left := brokerGoroutines(); left != ""; left = brokerGoroutines() {
				if time.Now().After(deadline) {
					t.Fatalf("goroutines of the wait still running %v after it was cancelled:\n%s", time.Since(cancelled), left)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := c.Ping(bg).Err(); err != nil {
				t.Errorf("PING once the network is back: %v", err)
			}
		})
	}
}

// blpopRunning reports whether a client of the redis-server at addr is
// blocked in BLPOP.
func blpopRunning(t *testing.T, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	list, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, " flags=b ") && strings.Contains(l, " cmd=blpop ") {
			return true
		}
	}
	return false
}

// brokerGoroutines returns the stacks of the goroutines that run the
// commands of a wait ("" if none).
func brokerGoroutines() string {
	var sb strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&sb, 2)
	var out []string
	for _, g := range strings.Split(sb.String(), "\n\n") {
		if strings.Contains(g, "gotasks/gotasks/broker.detach") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// swallowProxy forwards TCP connections to an upstream until hang is
// called; from then on it reads what either side sends and drops it,
// keeping the connections open (a network that hangs), until restore.
type swallowProxy struct {
	ln       net.Listener
	upstream string
	hung     atomic.Bool
	blpops   atomic.Int64 // BLPOPs sent upstream (counted by the writes that hold one)
	wg       sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

// startSwallowProxy starts a proxy to upstream; it stops at cleanup.
func startSwallowProxy(t *testing.T, upstream string) *swallowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &swallowProxy{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *swallowProxy) Addr() string { return p.ln.Addr().String() }
func (p *swallowProxy) hang()        { p.hung.Store(true) }
func (p *swallowProxy) restore()     { p.hung.Store(false) }

func (p *swallowProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns = append(p.conns, c, u)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(u, c, true)
		go p.pipe(c, u, false)
	}
}

// pipe copies src to dst, or drops what src sends while the proxy hangs.
func (p *swallowProxy) pipe(dst, src net.Conn, upstream bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		if p.hung.Load() {
			continue
		}
		if upstream && bytes.Contains(bytes.ToUpper(buf[:n]), []byte("BLPOP")) {
			p.blpops.Add(1)
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

func (p *swallowProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
