package cli_test

import (
	"bytes"
	"errors"
	"flag"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/serializer"
)

func parse(t *testing.T, args ...string) (cli.Config, error) {
	t.Helper()
	return cli.ParseFlags("worker", args, &bytes.Buffer{})
}

func TestParseFlags(t *testing.T) {
	cleanEnv(t)
	cfg, err := parse(t,
		"--queue", "a,b", "--queue=c", "--concurrency", "7", "--worker-id", "w1",
		"--max-tasks", "9", "--batch", "--shutdown-timeout", "3s", "--lease", "4s", "--log-format", "json",
		"--log-level", "debug", "--no-startup-delay", "--prefix", "app", "--result-ttl", "168h", "--serializer", "json",
		"--max-args-size", "4096", "--wait-replicas", "1", "--wait-timeout", "250ms",
	)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Queues, []string{"a", "b", "c"}) || len(cfg.Exclude) != 0 {
		t.Errorf("queues %v exclude %v", cfg.Queues, cfg.Exclude)
	}
	all, err := parse(t, "--queue", "*", "-exclude-queue", "d", "--exclude-queue=e,f")
	if err != nil || !slices.Equal(all.Queues, []string{"*"}) || !slices.Equal(all.Exclude, []string{"d", "e", "f"}) {
		t.Errorf("--queue '*' with exclusions: queues %v exclude %v, %v", all.Queues, all.Exclude, err)
	}
	if cfg.Concurrency != 7 || cfg.WorkerID != "w1" || cfg.MaxTasks != 9 || !cfg.Batch ||
		cfg.ShutdownTimeout != 3*time.Second || cfg.LeaseDuration != 4*time.Second ||
		cfg.LogFormat != "json" || cfg.LogLevel != "debug" || !cfg.NoStartupDelay {
		t.Errorf("cfg = %+v", cfg)
	}
	o := cfg.Broker.Options
	if o.Prefix != "app" || o.ResultTTL != 168*time.Hour || o.Serializer != (serializer.JSON{}) || o.MaxArgsSize != 4096 ||
		o.WaitReplicas != 1 || o.WaitTimeout != 250*time.Millisecond {
		t.Errorf("broker options = %+v", o)
	}
	if cfg.Broker.URL != broker.DefaultRedisURL {
		t.Errorf("default url = %q", cfg.Broker.URL)
	}
}

// The environment sets what broker.ConfigFromEnv reads; a flag wins over
// its variable.
func TestFlagsOverTheEnvironment(t *testing.T) {
	cleanEnv(t)
	t.Setenv("GOTASKS_REDIS_URL", "redis://example:6380/2")
	t.Setenv("GOTASKS_RESULT_TTL", "168h")
	t.Setenv("GOTASKS_SERIALIZER", "json")
	t.Setenv("GOTASKS_PREFIX", "env-prefix")
	t.Setenv("GOTASKS_WAIT_REPLICAS", "2")
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	want, err := broker.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker.URL != want.URL || !reflect.DeepEqual(cfg.Broker.Options, want.Options) || cfg.Broker.Conn != want.Conn {
		t.Errorf("the flags' defaults are not the environment's:\n%+v\n%+v", cfg.Broker, want)
	}
	if cfg.Broker.URL != "redis://example:6380/2" || cfg.Broker.Options.ResultTTL != 168*time.Hour || cfg.Broker.Options.Prefix != "env-prefix" {
		t.Errorf("from the environment: %+v", cfg.Broker)
	}
	cfg, err = parse(t, "--redis-url", "redis://other:1/0", "--result-ttl", "1h", "--serializer", "msgpack", "--prefix", "p", "--wait-replicas", "0")
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Broker.Options
	if cfg.Broker.URL != "redis://other:1/0" || o.ResultTTL != time.Hour || o.Serializer.Name() != "msgpack" || o.Prefix != "p" || o.WaitReplicas != 0 {
		t.Errorf("the flags must win over the environment: %+v", cfg.Broker)
	}
}

func TestPasswordFromEnvironment(t *testing.T) {
	cleanEnv(t)
	t.Setenv("GOTASKS_REDIS_PASSWORD", "from-env")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "from-env"},
		{[]string{"--redis-password", "from-flag"}, "from-flag"},
		{[]string{"--redis-password="}, ""}, // explicitly none
	} {
		cfg, err := parse(t, c.args...)
		if err != nil || cfg.Broker.Conn.Password != c.want {
			t.Errorf("%v: password %q, %v; want %q", c.args, cfg.Broker.Conn.Password, err, c.want)
		}
	}
}

// A value that is surely a mistake is refused, naming its flag or
// variable.
func TestBadValuesAreRefused(t *testing.T) {
	cleanEnv(t)
	for _, c := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{[]string{"--concurrency", "0"}, [2]string{}, "--concurrency"},
		{[]string{"--prefetch", "-2"}, [2]string{}, "--prefetch"},
		{[]string{"--queue-order", "random"}, [2]string{}, "--queue-order"},
		{[]string{"--weights", "a=0"}, [2]string{}, "--weights"},
		{[]string{"--weights", "a=2"}, [2]string{}, "--weights applies only"},
		{[]string{"--max-tasks", "-1"}, [2]string{}, "--max-tasks"},
		{[]string{"--log-format", "xml"}, [2]string{}, "--log-format"},
		{[]string{"--log-level", "loud"}, [2]string{}, "--log-level"},
		{[]string{"stray"}, [2]string{}, "unexpected argument"},
		{[]string{"--queue", ""}, [2]string{}, "--queue"},
		{[]string{"--queue", ","}, [2]string{}, "--queue"},
		{[]string{"--queue", "a,,b"}, [2]string{}, "--queue"},
		{[]string{"--exclude-queue", ""}, [2]string{}, "--exclude-queue"},
		{[]string{"--queue", "a", "--exclude-queue", "b"}, [2]string{}, "--exclude-queue applies only with --queue '*'"},
		{[]string{"--lease", "0"}, [2]string{}, "--lease must be at least 1s"},
		{[]string{"--lease", "1ms"}, [2]string{}, "--lease must be at least 1s"},
		{[]string{"--lease", "999ms"}, [2]string{}, "--lease"},
		{[]string{"--shutdown-timeout", "-1s"}, [2]string{}, "--shutdown-timeout must be positive"},
		{[]string{"--shutdown-timeout", "0"}, [2]string{}, "--shutdown-timeout"},
		{[]string{"--worker-id", ""}, [2]string{}, "--worker-id must not be empty"},
		{[]string{"--worker-id", strings.Repeat("w", 65)}, [2]string{}, "--worker-id must be at most 64"},
		{[]string{"--worker-id", "-"}, [2]string{}, "--worker-id"},
		{[]string{"--prefix", ""}, [2]string{}, "--prefix"},
		{[]string{"--result-ttl", "soon"}, [2]string{}, "--result-ttl"},
		{[]string{"--result-ttl", "0s"}, [2]string{}, "--result-ttl"},
		{[]string{"--serializer", "xml"}, [2]string{}, "--serializer"},
		{[]string{"--max-args-size", "0"}, [2]string{}, "--max-args-size"},
		{[]string{"--wait-replicas", "-1"}, [2]string{}, "--wait-replicas"},
		{[]string{"--wait-timeout", "0"}, [2]string{}, "--wait-timeout"},
		{nil, [2]string{"GOTASKS_RESULT_TTL", "a week"}, "$GOTASKS_RESULT_TTL"},
		{nil, [2]string{"GOTASKS_SERIALIZER", "yaml"}, "$GOTASKS_SERIALIZER"},
		{nil, [2]string{"GOTASKS_MAX_ARGS_SIZE", "1MiB"}, "$GOTASKS_MAX_ARGS_SIZE"},
		{nil, [2]string{"GOTASKS_WAIT_REPLICAS", "two"}, "$GOTASKS_WAIT_REPLICAS"},
		{nil, [2]string{"GOTASKS_WAIT_TIMEOUT", "1"}, "$GOTASKS_WAIT_TIMEOUT"},
		{nil, [2]string{"GOTASKS_TLS_SKIP_VERIFY", "maybe"}, "$GOTASKS_TLS_SKIP_VERIFY"},
		{nil, [2]string{"GOTASKS_TLS_CA", "/etc/ca.pem"}, "$GOTASKS_TLS_CA needs a rediss:// URL"},
	} {
		t.Run(strings.Join(c.args, " ")+c.env[0], func(t *testing.T) {
			if c.env[0] != "" {
				t.Setenv(c.env[0], c.env[1])
			}
			_, err := parse(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want one with %q", err, c.want)
			}
		})
	}
	// Accepted: the edges.
	for _, args := range [][]string{
		{"--lease", "1s"}, {"--worker-id", strings.Repeat("w", 64)}, {"--exclude-queue", "b"},
		{"--queue", "*", "--exclude-queue", "b"}, {"--queue", " a , b "},
	} {
		if _, err := parse(t, args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// The same checks through the real binary: exit 2 and the flag's name.
func TestBadValuesExitTwo(t *testing.T) {
	cleanEnv(t)
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--queue", ","}, nil, "--queue"},
		{[]string{"--lease", "1ms"}, nil, "--lease"},
		{[]string{"--worker-id", ""}, nil, "--worker-id"},
		{nil, []string{"GOTASKS_RESULT_TTL=forever"}, "$GOTASKS_RESULT_TTL"},
		{[]string{"dashboard"}, []string{"GOTASKS_PREFIX=p", "GOTASKS_WAIT_TIMEOUT=x"}, "$GOTASKS_WAIT_TIMEOUT"},
	} {
		code, _, errOut := runCLI(t, c.env, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v %v: exit %d, %q; want 2 and %q", c.env, c.args, code, errOut, c.want)
		}
	}
}

func TestHelpExplainsFlags(t *testing.T) {
	cleanEnv(t)
	var out bytes.Buffer
	_, err := cli.ParseFlags("worker", []string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"redis-url", "queue", "exclude-queue", "concurrency", "worker-id", "max-tasks",
		"batch", "shutdown-timeout", "log-format", "log-level", "no-startup-delay", "SIGTERM",
		"redis-username", "redis-password", "GOTASKS_REDIS_PASSWORD", "tls-ca", "tls-cert", "tls-key",
		"tls-server-name", "tls-skip-verify", "TESTING ONLY", "health-addr", "metrics-addr", "redis+cluster://",
		"redis+sentinel://", "result-ttl", "GOTASKS_RESULT_TTL", "serializer", "max-args-size", "wait-replicas", "wait-timeout"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("help does not mention %s", f)
		}
	}
	if strings.Contains(out.String(), "(default ") {
		t.Errorf("a default shown twice:\n%s", out.String())
	}
}

// TestHelpHidesSecrets: the defaults --help prints come from the
// environment, which may hold passwords.
func TestHelpHidesSecrets(t *testing.T) {
	cleanEnv(t)
	t.Setenv("GOTASKS_REDIS_URL", "redis://app:url-s3cret@redis.example:6379/0")
	t.Setenv("GOTASKS_REDIS_PASSWORD", "env-s3cret")
	t.Setenv("GOTASKS_DASHBOARD_TOKEN", "tok-s3cret")
	var out bytes.Buffer
	if _, err := cli.ParseFlags("worker", []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("--help shows a password:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "redis://app:xxxxx@redis.example:6379/0") {
		t.Errorf("--help does not show the redacted default URL:\n%s", out.String())
	}
}

func TestParseFlagsSecurity(t *testing.T) {
	cleanEnv(t)
	cfg, err := parse(t,
		"--redis-url", "rediss://redis.example:6380/1", "--redis-username", "app", "--redis-password", "s3cret",
		"--tls-server-name", "redis.internal", "--tls-skip-verify",
	)
	if err != nil {
		t.Fatal(err)
	}
	want := broker.ConnOptions{Username: "app", Password: "s3cret", ServerName: "redis.internal", InsecureSkipVerify: true}
	if got := cfg.Broker.Conn; got != want {
		t.Errorf("ConnOptions = %+v\nwant %+v", got, want)
	}
	cfg, err = parse(t, "--redis-url", "redis://h/0")
	if c := cfg.Broker.Conn; err != nil || c != (broker.ConnOptions{}) {
		t.Errorf("defaults: %v, %+v", err, c)
	}
}

func TestParseFlagsRejectsBadTLS(t *testing.T) {
	cleanEnv(t)
	for _, args := range [][]string{
		{"--redis-url", "redis://app:s3cret@h/0", "--tls-ca", "/etc/ca.pem"},
		{"--redis-url", "redis://app:s3cret@h/0", "--tls-skip-verify"},
		{"--redis-url", "memory://", "--tls-cert", "/etc/client.pem"},
		{"--tls-server-name", "x"}, // the default redis:// URL
		{"--redis-url", "rediss://h/0", "--tls-key", "/etc/client.key"},
		{"--redis-url", "rediss://app:s3cret@h/0", "--tls-ca", "/nonexistent/ca.pem"},
		{"--redis-url", "redis://app:s3cret@h:port/0"},
		{"--redis-url", "redis://app:s3/cret@h/0"},
		{"--redis-url", "redis://app:s3cret@h/0?colour=blue"},
		{"--redis-url", "rediss://app:s3cret@h/0?tls_ca=/nonexistent/ca.pem"},
	} {
		_, err := parse(t, args...)
		if err == nil {
			t.Errorf("%v: no error", args)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %q shows the password", args, err)
		}
	}
}

// TestTLSFlagsWithEveryTLSScheme: --tls-* flags go with any rediss URL
// (cluster and sentinel, either spelling) and with no plain one.
func TestTLSFlagsWithEveryTLSScheme(t *testing.T) {
	cleanEnv(t)
	for _, url := range []string{"rediss://h:6380/0", "rediss+cluster://n1,n2", "rediss-cluster://n1",
		"rediss+sentinel://s1/m", "rediss-sentinel://s1/m"} {
		if _, err := parse(t, "--redis-url", url, "--tls-server-name", "x"); err != nil {
			t.Errorf("%s with --tls-server-name: %v", url, err)
		}
	}
	for _, url := range []string{"redis://h/0", "redis+cluster://n1", "redis-sentinel://s1/m"} {
		if _, err := parse(t, "--redis-url", url, "--tls-server-name", "x"); err == nil {
			t.Errorf("%s with --tls-server-name: no error", url)
		}
	}
}

func TestParseFlagsServerAddrs(t *testing.T) {
	cleanEnv(t)
	cfg, err := parse(t)
	if err != nil || cfg.MetricsAddr != "" || cfg.HealthAddr != "" || cfg.DashboardAddr != "" {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	for _, f := range []string{"--metrics-addr", "--health-addr", "--dashboard-addr"} {
		if _, err := parse(t, f, ":9090"); err != nil {
			t.Errorf("%s :9090: %v", f, err)
		}
		if _, err := parse(t, f, "9090"); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("%s 9090: %v", f, err)
		}
	}
}
