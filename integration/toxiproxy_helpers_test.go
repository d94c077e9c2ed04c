package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Network faults between worker processes and redis-server, with toxiproxy
// (github.com/Shopify/toxiproxy) run as a library inside the test process:
// no toxiproxy binary, no HTTP API. A test starts a server, puts a proxy in
// front of its redis-server, points the workers at the proxy and adds
// toxics to it:
//
//	x := startToxiproxy(t)
//	p := x.proxy(t, "redis", e.Redis.Addr())
//	w := e.startWorker(workerConfig{ID: "w1", Extra: []string{"--redis-url", proxyURL(p)}})
//	restore := swallow(t, p) // connections stay open, nothing gets through
//	...
//	restore()
//
// Toxics apply to the proxy's open connections as well as to new ones. The
// types and their attributes are those of toxiproxy's README: latency
// (latency, jitter: ms), bandwidth (rate: KB/s), slow_close (delay: ms),
// timeout (timeout: ms; 0 swallows everything and never closes), reset_peer
// (timeout: ms), slicer (average_size, size_variation: bytes; delay: µs),
// limit_data (bytes).

// toxi is a toxiproxy server running in the test process.
type toxi struct {
	srv *toxiproxy.ApiServer
}

// startToxiproxy starts an in-process toxiproxy server. Its proxies stop
// (closing their connections) at cleanup.
func startToxiproxy(t *testing.T) *toxi {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	t.Cleanup(func() { _ = srv.Collection.Clear() })
	return &toxi{srv: srv}
}

// proxy starts a proxy named name (unique per server) that listens on
// 127.0.0.1 on a free port and forwards every connection to upstream
// (host:port). Its address is p.Listen; proxyURL gives the redis:// URL.
func (x *toxi) proxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	p := toxiproxy.NewProxy(x.srv, name, "127.0.0.1:0", upstream)
	if err := x.srv.Collection.Add(p, true); err != nil {
		t.Fatalf("toxiproxy: start proxy %s to %s: %v", name, upstream, err)
	}
	// Listen is the port picked, once started.
	if _, port, err := net.SplitHostPort(p.Listen); err != nil || port == "0" {
		t.Fatalf("toxiproxy: proxy %s listens on %q", name, p.Listen)
	}
	return p
}

// proxyURL is the redis:// URL (db 0) of a Redis reached through p.
func proxyURL(p *toxiproxy.Proxy) string {
	return (&url.URL{Scheme: "redis", Host: p.Listen, Path: "/0"}).String()
}

// toxic is a toxic to add to a proxy.
type toxic struct {
	Name   string // default "<type>_<stream>"
	Type   string // latency, timeout, bandwidth, slow_close, reset_peer, slicer, limit_data
	Stream string // "upstream" (client to server) or "downstream" (server to client; the default)
	// Toxicity is the share of connections it applies to, in (0, 1]; 0
	// means 1 (all).
	Toxicity   float32
	Attributes map[string]any // the type's attributes, e.g. {"latency": 100}
}

// addToxic adds tx to p, and returns its name (for removeToxic).
func addToxic(t *testing.T, p *toxiproxy.Proxy, tx toxic) string {
	t.Helper()
	if tx.Stream == "" {
		tx.Stream = "downstream"
	}
	if tx.Name == "" {
		tx.Name = tx.Type + "_" + tx.Stream
	}
	if tx.Toxicity == 0 {
		tx.Toxicity = 1
	}
	if tx.Attributes == nil {
		tx.Attributes = map[string]any{}
	}
	body, err := json.Marshal(map[string]any{
		"name": tx.Name, "type": tx.Type, "stream": tx.Stream,
		"toxicity": tx.Toxicity, "attributes": tx.Attributes,
	})
	if err != nil {
		t.Fatalf("toxiproxy: encode toxic %s: %v", tx.Name, err)
	}
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		t.Fatalf("toxiproxy: add toxic %s to proxy %s: %v", tx.Name, p.Name, err)
	}
	return tx.Name
}

// removeToxic removes the toxic called name from p.
func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("toxiproxy: remove toxic %s from proxy %s: %v", name, p.Name, err)
	}
}

// swallow makes p a network that hangs: a timeout toxic with timeout 0 in
// both directions, so that connections (open and new) stay open and
// nothing gets through, either way; what is sent meanwhile is lost, not
// delayed. restore removes both toxics.
func swallow(t *testing.T, p *toxiproxy.Proxy) (restore func()) {
	t.Helper()
	var names []string
	for _, stream := range []string{"upstream", "downstream"} {
		names = append(names, addToxic(t, p, toxic{
			Name: "swallow_" + stream, Type: "timeout", Stream: stream,
			Attributes: map[string]any{"timeout": 0},
		}))
	}
	return func() {
		t.Helper()
		for _, n := range names {
			removeToxic(t, p, n)
		}
	}
}

// checkSwallowed fails the test unless a new connection through p gets no
// answer to a PING within wait: the toxics are in place.
func checkSwallowed(t *testing.T, p *toxiproxy.Proxy, wait time.Duration) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Listen, time.Second)
	if err != nil {
		t.Fatalf("toxiproxy: dial proxy %s: %v", p.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return // not even the write got through
	}
	var buf [64]byte
	n, err := c.Read(buf[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("toxiproxy: proxy %s should swallow everything, but a PING got %q, %v", p.Name, buf[:n], err)
	}
}
