package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m, main) }

// TestTheRunningDigestEndsCancelled runs the program against miniredis
// with a worker serving emails in this process (another process, for the
// program): the digest, which would take 1,000 s, ends CANCELLED.
func TestTheRunningDigestEndsCancelled(t *testing.T) {
	url, b := exampletest.Redis(t)
	exampletest.Worker(t, b, "emails")
	p := exampletest.Command(t, nil, "GOTASKS_REDIS_URL="+url)
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
	want := "cancel asked: RUNNING true\nended: CANCELLED result " // the id follows
	if got := strings.TrimSpace(p.Stdout.String()); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, ": gotasks: task was cancelled") {
		t.Fatalf("output:\n%s\nwant:\n%s<id>: gotasks: task was cancelled", p.Output(), want)
	}
}
