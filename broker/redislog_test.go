package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
)

type logLine struct {
	Level, Msg, Component string
	Suppressed            int
}

func logLines(t *testing.T, out string) []logLine {
	t.Helper()
	var lines []logLine
	for l := range strings.Lines(out) {
		var rec logLine
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		lines = append(lines, rec)
	}
	return lines
}

// go-redis' lines go to slog at Warn, one of each kind per interval, and
// the next that goes through counts those left out.
func TestRedisLoggerRateLimits(t *testing.T) {
	var out bytes.Buffer
	const every = 300 * time.Millisecond
	l := broker.NewRedisLogger(slog.New(slog.NewJSONHandler(&out, nil)), every)
	ctx := context.Background()
	start := time.Now()
	for i := range 50 {
		l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 5, "connection refused")
		l.Printf(ctx, "%s", "conn[%d] removed from the pool"+strings.Repeat("x", i%2)) // two kinds
		l.Printf(ctx, "%s", "handoff of conn["+string(rune('0'+i%10))+"] failed")      // one kind: numbers are left out
	}
	if time.Since(start) > every {
		t.Skip("too slow a machine for this interval")
	}
	lines := logLines(t, out.String())
	if len(lines) != 4 {
		t.Fatalf("%d lines, want one of each of 4 kinds:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if l.Level != "WARN" || l.Component != "go-redis" || l.Suppressed != 0 {
			t.Errorf("line %+v", l)
		}
	}
	if lines[0].Msg != "redis: connection pool: failed to dial after 5 attempts: connection refused" {
		t.Errorf("message %q", lines[0].Msg)
	}
	time.Sleep(every + 50*time.Millisecond)
	out.Reset()
	l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 5, "connection refused")
	lines = logLines(t, out.String())
	if len(lines) != 1 || lines[0].Suppressed != 49 {
		t.Errorf("after the interval: %+v, want one line with suppressed=49", lines)
	}
}

func TestRedisLoggerHonoursLevel(t *testing.T) {
	var out bytes.Buffer
	l := broker.NewRedisLogger(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})), time.Second)
	l.Printf(context.Background(), "redis: %s", "something")
	if out.Len() != 0 {
		t.Errorf("a Warn line at level error: %s", out.String())
	}
}
