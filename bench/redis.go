package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a private redis-server started for one bench run: no
// persistence, so that neither system pays for disk writes and nothing is
// left behind.
type redisServer struct {
	Port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// findRedisServer returns $REDIS_SERVER if set, else redis-server from $PATH
// or the usual places outside it; "" when there is none.
func findRedisServer() string {
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

// startRedis starts redis-server on a free loopback port in a temporary
// directory. Stop kills it and removes the directory.
func startRedis(ctx context.Context) (*redisServer, error) {
	bin := findRedisServer()
	if bin == "" {
		return nil, errors.New("redis-server not found (in $REDIS_SERVER, $PATH, /usr/bin, /usr/local/bin): install it or pass --redis-url")
	}
	dir, err := os.MkdirTemp("", "gotasks-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	var lastErr error
	for try := 0; try < 5; try++ { // a free port can be taken before redis binds it
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s := &redisServer{Port: port, dir: dir}
		if lastErr = s.start(ctx, bin); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func (s *redisServer) start(ctx context.Context, bin string) error {
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--loglevel", "warning")
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.done:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.Port, strings.TrimSpace(string(b)))
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.kill()
			return fmt.Errorf("redis-server on port %d does not answer PING: %w", s.Port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Addr is host:port of the server.
func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the redis:// URL of db 0.
func (s *redisServer) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *redisServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill() // its data is not meant to survive
		<-s.done
	}
}

// Stop kills the server and removes its directory.
func (s *redisServer) Stop() {
	s.kill()
	os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// admin is the bench's own connection, for housekeeping and measuring
// Redis; neither system under test uses it.
type admin struct {
	rdb *redis.Client
}

func newAdmin(url string) (*admin, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse --redis-url: %w", err)
	}
	return &admin{rdb: redis.NewClient(opts)}, nil
}

func (a *admin) Close() error { return a.rdb.Close() }

// flush empties every database, so that each measurement starts from the
// same state. Loaded Lua scripts survive it, which keeps script loading out
// of the measurements that follow the first.
func (a *admin) flush(ctx context.Context) error {
	if err := a.rdb.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("FLUSHALL: %w", err)
	}
	return nil
}

// info returns one field of INFO section.
func (a *admin) info(ctx context.Context, section, field string) (string, error) {
	s, err := a.rdb.Info(ctx, section).Result()
	if err != nil {
		return "", fmt.Errorf("INFO %s: %w", section, err)
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && k == field {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

// usedMemory is INFO memory's used_memory, in bytes.
func (a *admin) usedMemory(ctx context.Context) (int64, error) {
	v, err := a.info(ctx, "memory", "used_memory")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("used_memory %q: %w", v, err)
	}
	return n, nil
}

// clients is INFO clients' connected_clients.
func (a *admin) clients(ctx context.Context) (int, error) {
	v, err := a.info(ctx, "clients", "connected_clients")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("connected_clients %q: %w", v, err)
	}
	return n, nil
}

// waitClients waits until at most n clients are connected: Redis frees a
// closed connection's buffers only once it has noticed the close.
func (a *admin) waitClients(ctx context.Context, n int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := a.clients(ctx)
		if err != nil || got <= n {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d clients still connected after 5s, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cpuSeconds is the CPU time the server has used (INFO cpu, user + sys).
func (a *admin) cpuSeconds(ctx context.Context) (float64, error) {
	var total float64
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := a.info(ctx, "cpu", f)
		if err != nil {
			return 0, err
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", f, v, err)
		}
		total += x
	}
	return total, nil
}

// version is the server's redis_version.
func (a *admin) version(ctx context.Context) string {
	v, err := a.info(ctx, "server", "redis_version")
	if err != nil {
		return "unknown"
	}
	return v
}
