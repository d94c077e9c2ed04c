package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// send sends one inline command on a new connection and returns the first
// line of the reply, without CRLF.
func send(addr, cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func mustSend(t *testing.T, addr, cmd, want string) {
	t.Helper()
	got, err := send(addr, cmd)
	if err != nil || got != want {
		t.Fatalf("%s: %q, %v; want %q", cmd, got, err, want)
	}
}

// TestServer: Start, then Kill and Start again on the same port and
// directory (an append-only file survives), and Pause and Resume.
func TestServer(t *testing.T) {
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always")
	if s.Port == 0 || s.Addr() != fmt.Sprintf("127.0.0.1:%d", s.Port) || s.URL() != fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) {
		t.Fatalf("port %d, addr %s, url %s", s.Port, s.Addr(), s.URL())
	}
	if st, err := os.Stat(s.Dir); err != nil || !st.IsDir() {
		t.Fatalf("dir %s: %v", s.Dir, err)
	}
	mustSend(t, s.Addr(), "SET k v", "+OK")

	s.Kill()
	if _, err := send(s.Addr(), "PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Kill() // again: nothing to do
	s.Start()
	mustSend(t, s.Addr(), "GET k", "$1") // the append-only file was read

	s.Restart()
	mustSend(t, s.Addr(), "GET k", "$1")

	s.Pause()
	if got, err := send(s.Addr(), "PING"); err == nil {
		t.Fatalf("PING answered %q while paused", got)
	}
	s.Resume()
	mustSend(t, s.Addr(), "PING", "+PONG")

	// A paused server is killed too (at cleanup, here at once).
	s.Pause()
	s.Kill()
}

// TestConf: a server started from a config file, which it keeps across
// Start.
func TestConf(t *testing.T) {
	ports := 0
	s := StartWith(t, Config{
		Name: "configured redis-server",
		Conf: func(port int, dir string) string {
			ports++
			return fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\n", port, dir)
		},
		Args: []string{"--maxmemory", "12mb"},
	})
	mustSend(t, s.Addr(), "PING", "+PONG")
	s.Restart()
	if ports != 1 {
		t.Errorf("the config file was written %d times; want once", ports)
	}
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(conn, "CONFIG GET maxmemory\r\n")
	r := bufio.NewReader(conn)
	var lines []string
	for range 5 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	if lines[4] != "12582912" {
		t.Errorf("CONFIG GET maxmemory: %q; want the argument after the file to count", lines)
	}
}

// TestUnsupported: a server that exits at start because it cannot do what
// the test needs skips the test (here a made-up directive stands for it).
func TestUnsupported(t *testing.T) {
	if os.Getenv("CI") != "" {
		t.Skip("in CI the unsupported case fails the test by design")
	}
	Require(t)
	asked := false
	t.Run("bogus", func(t *testing.T) {
		StartWith(t, Config{
			Args: []string{"--no-such-directive", "1"},
			Unsupported: func(log []byte) (string, bool) {
				asked = true
				return "no such directive", strings.Contains(string(log), "Bad directive")
			},
		})
		t.Error("started a server with a bad directive")
	})
	if !asked {
		t.Error("Unsupported was not asked")
	}
}
