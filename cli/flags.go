package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/metrics"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// Config is what the command line sets. Broker comes from the environment
// (broker.ConfigFromEnv: $GOTASKS_REDIS_URL, $GOTASKS_RESULT_TTL, ...)
// and then from the flags, which win; the rest from the flags alone
// (the dashboard token also from $GOTASKS_DASHBOARD_TOKEN).
type Config struct {
	Broker broker.Config

	Queues          []string // empty: every queue ("*")
	Exclude         []string // with every queue
	Concurrency     int
	Prefetch        int
	QueueOrder      string         // priority, weighted or strict
	Weights         map[string]int // for --queue-order weighted
	WorkerID        string         // empty: the worker's default
	MaxTasks        int
	Batch           bool
	ShutdownTimeout time.Duration
	LeaseDuration   time.Duration
	NoStartupDelay  bool
	NoScheduler     bool
	LogFormat       string // text or json
	LogLevel        string // debug, info, warn or error

	// HealthAddr is where the health server listens (host:port, ":8080");
	// empty: none. See worker.HealthHandler.
	HealthAddr string
	// MetricsAddr is where Prometheus metrics are served at /metrics;
	// empty: none. See package metrics.
	MetricsAddr string
	// DashboardAddr is where the web dashboard is served (":8080" listens
	// on 127.0.0.1 only, see dashboard.ListenAddr); empty: none.
	DashboardAddr string
	// DashboardToken, if set, is required by the dashboard (never logged).
	DashboardToken string
}

// EnvDashboardToken is the default of --dashboard-token.
const EnvDashboardToken = "GOTASKS_DASHBOARD_TOKEN"

// MinLease is the shortest --lease: a lease is renewed every third of it,
// and a renewal that takes longer than the rest of the lease loses the
// task to another worker.
const MinLease = time.Second

// MaxWorkerIDLen bounds --worker-id (it is stored with every attempt).
const MaxWorkerIDLen = 64

// A flagDef is one flag of the command line. Commands pick theirs by
// name (see command.flags), so that a flag means the same everywhere.
type flagDef struct {
	name  string
	arg   string // what its value is, in the help ("URL"); "" for a boolean flag
	usage string
	env   string // the variable it overrides, if any
	// def is the default as the help shows it (nil: none), for command
	// cmd; it is called only when the help is printed.
	def  func(cmd string) string
	bind func(fs *flag.FlagSet, name string, c *Config)
}

// brokerFlag sets a field of a broker.Config through its variable's
// parser (broker.Config.Set), so that a flag and its variable take the
// same values.
type brokerFlag struct {
	c        *broker.Config
	variable string
	boolean  bool
}

func (f brokerFlag) String() string     { return "" }
func (f brokerFlag) Set(v string) error { return f.c.Set(f.variable, v) }
func (f brokerFlag) IsBoolFlag() bool   { return f.boolean }

// listFlag collects a repeatable, comma-separated flag; an empty name in
// it (--queue ”, --queue a,,b) is an error.
type listFlag struct{ l *[]string }

func (f listFlag) String() string { return "" }

// weightsFlag reads queue=weight pairs, comma-separated or repeated.
type weightsFlag struct{ m *map[string]int }

func (f weightsFlag) String() string { return "" }

func (f weightsFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		q, w, ok := strings.Cut(strings.TrimSpace(s), "=")
		n, err := strconv.Atoi(w)
		if !ok || q == "" || err != nil || n < 1 {
			return fmt.Errorf("%q is not queue=weight with a weight of 1 or more (e.g. critical=6,default=3,low=1)", s)
		}
		if *f.m == nil {
			*f.m = map[string]int{}
		}
		(*f.m)[q] = n
	}
	return nil
}

func (f listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			return fmt.Errorf("an empty queue name in %q", v)
		}
		*f.l = append(*f.l, s)
	}
	return nil
}

// fromEnv is the default text of a flag that reads a variable: its value
// (secret: only that it is set), else def.
func fromEnv(variable, def string, secret bool) func(string) string {
	return func(string) string {
		v := os.Getenv(variable)
		switch {
		case v == "" && def == "":
			return "$" + variable
		case v == "":
			return "$" + variable + ", else " + def
		case secret:
			return "$" + variable + " (set)"
		case variable == broker.EnvRedisURL:
			v = broker.RedactURL(v)
		}
		return v + " from $" + variable
	}
}

func fixed(s string) func(string) string { return func(string) string { return s } }

func brokerDef(name, arg, variable, def, usage string) flagDef {
	return flagDef{name: name, arg: arg, env: variable, usage: usage, def: fromEnv(variable, def, variable == broker.EnvRedisPassword),
		bind: func(fs *flag.FlagSet, name string, c *Config) {
			fs.Var(brokerFlag{&c.Broker, variable, arg == ""}, name, usage)
		}}
}

// flagDefs are every flag of every command, in the order helps list them.
var flagDefs = []flagDef{
	brokerDef("redis-url", "URL", broker.EnvRedisURL, broker.DefaultRedisURL,
		"Redis: redis://[user:password@]host:port/db, rediss:// for TLS, redis+cluster://host:port,host:port,... for Redis Cluster, redis+sentinel://host:port,host:port,.../master-name[/db] for Sentinel; memory:// starts an embedded, empty in-memory Redis (not for admin)"),
	brokerDef("redis-username", "USER", broker.EnvRedisUsername, "the URL's, else the default user", "Redis ACL user (overrides the URL's)"),
	brokerDef("redis-password", "PASSWORD", broker.EnvRedisPassword, "the URL's",
		"Redis password (overrides the URL's); prefer the environment variable, which other users cannot see in the process list"),
	brokerDef("tls-ca", "FILE", broker.EnvTLSCA, "the system's CAs", "PEM file of the CAs that verify the Redis server's certificate; needs rediss://"),
	brokerDef("tls-cert", "FILE", broker.EnvTLSCert, "none", "PEM client certificate, for a Redis with tls-auth-clients; needs rediss://"),
	brokerDef("tls-key", "FILE", broker.EnvTLSKey, "in the --tls-cert file", "PEM key of --tls-cert"),
	brokerDef("tls-server-name", "NAME", broker.EnvTLSServerName, "the URL's host", "name to verify the server's certificate against"),
	brokerDef("tls-skip-verify", "", broker.EnvTLSSkipVerify, "false",
		"do not verify the server's certificate: FOR TESTING ONLY (encrypted, but anyone in between can read it)"),
	brokerDef("prefix", "PREFIX", broker.EnvPrefix, broker.DefaultPrefix, "key prefix, to share one Redis between applications (producers must use the same)"),
	brokerDef("result-ttl", "DURATION", broker.EnvResultTTL, "24h", "how long finished results are kept, for tasks whose producer did not choose (a producer's ResultTTL other than 24h travels with its tasks and wins)"),
	brokerDef("failed-ttl", "DURATION", broker.EnvFailedTTL, "720h", "how long FAILED results are kept (the dead-letter set: admin tasks --state failed, admin retry)"),
	brokerDef("serializer", "NAME", broker.EnvSerializer, "msgpack", "msgpack or json: how tasks this process enqueues (periodic ones) encode their arguments"),
	brokerDef("max-args-size", "BYTES", broker.EnvMaxArgsSize, strconv.Itoa(task.DefaultMaxArgsSize), "largest encoded arguments of a task this process enqueues"),
	brokerDef("wait-replicas", "N", broker.EnvWaitReplicas, "0", "after each enqueue of this process, wait until this many replicas have it (see broker.Options.WaitReplicas)"),
	brokerDef("wait-timeout", "DURATION", broker.EnvWaitTimeout, broker.DefaultWaitTimeout.String(), "how long an enqueue waits for --wait-replicas"),

	{name: "queue", arg: "NAMES", def: fixed("*, every queue"),
		usage: "queues to serve; repeat or separate with commas; * serves every queue",
		bind:  func(fs *flag.FlagSet, name string, c *Config) { fs.Var(listFlag{&c.Queues}, name, "") }},
	{name: "exclude-queue", arg: "NAMES", usage: "queues not to serve, with --queue '*' (the default); repeatable",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.Var(listFlag{&c.Exclude}, name, "") }},
	{name: "concurrency", arg: "N", def: fixed("the number of CPUs, " + strconv.Itoa(runtime.NumCPU())), usage: "tasks run at once",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.IntVar(&c.Concurrency, name, runtime.NumCPU(), "") }},
	{name: "queue-order", arg: "ORDER", def: fixed("priority"),
		usage: "with several queues: priority (the best task of any queue first), weighted (each queue's share by --weights) or strict (in --queue's order)",
		bind:  func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.QueueOrder, name, "priority", "") }},
	{name: "weights", arg: "Q=N,...", def: fixed("1 each"), usage: "the queues' weights for --queue-order weighted, e.g. critical=6,default=3,low=1; repeatable",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.Var(weightsFlag{&c.Weights}, name, "") }},
	{name: "prefetch", arg: "N", def: fixed("max(4 x concurrency, 32)"),
		usage: "most tasks claimed ahead of those running, for short tasks (tasks that take longer than a claim get none); -1: none",
		bind:  func(fs *flag.FlagSet, name string, c *Config) { fs.IntVar(&c.Prefetch, name, 0, "") }},
	{name: "worker-id", arg: "ID", def: fixed("hostname-pid-random"), usage: "worker id recorded in results, 1 to 64 characters",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.WorkerID, name, "", "") }},
	{name: "max-tasks", arg: "N", def: fixed("0, no limit"), usage: "exit after running this many tasks",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.IntVar(&c.MaxTasks, name, 0, "") }},
	{name: "batch", usage: "exit once the queues have no ready task (for cron-style runs)",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.BoolVar(&c.Batch, name, false, "") }},
	{name: "shutdown-timeout", arg: "DURATION", def: fixed(worker.DefaultShutdownTimeout.String()),
		usage: "on SIGINT/SIGTERM, how long running tasks may finish before they are handed back to their queue",
		bind: func(fs *flag.FlagSet, name string, c *Config) {
			fs.DurationVar(&c.ShutdownTimeout, name, worker.DefaultShutdownTimeout, "")
		}},
	{name: "lease", arg: "DURATION", def: fixed(worker.DefaultLeaseDuration.String()),
		usage: "a task whose worker stops renewing its lease for this long runs again elsewhere; at least " + MinLease.String(),
		bind: func(fs *flag.FlagSet, name string, c *Config) {
			fs.DurationVar(&c.LeaseDuration, name, worker.DefaultLeaseDuration, "")
		}},
	{name: "no-startup-delay", usage: "start at once instead of after a random delay of up to 1s (which spreads out many pods starting together)",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.BoolVar(&c.NoStartupDelay, name, false, "") }},
	{name: "no-scheduler", usage: "do not promote deferred tasks or requeue expired leases in this process",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.BoolVar(&c.NoScheduler, name, false, "") }},
	{name: "log-format", arg: "FORMAT", def: fixed("text"), usage: "text or json",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.LogFormat, name, "text", "") }},
	{name: "log-level", arg: "LEVEL", def: fixed("info"), usage: "debug, info, warn or error",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.LogLevel, name, "info", "") }},
	{name: "health-addr", arg: "ADDR", def: fixed("off"),
		usage: "serve " + worker.LivenessPath + " (liveness: the process runs) and " + worker.ReadinessPath + " (readiness: Redis answers and the worker is not shutting down) over HTTP on this host:port, e.g. :8080",
		bind:  func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.HealthAddr, name, "", "") }},
	{name: "metrics-addr", arg: "ADDR", def: fixed("off"), usage: "serve Prometheus metrics at " + metrics.Path + " over HTTP on this host:port, e.g. :9090",
		bind: func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.MetricsAddr, name, "", "") }},
	{name: "dashboard-addr", arg: "ADDR",
		def: func(cmd string) string {
			if cmd == "dashboard" {
				return ":8080"
			}
			return "off"
		},
		usage: "serve the web dashboard over HTTP on this host:port; a port alone (:8080) listens on 127.0.0.1 only, give a host (0.0.0.0:8080) to serve others, with --dashboard-token",
		bind:  func(fs *flag.FlagSet, name string, c *Config) { fs.StringVar(&c.DashboardAddr, name, "", "") }},
	{name: "dashboard-token", arg: "TOKEN", env: EnvDashboardToken, def: fromEnv(EnvDashboardToken, "none", true),
		usage: "token the dashboard requires (bearer header or its login form); prefer the environment variable, which other users cannot see in the process list",
		bind: func(fs *flag.FlagSet, name string, c *Config) {
			fs.StringVar(&c.DashboardToken, name, os.Getenv(EnvDashboardToken), "")
		}},
}

func lookupFlag(name string) (flagDef, bool) {
	i := slices.IndexFunc(flagDefs, func(d flagDef) bool { return d.name == name })
	if i < 0 {
		return flagDef{}, false
	}
	return flagDefs[i], true
}

// Flag groups, as commands use them.
var (
	connFlags = []string{"redis-url", "redis-username", "redis-password", "tls-ca", "tls-cert", "tls-key",
		"tls-server-name", "tls-skip-verify", "prefix"}
	logFlags       = []string{"log-format", "log-level"}
	dashboardFlags = []string{"dashboard-addr", "dashboard-token"}
	runFlags       = slices.Concat(connFlags,
		[]string{"result-ttl", "failed-ttl", "serializer", "max-args-size", "wait-replicas", "wait-timeout",
			"queue", "exclude-queue", "queue-order", "weights", "concurrency", "prefetch", "worker-id", "max-tasks", "batch",
			"shutdown-timeout", "lease", "no-startup-delay", "no-scheduler"},
		logFlags, []string{"health-addr", "metrics-addr"}, dashboardFlags)
	dashboardCmdFlags = slices.Concat(connFlags, []string{"result-ttl"}, logFlags, dashboardFlags)
)

// flagSet is the parsed flags of one command.
type flagSet struct {
	cmd   string // "run", "dashboard", "admin show", ...
	names []string
	fs    *flag.FlagSet
	cfg   *Config
	env   error // the environment's errors (broker.ConfigFromEnv)
	// owners lists the commands that have a flag (for the error of a flag
	// that is not this command's).
	owners func(flag string) []string
}

// newFlagSet returns the flags names of cmd, bound to a Config that holds
// the environment's settings and the flags' defaults.
func newFlagSet(cmd string, names []string) *flagSet {
	bc, envErr := broker.ConfigFromEnv()
	s := &flagSet{cmd: cmd, names: names, fs: flag.NewFlagSet(cmd, flag.ContinueOnError), cfg: &Config{Broker: bc}, env: envErr,
		owners: Program{}.flagOwners}
	s.fs.SetOutput(io.Discard) // errors and help are printed by the caller
	s.fs.Usage = func() {}
	for _, n := range names {
		d, ok := lookupFlag(n)
		if !ok {
			panic("cli: no flag " + n)
		}
		d.bind(s.fs, n, s.cfg)
	}
	return s
}

// given reports whether the command line set flag name.
func (s *flagSet) given(name string) bool {
	set := false
	s.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// source names where a setting came from, for errors: the flag if given,
// else its variable.
func (s *flagSet) source(name string) string {
	if d, ok := lookupFlag(name); ok && d.env != "" && !s.given(name) && os.Getenv(d.env) != "" {
		return "$" + d.env
	}
	return "--" + name
}

// parseError turns an error of flag.Parse into one for people: a flag
// that is not the command's says so, and which commands have it.
func (s *flagSet) parseError(err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return errors.New(strings.Replace(err.Error(), "flag -", "flag --", 1))
	}
	name = strings.TrimLeft(name, "-")
	if owners := s.owners(name); len(owners) > 0 {
		return fmt.Errorf("--%s is not a flag of %s (it is a flag of: %s)", name, s.cmd, strings.Join(owners, ", "))
	}
	return fmt.Errorf("unknown flag --%s", name)
}

// printFlags writes the help of the flags names (of flagDefs) for command
// cmd, each default once.
func printFlags(w io.Writer, cmd string, names []string) {
	for _, n := range names {
		if d, ok := lookupFlag(n); ok {
			def := ""
			if d.def != nil {
				def = d.def(cmd)
			}
			printFlag(w, n, d.arg, d.usage, def)
		}
	}
}

// printFlag writes the help of one flag; def is its default as people
// read it ("": none shown).
func printFlag(w io.Writer, name, arg, usage, def string) {
	head := "  --" + name
	if arg != "" {
		head += " " + arg
	}
	if def != "" {
		usage += " (default: " + def + ")"
	}
	fmt.Fprintln(w, head)
	line := "       "
	for _, word := range strings.Fields(usage) {
		if len(line)+1+len(word) > 79 && len(line) > 8 {
			fmt.Fprintln(w, line)
			line = "       "
		}
		line += " " + word
	}
	fmt.Fprintln(w, line)
}

// ParseFlags parses the flags of the worker (args without the program
// name and without a command), over the environment's settings. With -h
// or --help it prints the worker's help to out and returns flag.ErrHelp.
// Its errors name the flag, or the variable, that is wrong.
func ParseFlags(name string, args []string, out io.Writer) (Config, error) {
	s := newFlagSet("run", runFlags)
	if err := s.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p := Program{}
			run, _ := p.spec("run")
			p.commandHelp(out, name, run)
		}
		return *s.cfg, err
	}
	return *s.cfg, nil
}

// parse parses args, which may not hold arguments other than flags, and
// checks the result.
func (s *flagSet) parse(args []string) error {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return s.parseError(err)
	}
	if s.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", s.fs.Arg(0))
	}
	return s.check()
}

// check validates the flags and the environment once parsed: a value that
// is surely a mistake is an error naming its flag or variable.
func (s *flagSet) check() error {
	if s.env != nil {
		return s.env
	}
	c := s.cfg
	has := func(n string) bool { return slices.Contains(s.names, n) }
	if err := s.checkConn(); err != nil {
		return err
	}
	if has("exclude-queue") && len(c.Exclude) > 0 && len(c.Queues) > 0 && !slices.Contains(c.Queues, "*") {
		return fmt.Errorf("--exclude-queue applies only with --queue '*' (every queue); --queue %s serves only those queues",
			strings.Join(c.Queues, ","))
	}
	if has("queue-order") && !slices.Contains([]string{"priority", "weighted", "strict"}, c.QueueOrder) {
		return fmt.Errorf("--queue-order must be priority, weighted or strict, not %q", c.QueueOrder)
	}
	if has("weights") && len(c.Weights) > 0 && c.QueueOrder != "weighted" {
		return fmt.Errorf("--weights applies only with --queue-order weighted")
	}
	if has("prefetch") && c.Prefetch < -1 {
		return fmt.Errorf("--prefetch must be -1 (none), 0 (the default) or more, not %d", c.Prefetch)
	}
	if has("concurrency") && c.Concurrency < 1 {
		return fmt.Errorf("--concurrency must be at least 1, not %d", c.Concurrency)
	}
	if has("max-tasks") && c.MaxTasks < 0 {
		return fmt.Errorf("--max-tasks must not be negative, not %d", c.MaxTasks)
	}
	if has("lease") && c.LeaseDuration < MinLease {
		return fmt.Errorf("--lease must be at least %v (it is renewed every third of it), not %v", MinLease, c.LeaseDuration)
	}
	if has("shutdown-timeout") && c.ShutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout must be positive, not %v", c.ShutdownTimeout)
	}
	if s.given("worker-id") {
		switch n := utf8.RuneCountInString(c.WorkerID); {
		case n == 0:
			return errors.New("--worker-id must not be empty (leave it out for the default, hostname-pid-random)")
		case n > MaxWorkerIDLen:
			return fmt.Errorf("--worker-id must be at most %d characters, not %d", MaxWorkerIDLen, n)
		case c.WorkerID == task.UndeliveredWorker:
			return fmt.Errorf("--worker-id %q stands for a claim handed back unstarted: choose another", c.WorkerID)
		}
	}
	if has("log-format") && c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if has("log-level") {
		if _, err := parseLevel(c.LogLevel); err != nil {
			return err
		}
	}
	for _, a := range []struct{ name, addr string }{{"health-addr", c.HealthAddr}, {"metrics-addr", c.MetricsAddr}} {
		if a.addr == "" {
			continue
		}
		// "8080" alone would only fail later, at listen time.
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("--%s must be host:port or :port, not %q: %w", a.name, a.addr, err)
		}
	}
	if c.DashboardAddr != "" {
		if _, _, err := dashboard.ListenAddr(c.DashboardAddr); err != nil {
			return fmt.Errorf("--dashboard-addr: %w", err)
		}
	}
	return nil
}

// checkConn checks the connection settings: a URL that does not parse, TLS
// settings without TLS, TLS files that cannot be read. Errors never show
// a password.
func (s *flagSet) checkConn() error {
	bc := s.cfg.Broker
	if !slices.Contains(s.names, "redis-url") {
		return nil
	}
	tls := ""
	for _, n := range []string{"tls-ca", "tls-cert", "tls-key", "tls-server-name", "tls-skip-verify"} {
		d, _ := lookupFlag(n)
		if s.given(n) || os.Getenv(d.env) != "" {
			tls = s.source(n)
			break
		}
	}
	if isMemoryURL(bc.URL) {
		if tls != "" {
			return fmt.Errorf("%s: memory:// takes no TLS settings", tls)
		}
		return nil
	}
	// rediss://, rediss+cluster://, rediss-sentinel://, ...
	if scheme, _, _ := strings.Cut(bc.URL, "://"); tls != "" && !strings.HasPrefix(strings.ToLower(scheme), "rediss") {
		return fmt.Errorf("%s needs a rediss:// URL, not %s (%s)", tls, broker.RedactURL(bc.URL), s.source("redis-url"))
	}
	if bc.Conn.KeyFile != "" && bc.Conn.CertFile == "" {
		return fmt.Errorf("%s needs --tls-cert", s.source("tls-key"))
	}
	// A bad URL is a bad flag, reported redacted before anything else can
	// show it; then the TLS files.
	client, err := broker.NewClient(bc.URL, broker.ConnOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", s.source("redis-url"), err)
	}
	_ = client.Close() // it never connected
	if client, err = broker.NewClient(bc.URL, bc.Conn); err != nil {
		return fmt.Errorf("connection settings: %w", err)
	}
	_ = client.Close()
	return nil
}
