package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// Security: TLS with client certificates and ACL users against a real
// redis-server, passwords kept out of worker logs, and task names that
// cannot choose code.

// TestTLS: rediss:// with a test CA, a server certificate for 127.0.0.1 and
// a client certificate (tls-auth-clients yes). The producer and a worker
// process get through with the CA and the client certificate; without the
// client certificate, or with another CA, they do not.
func TestTLS(t *testing.T) {
	pki, other := redistest.NewPKI(t, "a"), redistest.NewPKI(t, "b")
	srv := startTLSRedis(t, pki)
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", srv.Port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The raw handshake, as seen by crypto/tls.
	version, err := tlsPing(srv.Addr(), pki, true)
	if err != nil {
		t.Fatalf("TLS handshake and PING with the client certificate: %v", err)
	}
	t.Logf("handshake with the client certificate: %s, PING answered", version)
	if _, err := tlsPing(srv.Addr(), pki, false); err == nil {
		t.Fatal("the server answered a client without a certificate")
	} else {
		t.Logf("without a client certificate: %v", err)
	}

	good := broker.ConnOptions{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
	b, err := broker.OpenWith(url, broker.Options{}, good)
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	defer b.Close()
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check over TLS: %v", err)
	}
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	t.Cleanup(func() { task.Configure(nil) })
	r, err := addTask.Enqueue(ctx, addArgs{A: 20, B: 22})
	if err != nil {
		t.Fatalf("enqueue over TLS: %v", err)
	}
	if got, err := b.GetResult(ctx, r.ID); err != nil || got.Status != task.StatusNew || got.TaskName != "demo.add" {
		t.Fatalf("GetResult over TLS: %+v, %v", got, err)
	}

	// The same with the settings in the URL, and the server's DNS name.
	viaURL, err := broker.Open(fmt.Sprintf("rediss://localhost:%d/0?tls_ca=%s&tls_cert=%s&tls_key=%s",
		srv.Port, pki.CA, pki.ClientCert, pki.ClientKey), broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer viaURL.Close()
	if got, err := viaURL.GetResult(ctx, r.ID); err != nil || got.TaskName != "demo.add" {
		t.Fatalf("GetResult with the TLS settings in the URL: %+v, %v", got, err)
	}

	// Refused: each of these fails at the first command.
	for _, c := range []struct {
		name string
		url  string
		conn broker.ConnOptions
		want string // in the error; "" for any error
	}{
		{"no client certificate", url, broker.ConnOptions{CAFile: pki.CA}, ""},
		{"client certificate of another CA", url, broker.ConnOptions{CAFile: pki.CA, CertFile: other.ClientCert, KeyFile: other.ClientKey}, ""},
		{"server certificate of another CA", url, broker.ConnOptions{CAFile: other.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, "certificate signed by unknown authority"},
		{"system CAs only", url, broker.ConnOptions{CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, "certificate signed by unknown authority"},
		{"another server name", url, broker.ConnOptions{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "redis.example"}, "not redis.example"},
		{"plain redis:// to the TLS port", fmt.Sprintf("redis://127.0.0.1:%d/0", srv.Port), broker.ConnOptions{}, ""},
	} {
		c.url += "?dial_timeout=2s&read_timeout=2s&max_retries=0"
		nb, err := broker.OpenWith(c.url, broker.Options{}, c.conn)
		if err != nil {
			t.Fatalf("%s: OpenWith: %v", c.name, err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		err = nb.Check(cctx)
		ccancel()
		_ = nb.Close()
		switch {
		case err == nil:
			t.Errorf("%s: Check passed; want the connection refused", c.name)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %v; want an error about %q", c.name, err, c.want)
		default:
			t.Logf("%s: refused: %v", c.name, err)
		}
	}

	// A worker process over TLS, with the TLS flags.
	e := &env{t: t, URL: url, B: b, R: b.Client(), ctx: ctx}
	w := e.startWorker(workerConfig{
		ID: "w-tls", LogLevel: "debug", Ready: true,
		Extra: []string{"--tls-ca", pki.CA, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey},
	})
	res := e.waitStatus(b, r.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
	var sum int
	if err := res.Decode(&sum); err != nil || res.Status != task.StatusComplete || sum != 42 {
		t.Fatalf("demo.add over TLS: %s, %d, %v; want COMPLETE 42", res.Status, sum, err)
	}
	if !strings.Contains(w.Log(), "tls=true") {
		t.Errorf("the worker's log does not say it uses TLS:\n%s", tail([]byte(w.Log()), 2000))
	}
}

// TestACL: an ACL user with a password, the default user locked away. The
// producer and worker processes (password in the URL, or user flag and
// password from $GOTASKS_REDIS_PASSWORD) get in; a wrong password does not;
// no worker log shows the password, even at debug level.
func TestACL(t *testing.T) {
	const password = "s3cret-Pw.42"
	srv := startRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	admin := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: srv.Addr()})
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">"+password, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER app: %v", err)
	}
	// New connections as the default user now need a password nobody here
	// uses.
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "resetpass", ">admin-only-pw").Err(); err != nil {
		t.Fatalf("ACL SETUSER default: %v", err)
	}
	_ = admin.Close()

	for _, c := range []struct {
		name string
		url  string
		want string
	}{
		{"no credentials", srv.URL(), "NOAUTH"},
		{"wrong password", fmt.Sprintf("redis://app:wrong@%s/0", srv.Addr()), "WRONGPASS"},
		{"unknown user", fmt.Sprintf("redis://nobody:%s@%s/0", password, srv.Addr()), "WRONGPASS"},
	} {
		nb, err := broker.Open(c.url, broker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = nb.Check(ctx)
		_ = nb.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check = %v; want %s", c.name, err, c.want)
		}
	}

	url := fmt.Sprintf("redis://app:%s@%s/0", password, srv.Addr())
	b, err := broker.Open(url, broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check as app: %v", err)
	}
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	t.Cleanup(func() { task.Configure(nil) })
	e := &env{t: t, Redis: srv, URL: url, B: b, R: b.Client(), ctx: ctx}

	// Worker 1: the password in --redis-url.
	w1 := e.startWorker(workerConfig{ID: "w-acl-url", LogLevel: "debug", Ready: true, Queues: []string{"acl1"}})
	// Worker 2: --redis-username, and the password from the environment.
	t.Setenv("GOTASKS_REDIS_PASSWORD", password)
	e2 := *e
	e2.URL = srv.URL()
	w2 := e2.startWorker(workerConfig{ID: "w-acl-env", LogLevel: "debug", Ready: true, Queues: []string{"acl2"},
		Extra: []string{"--redis-username", "app"}})

	for i, q := range []string{"acl1", "acl2"} {
		r, err := addTask.Using(task.Queue(q)).Enqueue(ctx, addArgs{A: i, B: 100})
		if err != nil {
			t.Fatal(err)
		}
		res := e.waitStatus(b, r.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
		var sum int
		if err := res.Decode(&sum); err != nil || res.Status != task.StatusComplete || sum != i+100 {
			t.Fatalf("demo.add on %s: %s, %d, %v", q, res.Status, sum, err)
		}
	}
	for _, w := range []*workerProc{w1, w2} {
		w.Signal(syscall.SIGTERM)
		if st := w.WaitExit(15 * time.Second); st == nil || !st.Success() {
			t.Fatalf("worker %s: exit %v after SIGTERM", w.ID, st)
		}
		log := w.Log()
		if strings.Contains(log, password) || strings.Contains(log, "s3cret") {
			t.Errorf("worker %s's log shows the password:\n%s", w.ID, log)
		}
		if !strings.Contains(log, "user=app") || !strings.Contains(log, "password_set=true") || !strings.Contains(log, "level=DEBUG") {
			t.Errorf("worker %s's log lacks the connection line or debug lines:\n%s", w.ID, tail([]byte(log), 3000))
		}
	}
	if log := w1.Log(); !strings.Contains(log, "url=redis://app:xxxxx@") {
		t.Errorf("worker %s's log does not show the redacted URL:\n%s", w1.ID, tail([]byte(log), 3000))
	}
}

// TestOnlyRegisteredTasksRun: a task runs by its registered name only; a
// name that looks like code, a path or a command finds nothing to run and
// fails as unknown, once, with no side effect, and the worker carries on.
func TestOnlyRegisteredTasksRun(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	e.startWorker(workerConfig{ID: "w-names", Ready: true})

	marker := filepath.Join(t.TempDir(), "pwned")
	cmd := "touch " + marker
	names := []string{
		"os/exec.Command",
		"os/exec.(*Cmd).Run",
		"../../bin/sh",
		"/bin/sh",
		"sh -c " + cmd,
		"$(" + cmd + ")",
		"`" + cmd + "`",
		"demo.add; " + cmd,
		"demo.add\x00",
		" demo.add",
		"DEMO.ADD",
		"main.main",
		"runtime.Goexit",
		"plugin.Open",
		"{{.Exec}}",
	}
	args, err := serializer.Default.Marshal([]string{"/bin/sh", "-c", cmd})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range names {
		m := &task.Message{
			ID: task.NewID(), TaskName: name, Queue: task.DefaultQueue, Backend: task.DefaultBackendName,
			Args: args, EnqueuedAt: time.Now(), Limits: task.Limits{MaxAttempts: 3},
		}
		if err := e.B.Enqueue(ctx, m); err != nil {
			t.Fatalf("enqueue %q: %v", name, err)
		}
		ids = append(ids, m.ID)
	}
	after, err := addTask.Enqueue(ctx, addArgs{A: 1, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.waitDrained(task.DefaultQueue, 30*time.Second)

	attempts := map[int]int{}
	for i, r := range e.results(e.B, ids) {
		if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypeUnknownTask {
			t.Errorf("task %q: status %s, err %+v; want FAILED %s", names[i], r.Status, r.Err, task.ErrorTypeUnknownTask)
			continue
		}
		// The payload asked for 3 attempts. (docs/architecture.md says an
		// unknown name is never retried; task/retry.go retries it up to
		// MaxAttempts. Either way no attempt runs anything.)
		if r.Attempts < 1 || r.Attempts > 3 || len(r.Errors) != r.Attempts || r.Value != nil || r.TaskName != names[i] {
			t.Errorf("task %q: attempts %d, errors %d, value %q, name %q", names[i], r.Attempts, len(r.Errors), r.Value, r.TaskName)
		}
		for _, e := range r.Errors {
			if e.Type != task.ErrorTypeUnknownTask {
				t.Errorf("task %q: an attempt failed with %s: %s", names[i], e.Type, e.Message)
			}
		}
		attempts[r.Attempts]++
	}
	t.Logf("%d unknown names: FAILED %s; attempts used: %v", len(names), task.ErrorTypeUnknownTask, attempts)
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command in the payload ran: %s exists (%v)", marker, err)
	}
	if n, err := e.R.Exists(ctx, "demo:executions").Result(); err != nil || n != 0 {
		t.Errorf("a task recorded an execution: %d, %v", n, err)
	}
	r, err := e.B.GetResult(ctx, after.ID)
	var sum int
	if err != nil || r.Status != task.StatusComplete || r.Decode(&sum) != nil || sum != 3 {
		t.Errorf("demo.add after the unknown names: %+v, %v", r, err)
	}
}

// ---------------------------------------------------------------------------
// TLS helpers

// startTLSRedis starts redis-server with --port 0 and --tls-port on a free
// port, with pki's server certificate, verifying clients against pki's CA,
// and waits until it answers PING over TLS with pki's client certificate.
// A redis-server built without TLS skips the test (fails it in CI).
func startTLSRedis(t *testing.T, pki redistest.PKI) *redistest.Server {
	t.Helper()
	redistest.Require(t)
	clientTLS, err := pki.ClientTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	return redistest.StartWith(t, redistest.Config{
		Name: "redis-server (TLS)",
		TLS:  clientTLS,
		Args: []string{
			"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey,
			"--tls-ca-cert-file", pki.CA, "--tls-auth-clients", "yes",
		},
		Unsupported: func(log []byte) (string, bool) {
			line, ok := tlsUnsupported(log)
			return "redis-server " + redistest.Bin() + " has no TLS support (" + line + "); the TLS test needs one built with BUILD_TLS=yes (Debian's and Homebrew's are)", ok
		},
	})
}

// tlsUnsupported tells from a redis-server log whether it exited because
// it was built without TLS: its config parser then rejects tls-port
// (">>> 'tls-port "N"'" followed by "Bad directive ..."), or a build with
// TLS as a module that is not loaded says TLS is not supported.
func tlsUnsupported(log []byte) (string, bool) {
	var prev string
	sc := bufio.NewScanner(strings.NewReader(string(log)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		lower := strings.ToLower(l)
		if strings.Contains(l, "Bad directive") && strings.Contains(prev, "'tls-") {
			return prev + " " + l, true
		}
		if strings.Contains(lower, "tls") && strings.Contains(lower, "not supported") {
			return l, true
		}
		prev = l
	}
	return "", false
}

// tlsPing makes a TLS connection to addr with crypto/tls (with or without
// pki's client certificate), sends PING and reads the answer. It returns
// the TLS version negotiated.
func tlsPing(addr string, pki redistest.PKI, withCert bool) (string, error) {
	cfg, err := pki.ClientTLS(withCert)
	if err != nil {
		return "", err
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", fmt.Errorf("handshake: %w", err)
	}
	defer conn.Close()
	version := tls.VersionName(conn.ConnectionState().Version)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	// With TLS 1.3 the client finishes its side of the handshake before the
	// server has checked the client's certificate: a refusal comes as an
	// alert on the first read.
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return version, fmt.Errorf("%s: write: %w", version, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return version, fmt.Errorf("%s: read: %w", version, err)
	}
	if strings.TrimSpace(line) != "+PONG" {
		return version, fmt.Errorf("%s: PING answered %q", version, line)
	}
	return version, nil
}

// TestTLSUnsupportedDetection: how startTLSRedis tells a redis-server
// without TLS (which skips TestTLS, or fails it in CI) from other failures.
func TestTLSUnsupportedDetection(t *testing.T) {
	noTLS := "\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration file, at line 3\n>>> 'tls-port \"6380\"'\nBad directive or wrong number of arguments\n"
	if _, ok := tlsUnsupported([]byte(noTLS)); !ok {
		t.Error("a redis-server without TLS not recognised")
	}
	other := "\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration file, at line 3\n>>> 'bogus \"1\"'\nBad directive or wrong number of arguments\n" +
		"1:M # Failed to configure TLS. Check logs for more info.\n"
	if line, ok := tlsUnsupported([]byte(other)); ok {
		t.Errorf("another failure taken for missing TLS support: %q", line)
	}
}
