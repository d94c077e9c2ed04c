// Package redistest starts real redis-server processes for tests: one per
// call, on a free loopback port, in the test's own temporary directory,
// killed when the test ends. It is a normal package so that the tests of
// several packages can share it, but only tests use it; nothing else in
// the module may import it.
//
// redis-server is $REDIS_SERVER if that is set, else the one in $PATH, else
// /usr/bin/redis-server, /usr/local/bin/redis-server or
// /usr/sbin/redis-server. Without one a test skips, except when $CI is set:
// then it fails, so that CI never passes by skipping.
package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bin returns the redis-server to run: $REDIS_SERVER if it is set (exactly
// that one, or none if it is not there), else redis-server from $PATH or
// the usual places outside it; "" when there is none.
func Bin() string {
	if p, ok := os.LookupEnv("REDIS_SERVER"); ok {
		if p, err := exec.LookPath(p); err == nil {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// Require skips the test when there is no redis-server (see Bin), except
// in CI ($CI set), where that is a failure.
func Require(t testing.TB) {
	t.Helper()
	if Bin() != "" {
		return
	}
	skipOrFail(t, "redis-server not found (in $REDIS_SERVER, $PATH, /usr/bin, /usr/local/bin): these tests need a real Redis; install it (apt-get install redis-server, brew install redis) to run them")
}

// skipOrFail skips t with msg, or fails it when $CI is set.
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " [CI is set, so this is a failure, not a skip]")
	}
	t.Skip(msg)
}

// Config says how StartWith starts a server. The zero value is Start's.
type Config struct {
	// Name is what messages call the server; default "redis-server".
	Name string

	// Args are more redis-server arguments, after the defaults (later
	// ones win): for example "--appendonly", "yes".
	//
	// The defaults: --port Port --bind 127.0.0.1 --dir Dir --save ""
	// --appendonly no --daemonize no --loglevel warning
	// --repl-diskless-sync-delay 0 (a master would otherwise wait 5s for
	// more replicas before it sends the first one its data).
	Args []string

	// Conf, if set, returns the contents of a config file for a server on
	// port with its files in dir. The server then starts as
	// "redis-server <file> Args..." with no default arguments (as a
	// sentinel must: "redis-server <file> --sentinel"). The file is written
	// into Dir once per port tried; Start again keeps what the server
	// rewrote in it.
	Conf func(port int, dir string) string

	// TLS, if set, makes the server listen with TLS only (--port 0
	// --tls-port Port, in place of --port Port), and the readiness PING
	// goes over TLS with this client configuration. Args must name the
	// certificate files.
	TLS *tls.Config

	// Unsupported, if set, is asked about the log of a server that exited
	// at start: when it says the redis-server cannot do what the test needs
	// (reason, true), the test skips with reason (fails in CI) instead of
	// trying other ports.
	Unsupported func(log []byte) (reason string, ok bool)
}

// Server is a redis-server process owned by one test.
type Server struct {
	Port int    // the port it listens on (with TLS if Config.TLS is set)
	Dir  string // its working directory and --dir, a temp dir of the test

	t    testing.TB
	cfg  Config
	bin  string
	log  string // its stdout and stderr
	conf string // its config file, with Config.Conf

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server with the default arguments and args on a
// free port, in a temp dir, and waits until it answers PING (not while it
// answers LOADING, reading an append-only file). It is killed at cleanup,
// and the tail of its log printed if the test failed. It skips the test
// when there is no redis-server (fails it in CI; see Require).
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartWith(t, Config{Args: args})
}

// StartWith is Start with a Config.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	Require(t)
	if cfg.Name == "" {
		cfg.Name = "redis-server"
	}
	s := &Server{t: t, cfg: cfg, bin: Bin(), Dir: t.TempDir()}
	s.log = filepath.Join(s.Dir, "redis.log")
	if cfg.Conf != nil {
		s.conf = filepath.Join(s.Dir, "redis.conf")
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("%s on port %d log:\n%s", s.cfg.Name, s.Port, tail(b, 4000))
		}
	})
	var err error
	for try := 0; try < 5; try++ { // a free port can be taken before we bind it
		s.Port, err = freePort()
		if err != nil {
			continue
		}
		if err = s.start(true); err == nil {
			return s
		}
		var unsupported unsupportedError
		if errors.As(err, &unsupported) {
			skipOrFail(t, string(unsupported))
		}
	}
	t.Fatalf("start %s: %v", cfg.Name, err)
	return nil
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the redis:// URL of the server, db 0 (rediss:// with TLS).
func (s *Server) URL() string {
	scheme := "redis"
	if s.cfg.TLS != nil {
		scheme = "rediss"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d/0", scheme, s.Port)
}

type unsupportedError string

func (e unsupportedError) Error() string { return string(e) }

// start runs the server on s.Port and waits until it answers PING. fresh:
// write the config file (Config.Conf) for this port.
func (s *Server) start(fresh bool) error {
	var args []string
	if s.cfg.Conf != nil {
		if fresh {
			if err := os.WriteFile(s.conf, []byte(s.cfg.Conf(s.Port, s.Dir)), 0o644); err != nil {
				return err
			}
		}
		args = append([]string{s.conf}, s.cfg.Args...)
	} else {
		port := []string{"--port", strconv.Itoa(s.Port)}
		if s.cfg.TLS != nil {
			port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}
		}
		args = append(port, "--bind", "127.0.0.1",
			"--dir", s.Dir, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--loglevel", "warning", "--repl-diskless-sync-delay", "0")
		args = append(args, s.cfg.Args...)
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(s.log)
			if s.cfg.Unsupported != nil {
				if reason, ok := s.cfg.Unsupported(b); ok {
					return unsupportedError(reason)
				}
			}
			return fmt.Errorf("%s on port %d exited at start:\n%s", s.cfg.Name, s.Port, tail(b, 2000))
		default:
		}
		err := s.ping() // LOADING until an append-only file is read
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("%s on port %d does not answer PING: %v", s.cfg.Name, s.Port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends PING on a new connection (TLS with Config.TLS) and wants
// +PONG.
func (s *Server) ping() error {
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	var conn net.Conn
	var err error
	if s.cfg.TLS != nil {
		conn, err = tls.DialWithDialer(d, "tcp", s.Addr(), s.cfg.TLS)
	} else {
		conn, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", bytes.TrimSpace([]byte(line)))
	}
	return nil
}

// Kill SIGKILLs the server (no shutdown, no final fsync; continued first
// if paused) and waits until it is gone. It does nothing if the server is
// not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-done
}

// Start starts a killed server again on the same port and directory: empty,
// unless it has an append-only file (or rewrote its config file). It fails
// the test if the server does not answer PING within 20s.
func (s *Server) Start() {
	s.t.Helper()
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) { // the port may linger for a moment
		if err = s.start(false); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("restart %s on port %d: %v", s.cfg.Name, s.Port, err)
}

// Restart is Kill and Start.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.Start()
}

// Pause stops the process (SIGSTOP): its connections stay open, it answers
// nothing. Resume continues it (SIGCONT).
func (s *Server) Pause() { s.t.Helper(); s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.t.Helper(); s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("%v to %s on port %d: it is not running", sig, s.cfg.Name, s.Port)
		return
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("%v to %s on port %d: %v", sig, s.cfg.Name, s.Port, err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}
