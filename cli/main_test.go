package cli_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/task"
)

// mainEnv, set to 1, makes the test binary the worker command: cli.Main
// with the test's tasks (below) registered. runCLI starts it so.
const mainEnv = "GOTASKS_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(cli.Main(append([]string{"worker"}, os.Args[1:]...)))
	}
	// The in-process tests start and stop workers and servers: none may
	// leave a goroutine behind.
	goleak.VerifyTestMain(m)
}

// The tasks of the worker processes and of the in-process workers.
var (
	addTask = task.Define("clitest.add", func(ctx context.Context, a [2]int) (int, error) { return a[0] + a[1], nil })

	gates     sync.Map // key → *gate
	blockTask = task.Define("clitest.block", func(ctx context.Context, key string) (string, error) {
		v, _ := gates.Load(key)
		g := v.(*gate)
		close(g.started)
		<-g.release
		return "released", nil
	})
)

// gate holds a clitest.block task until released.
type gate struct{ started, release chan struct{} }

func newGate(t *testing.T) (*gate, string) {
	t.Helper()
	g := &gate{started: make(chan struct{}), release: make(chan struct{})}
	key := t.Name()
	gates.Store(key, g)
	t.Cleanup(func() { gates.Delete(key) })
	return g, key
}

// cleanEnv clears the variables the command line reads, so that the tests
// do not depend on the environment of whoever runs them.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{"GOTASKS_REDIS_URL", "GOTASKS_REDIS_USERNAME", "GOTASKS_REDIS_PASSWORD",
		"GOTASKS_TLS_CA", "GOTASKS_TLS_CERT", "GOTASKS_TLS_KEY", "GOTASKS_TLS_SERVER_NAME", "GOTASKS_TLS_SKIP_VERIFY",
		"GOTASKS_PREFIX", "GOTASKS_RESULT_TTL", "GOTASKS_FAILED_TTL", "GOTASKS_SERIALIZER", "GOTASKS_MAX_ARGS_SIZE",
		"GOTASKS_WAIT_REPLICAS", "GOTASKS_WAIT_TIMEOUT", "GOTASKS_DASHBOARD_TOKEN"} {
		t.Setenv(v, "")
	}
}

// runCLI runs the worker command (this test binary as cli.Main) with args,
// in the test's environment plus env, and returns its exit code, stdout
// and stderr. It is killed after 30s.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// syncBuffer is a log sink safe for the worker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// get requests url without keeping the connection, so that no client
// goroutine outlives the test (goleak).
func get(t *testing.T, url string, header ...string) (int, string, error) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func TestHelpListsCommands(t *testing.T) {
	cleanEnv(t)
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, want := range []string{"\n  run ", "\n  dashboard ", "\n  admin ", "\n  help ", "Examples:",
			"GOTASKS_RESULT_TTL", "--result-ttl", "--queue"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v does not show %q:\n%s", args, want, out)
			}
		}
	}
}

func TestHelpOfEachCommand(t *testing.T) {
	cleanEnv(t)
	for _, c := range []struct {
		args        []string
		want, avoid []string
	}{
		{[]string{"help", "run"}, []string{"Usage: worker [run]", "--batch", "--lease", "Examples:"}, []string{"--min-age-days"}},
		{[]string{"run", "--help"}, []string{"Usage: worker [run]", "--batch"}, nil},
		{[]string{"help", "dashboard"}, []string{"Usage: worker dashboard", "--dashboard-addr", "(default: :8080)", "--redis-url", "Examples:"},
			[]string{"--batch", "--concurrency", "--queue"}},
		{[]string{"dashboard", "--help"}, []string{"Usage: worker dashboard"}, []string{"--batch"}},
		{[]string{"help", "admin"}, []string{"Usage: worker admin", "prune", "purge", "Examples:"}, nil},
		{[]string{"admin", "help", "show"}, []string{"Usage: worker admin show ID", "--json", "--redis-url"}, []string{"--queue"}},
		{[]string{"help", "admin", "prune"}, []string{"--failed-min-age-days", "(default: --min-age-days)", "Examples:"}, []string{"(default -1)"}},
		{[]string{"help", "help"}, []string{"Commands:"}, nil},
	} {
		code, out, errOut := runCLI(t, nil, c.args...)
		if code != 0 {
			t.Errorf("%v: exit %d, %s", c.args, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %q:\n%s", c.args, w, out)
			}
		}
		for _, a := range c.avoid {
			if strings.Contains(out, a) {
				t.Errorf("%v shows %q:\n%s", c.args, a, out)
			}
		}
		// Every default once: never the flag package's own "(default ...)".
		if strings.Contains(out, "(default ") {
			t.Errorf("%v shows a default twice:\n%s", c.args, out)
		}
	}
	if code, _, errOut := runCLI(t, nil, "help", "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("help frobnicate: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("frobnicate: exit %d, %q", code, errOut)
	}
}

// A flag of another command is refused with its name, exit 2.
func TestFlagsOfOtherCommandsAreRefused(t *testing.T) {
	cleanEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dashboard", "--batch"}, "--batch is not a flag of dashboard (it is a flag of: run)"},
		{[]string{"dashboard", "--concurrency", "3"}, "--concurrency is not a flag of dashboard"},
		{[]string{"admin", "queues", "--concurrency", "3"}, "--concurrency is not a flag of admin queues"},
		{[]string{"admin", "show", "ID", "--queue", "q"}, "--queue is not a flag of admin show (it is a flag of: run, admin tasks, admin purge, admin retry-failed, admin delete-failed, admin pause, admin resume, admin prune)"},
		{[]string{"--min-age-days", "3"}, "--min-age-days is not a flag of run (it is a flag of: admin prune)"},
		{[]string{"--bogus"}, "unknown flag --bogus"},
	} {
		code, _, errOut := runCLI(t, nil, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}
