package worker

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/metrics"
	"github.com/gotasks/gotasks/task"
)

// Config is what the worker command's flags set; Main parses it from the
// command line and RunConfig runs it.
type Config struct {
	RedisURL        string
	Prefix          string
	Queues          []string
	Exclude         []string
	Concurrency     int
	WorkerID        string
	MaxTasks        int
	Batch           bool
	ShutdownTimeout time.Duration
	LeaseDuration   time.Duration
	LogFormat       string // text or json
	LogLevel        string // debug, info, warn, error
	NoStartupDelay  bool
	NoScheduler     bool
	// HealthAddr is where the health server listens (host:port, ":8080");
	// empty: no health server. See HealthHandler.
	HealthAddr string
	// MetricsAddr is where Prometheus metrics are served at /metrics
	// (host:port, ":9090"); empty: no metrics server. See package metrics.
	MetricsAddr string
	// DashboardAddr is where the web dashboard is served (":8080" listens
	// on 127.0.0.1 only, see dashboard.ListenAddr); empty: none.
	DashboardAddr string
	// DashboardToken, if set, is required by the dashboard (never logged).
	DashboardToken string

	// Connection settings that override the URL's (see broker.ConnOptions).
	RedisUsername string
	RedisPassword string // never logged nor printed
	TLSCA         string
	TLSCert       string
	TLSKey        string
	TLSServerName string
	TLSSkipVerify bool // for tests only
}

// ConnOptions returns the connection settings of the flags, with a pool of
// at least poolSize connections.
func (c Config) ConnOptions(poolSize int) broker.ConnOptions {
	return broker.ConnOptions{
		Username: c.RedisUsername, Password: c.RedisPassword,
		CAFile: c.TLSCA, CertFile: c.TLSCert, KeyFile: c.TLSKey, ServerName: c.TLSServerName,
		InsecureSkipVerify: c.TLSSkipVerify, PoolSize: poolSize,
	}
}

func hasScheme(url, scheme string) bool {
	s, _, ok := strings.Cut(url, "://")
	return ok && strings.EqualFold(s, scheme)
}

func isMemoryURL(url string) bool { return hasScheme(url, "memory") }

func (c Config) usesTLSFlags() bool {
	return c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSServerName != "" || c.TLSSkipVerify
}

// listFlag collects a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// ParseFlags parses the worker command's flags (args without the program
// name). It returns flag.ErrHelp for -h/--help, after printing the usage to
// out.
func ParseFlags(name string, args []string, out io.Writer) (Config, error) {
	c := Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	defURL := os.Getenv("GOTASKS_REDIS_URL")
	if defURL == "" {
		defURL = "redis://127.0.0.1:6379/0"
	}
	var queues, exclude listFlag
	fs.StringVar(&c.RedisURL, "redis-url", defURL, "Redis to serve: redis://[user:password@]host:port/db, rediss:// for TLS, redis+cluster://host:port,host:port,... for Redis Cluster, redis+sentinel://host:port,host:port,.../master-name[/db] for Sentinel, or memory:// for an embedded in-memory Redis (default from $GOTASKS_REDIS_URL)")
	// The default may hold a password: --help shows it redacted.
	fs.Lookup("redis-url").DefValue = broker.RedactURL(defURL)
	fs.StringVar(&c.RedisUsername, "redis-username", "", "Redis ACL user (overrides the URL's; default: the URL's, else the default user)")
	fs.StringVar(&c.RedisPassword, "redis-password", "", "Redis password (overrides the URL's; default from $GOTASKS_REDIS_PASSWORD); prefer the environment variable, which other users cannot see in the process list")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM file of the CAs that verify the Redis server's certificate (default: the system's); needs rediss://")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM client certificate, for a Redis with tls-auth-clients; needs rediss://")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM key of --tls-cert (default: in the --tls-cert file)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", "", "name to verify the server's certificate against (default: the URL's host)")
	fs.BoolVar(&c.TLSSkipVerify, "tls-skip-verify", false, "do not verify the server's certificate: FOR TESTING ONLY (encrypted, but anyone in between can read it)")
	fs.StringVar(&c.Prefix, "prefix", broker.DefaultPrefix, "key prefix, to share one Redis between applications")
	fs.Var(&queues, "queue", "queue to serve; repeat or separate with commas; * serves every queue (default *)")
	fs.Var(&exclude, "exclude-queue", "queue not to serve with --queue '*'; repeatable")
	fs.IntVar(&c.Concurrency, "concurrency", runtime.NumCPU(), "tasks run at once")
	fs.StringVar(&c.WorkerID, "worker-id", "", "worker id recorded in results (default hostname-pid-random)")
	fs.IntVar(&c.MaxTasks, "max-tasks", 0, "exit after running this many tasks (0: no limit)")
	fs.BoolVar(&c.Batch, "batch", false, "exit once the queues have no ready task (for cron-style runs)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGINT/SIGTERM, how long running tasks may finish before they are handed back to their queue")
	fs.DurationVar(&c.LeaseDuration, "lease", DefaultLeaseDuration, "a task whose worker stops renewing its lease for this long runs again elsewhere")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.NoStartupDelay, "no-startup-delay", false, "start at once instead of after a random delay of up to 1s (which spreads out many pods starting together)")
	fs.BoolVar(&c.NoScheduler, "no-scheduler", false, "do not promote deferred tasks or requeue expired leases in this process")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at "+metrics.Path+" over HTTP on this host:port, e.g. :9090 (default: off)")
	fs.StringVar(&c.DashboardAddr, "dashboard-addr", "", "serve the web dashboard over HTTP on this host:port; a port alone (:8080) listens on 127.0.0.1 only, give a host (0.0.0.0:8080) to serve others, with --dashboard-token (default: off)")
	fs.StringVar(&c.DashboardToken, "dashboard-token", "", "token the dashboard requires (bearer header or its login form); default from $GOTASKS_DASHBOARD_TOKEN, which other users cannot see in the process list")
	fs.StringVar(&c.HealthAddr, "health-addr", "", "serve "+LivenessPath+" (liveness: the process runs) and "+ReadinessPath+" (readiness: Redis answers and the worker is not shutting down) over HTTP on this host:port, e.g. :8080 (default: off)")
	fs.Usage = func() {
		fmt.Fprintf(out, `Usage: %s [flags]

Runs gotasks tasks from Redis: claims ready tasks from the queues, runs them
with --concurrency goroutines and stores their results. The first SIGINT or
SIGTERM stops claiming and lets running tasks finish for --shutdown-timeout,
then hands the rest back to their queue; a second one exits at once (those
tasks then return after --lease).

Flags:
`, name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	c.Queues, c.Exclude = queues, exclude
	passwordSet, tokenSet := false, false
	fs.Visit(func(f *flag.Flag) {
		passwordSet = passwordSet || f.Name == "redis-password"
		tokenSet = tokenSet || f.Name == "dashboard-token"
	})
	if !passwordSet {
		c.RedisPassword = os.Getenv("GOTASKS_REDIS_PASSWORD")
	}
	if !tokenSet {
		c.DashboardToken = os.Getenv("GOTASKS_DASHBOARD_TOKEN")
	}
	// rediss://, rediss+cluster://, rediss-sentinel://, ...
	if scheme, _, _ := strings.Cut(c.RedisURL, "://"); c.usesTLSFlags() && !strings.HasPrefix(strings.ToLower(scheme), "rediss") {
		return c, fmt.Errorf("--tls-* flags need a rediss:// --redis-url, not %s", broker.RedactURL(c.RedisURL))
	}
	if c.TLSKey != "" && c.TLSCert == "" {
		return c, fmt.Errorf("--tls-key needs --tls-cert")
	}
	if !isMemoryURL(c.RedisURL) {
		// A bad URL is a bad flag, reported redacted before anything else
		// can show it.
		client, err := broker.NewClient(c.RedisURL, broker.ConnOptions{})
		if err != nil {
			return c, fmt.Errorf("--redis-url %w", err)
		}
		_ = client.Close() // it never connected

	}
	if c.Concurrency <= 0 {
		return c, fmt.Errorf("--concurrency must be at least 1, not %d", c.Concurrency)
	}
	if c.MaxTasks < 0 {
		return c, fmt.Errorf("--max-tasks must not be negative")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return c, err
	}
	if c.HealthAddr != "" {
		// "8080" alone would only fail later, at listen time.
		if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
			return c, fmt.Errorf("--health-addr must be host:port or :port, not %q: %w", c.HealthAddr, err)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return c, fmt.Errorf("--metrics-addr must be host:port or :port, not %q: %w", c.MetricsAddr, err)
		}
	}
	if c.DashboardAddr != "" {
		if _, _, err := dashboard.ListenAddr(c.DashboardAddr); err != nil {
			return c, fmt.Errorf("--dashboard-addr: %w", err)
		}
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// NewLogger returns the logger the flags ask for, writing to w.
func (c Config) NewLogger(w io.Writer) *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	ho := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// Main is the worker command: a user's own main imports its task
// definitions (so they are registered) and calls
//
//	os.Exit(worker.Main(os.Args))
//
// It returns the process exit code: 0 after a clean stop, 2 for bad flags,
// 1 for other errors. `worker admin <command>` runs Admin instead.
func Main(args []string) int {
	name := "worker"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if len(args) > 0 && args[0] == "admin" {
		return adminMain(args[1:])
	}
	dashboardOnly := len(args) > 0 && args[0] == "dashboard"
	if dashboardOnly {
		name, args = name+" dashboard", args[1:]
	}
	cfg, err := ParseFlags(name, args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	log := cfg.NewLogger(os.Stderr)
	ctx, stop := SignalContext(log)
	defer stop()
	run := RunConfig
	if dashboardOnly {
		run = RunDashboard
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM;
// a second one exits the process at once with status 1.
func SignalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			log.Info("signal received: draining; send it again to exit at once", "signal", s.String())
			cancel()
		case <-ctx.Done():
			return
		}
		s := <-ch
		log.Warn("second signal: exiting now; running tasks return to their queues when their leases expire", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel()
	}
}

// OpenRedis opens the broker for a --redis-url. memory:// starts an embedded
// in-memory Redis (miniredis) that lives until the returned close function
// is called; its address is logged so that producers can reach it.
func OpenRedis(url string, opts broker.Options, poolSize int, log *slog.Logger) (*broker.Redis, func(), error) {
	return OpenRedisWith(url, opts, broker.ConnOptions{PoolSize: poolSize}, log)
}

// OpenRedisWith is OpenRedis with connection settings (credentials, TLS)
// that override the URL's. The embedded memory:// Redis has no password and
// no TLS: credentials are ignored, TLS settings are an error.
func OpenRedisWith(url string, opts broker.Options, conn broker.ConnOptions, log *slog.Logger) (*broker.Redis, func(), error) {
	poolSize := conn.PoolSize
	if isMemoryURL(url) {
		if conn.TLS != nil || conn.CAFile != "" || conn.CertFile != "" || conn.KeyFile != "" || conn.ServerName != "" || conn.InsecureSkipVerify {
			return nil, nil, fmt.Errorf("--redis-url memory:// takes no TLS settings")
		}
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			return nil, nil, fmt.Errorf("start embedded redis: %w", err)
		}
		log.Info("embedded in-memory redis started (its data is lost on exit)", "addr", m.Addr())
		client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true, PoolSize: poolSize})
		return broker.New(client, opts), func() { _ = client.Close(); m.Close() }, nil
	}
	// Every running task may be writing its result while the fetcher and
	// the scheduler hold blocking connections: conn.PoolSize is a minimum.
	b, err := broker.OpenWith(url, opts, conn)
	if err != nil {
		// broker's errors carry the redacted URL, never the password.
		return nil, nil, fmt.Errorf("--redis-url: %w", err)
	}
	return b, func() { _ = b.Close() }, nil
}

// RunConfig runs a worker as configured until ctx is done (or --max-tasks
// / --batch say stop).
func RunConfig(ctx context.Context, cfg Config, log *slog.Logger) error {
	// Logs only ever show the URL redacted.
	url := broker.RedactURL(cfg.RedisURL)
	conn := cfg.ConnOptions(cfg.Concurrency + len(cfg.Queues) + 10)
	b, closeRedis, err := OpenRedisWith(cfg.RedisURL, broker.Options{Prefix: cfg.Prefix}, conn, log)
	if err != nil {
		return err
	}
	// Closing the client also ends the Redis calls that the shutdown left
	// behind (see shutdown in worker.go): it closes their connections.
	defer closeRedis()
	// Once ctx is done, the servers below stop within the worker's
	// shutdown window too (see shutdown.within).
	sd := newShutdown(ctx, shutdownTimeout(cfg.ShutdownTimeout))
	defer sd.release()
	if cfg.HealthAddr != "" {
		// Before the startup delay, so that probes answer from the start;
		// stopped (deferred) before Redis is closed.
		stopHealth, err := startHealthServer(cfg.HealthAddr, HealthHandler(b.Check, ctx.Done()), log)
		if err != nil {
			return err
		}
		defer sd.within(log, "health server", stopHealth)
	}
	if cfg.DashboardAddr != "" {
		stopDashboard, err := startDashboard(cfg, b, log)
		if err != nil {
			return err
		}
		defer sd.within(log, "dashboard", stopDashboard)
	}
	if !isMemoryURL(cfg.RedisURL) {
		var tlsConf *tls.Config
		var user, password string
		switch c := b.Client().(type) {
		case *redis.Client: // one Redis, or a failover client behind sentinels
			tlsConf, user, password = c.Options().TLSConfig, c.Options().Username, c.Options().Password
		case *redis.ClusterClient:
			tlsConf, user, password = c.Options().TLSConfig, c.Options().Username, c.Options().Password
		}
		log.Info("connecting to redis", "url", url, "tls", tlsConf != nil,
			"user", cmp.Or(user, "default"), "password_set", password != "")
		if tlsConf != nil && tlsConf.InsecureSkipVerify {
			log.Warn("the Redis server's TLS certificate is not verified (--tls-skip-verify or skip_verify): for testing only")
		}
	}
	if !cfg.NoStartupDelay {
		// Many pods starting at once would otherwise hit Redis together.
		select {
		case <-time.After(rand.N(time.Second)):
		case <-ctx.Done():
			return nil
		}
	}
	// go-redis ends a call only at its read timeout, not when ctx is
	// cancelled: a Redis that does not answer must not hold a SIGTERM that
	// long. A check left behind ends when the client is closed.
	checked := make(chan error, 1)
	go func() { checked <- b.Check(ctx) }()
	select {
	case err := <-checked:
		if err != nil {
			log.Warn("redis not reachable yet; the worker keeps trying", "url", url, "err", err)
		}
	case <-ctx.Done():
		return nil
	}
	if len(task.Registered()) == 0 {
		log.Warn("no tasks are defined in this program; every task will fail as unknown (import the packages that call task.Define)")
	}
	opts := Options{
		Queues: cfg.Queues, Exclude: cfg.Exclude, Concurrency: cfg.Concurrency, WorkerID: cfg.WorkerID,
		MaxTasks: cfg.MaxTasks, Batch: cfg.Batch, ShutdownTimeout: cfg.ShutdownTimeout,
		LeaseDuration: cfg.LeaseDuration, NoScheduler: cfg.NoScheduler, Logger: log,
	}
	var mc *metrics.Collector
	if cfg.MetricsAddr != "" {
		mc = metrics.New(b, metrics.Options{Queues: cfg.Queues, Logger: log})
		defer mc.Close()
		opts.OnRetry = mc.ObserveRetry
	}
	w := New(b, opts)
	if mc != nil {
		if err := mc.TrackWorker(w.ID(), cfg.Concurrency, w.InFlight); err != nil {
			return err
		}
		srv, err := mc.Serve(cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		log.Info("metrics server listening", "addr", srv.Addr(), "path", metrics.Path)
		// Stopped before Redis is closed (deferred earlier), so that no
		// scrape reads a closed client (unless one blocked on a Redis that
		// does not answer outlasts the shutdown).
		defer sd.within(log, "metrics server", func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("metrics server did not stop cleanly", "err", err)
			}
		})
	}
	return w.Run(ctx)
}

// shutdownTimeout is --shutdown-timeout, or its default (as in New).
func shutdownTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultShutdownTimeout
	}
	return d
}

// minStopWait is the least a goroutine or server that stops at once (an
// idle one) is waited for once the shutdown is over.
const minStopWait = 100 * time.Millisecond

// within runs stop, the shutdown of a server (which waits for the requests
// in flight), but once ctx is done waits for it only until the end of the
// shutdown (at least minStopWait): a request blocked on a Redis that does
// not answer must not hold the process. A stop left behind ends once
// closing the client has ended that request, or at its own timeout.
func (s *shutdown) within(log *slog.Logger, what string, stop func()) {
	if s.ctx.Err() == nil {
		stop()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	t := time.NewTimer(max(time.Until(s.end()), minStopWait))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn(what+" still waits for requests in flight; stopping without it", "shutdown_timeout", s.timeout)
	}
}
