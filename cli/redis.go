package cli

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
)

func isMemoryURL(url string) bool {
	s, _, ok := strings.Cut(url, "://")
	return ok && strings.EqualFold(s, "memory")
}

// OpenRedis opens the backend c describes. The URL memory:// starts an
// embedded in-memory Redis (miniredis) instead, which lives until the
// returned close function is called; its address is logged so that
// producers can reach it. It has no password and no TLS: credentials are
// ignored, TLS settings are an error. Errors never show a password.
func OpenRedis(c broker.Config, log *slog.Logger) (*broker.Redis, func(), error) {
	if isMemoryURL(c.URL) {
		conn := c.Conn
		if conn.TLS != nil || conn.CAFile != "" || conn.CertFile != "" || conn.KeyFile != "" || conn.ServerName != "" || conn.InsecureSkipVerify {
			return nil, nil, fmt.Errorf("--redis-url memory:// takes no TLS settings")
		}
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			return nil, nil, fmt.Errorf("start embedded redis: %w", err)
		}
		log.Info("embedded in-memory redis started (its data is lost on exit)", "addr", m.Addr())
		client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			Addr: m.Addr(), ContextTimeoutEnabled: true, PoolSize: conn.PoolSize})
		return broker.New(client, c.Options), func() { _ = client.Close(); m.Close() }, nil
	}
	b, err := c.Open()
	if err != nil {
		// broker's errors carry the redacted URL, never the password.
		return nil, nil, fmt.Errorf("--redis-url: %w", err)
	}
	return b, func() { _ = b.Close() }, nil
}
