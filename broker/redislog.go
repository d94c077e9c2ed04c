package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisLogInterval is how often SetRedisLogger lets through a line
// of each kind.
const DefaultRedisLogInterval = 10 * time.Second

// SetRedisLogger sends go-redis' own log lines (such as "connection pool:
// failed to dial", several a second while Redis is down), which it
// otherwise writes to stderr in its own format, through log at level Warn,
// at most one line of each kind every DefaultRedisLogInterval (see
// RedisLogger). go-redis has one logger per process: this sets it for
// every client, gotasks' or not. The worker command (package cli) calls it
// with its own logger.
func SetRedisLogger(log *slog.Logger) {
	redis.SetLogger(NewRedisLogger(log, DefaultRedisLogInterval))
}

// RedisLogger writes go-redis' log lines to a slog.Logger at level Warn
// (attribute component=go-redis), rate-limited: of the lines of one kind
// (go-redis' format string, or for a preformatted line its text with the
// numbers left out), one goes through per interval and the others are
// counted; the next line of that kind that goes through carries that
// count in its attribute suppressed. Pass it to redis.SetLogger.
type RedisLogger struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*redisLogKind
}

type redisLogKind struct {
	last       time.Time // when a line of this kind last went through
	suppressed int       // lines left out since
}

// maxRedisLogKinds bounds the kinds remembered; past it, the kinds not
// seen for an interval are forgotten.
const maxRedisLogKinds = 256

// NewRedisLogger returns a RedisLogger writing to log, letting one line of
// each kind through per interval (at most; 0 lets every line through).
func NewRedisLogger(log *slog.Logger, interval time.Duration) *RedisLogger {
	return &RedisLogger{log: log, every: interval, kinds: map[string]*redisLogKind{}}
}

// Printf implements go-redis' logging interface.
func (l *RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !l.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	suppressed, ok := l.admit(redisLogKindOf(format, msg), time.Now())
	if !ok {
		return
	}
	attrs := []any{"component", "go-redis"}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.log.Log(ctx, slog.LevelWarn, msg, attrs...)
}

// admit reports whether a line of kind goes through at now, and how many
// of its kind were left out since the last that did.
func (l *RedisLogger) admit(kind string, now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[kind]
	if k == nil {
		if len(l.kinds) >= maxRedisLogKinds {
			for name, old := range l.kinds {
				if now.Sub(old.last) >= l.every {
					delete(l.kinds, name)
				}
			}
		}
		l.kinds[kind] = &redisLogKind{last: now}
		return 0, true
	}
	if now.Sub(k.last) < l.every {
		k.suppressed++
		return 0, false
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	return suppressed, true
}

// redisLogKindOf is the kind of a line: its format, unless the format
// only passes a preformatted text through ("%s"), as much of go-redis
// does; then the text with runs of digits (connection ids, counts, ports)
// made one '#'.
func redisLogKindOf(format, msg string) string {
	if strings.Trim(format, "%s \n") != "" {
		return format
	}
	var b strings.Builder
	digits := false
	for _, r := range msg {
		if r >= '0' && r <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	return b.String()
}
