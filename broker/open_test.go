package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// nothing to hide
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"rediss://redis.example:6380/2?dial_timeout=3s", "rediss://redis.example:6380/2?dial_timeout=3s"},
		{"memory://", "memory://"},
		{"127.0.0.1:6379", "127.0.0.1:6379"},
		{"", ""},
		{"redis://@host:6379/0", "redis://@host:6379/0"},
		{"rediss://h/0?tls_ca=/etc/ca.pem&tls_key=/etc/k.pem", "rediss://h/0?tls_ca=/etc/ca.pem&tls_key=/etc/k.pem"},
		// user info
		{"redis://app:s3cret@host:6379/0", "redis://app:xxxxx@host:6379/0"},
		{"rediss://:s3cret@host:6380", "rediss://:xxxxx@host:6380"},
		{"redis://:s3cret@host", "redis://:xxxxx@host"},
		{"redis://s3cret@host/1", "redis://xxxxx@host/1"}, // read as a password by some clients
		{"redis://app:p%40ss%2Fw@host/0", "redis://app:xxxxx@host/0"},
		{"redis://app:s3cret@[::1]:6379/0", "redis://app:xxxxx@[::1]:6379/0"},
		{"app:s3cret@host:6379", "app:xxxxx@host:6379"}, // no scheme
		// unescaped special characters in the password
		{"redis://app:p@ss@host/0", "redis://app:xxxxx@host/0"},
		{"redis://app:pa:ss@host/0", "redis://app:xxxxx@host/0"},
		{"redis://app:pa/ss@host/0", "redis://app:xxxxx@host/0"},
		{"redis://:12/34@host/0", "redis://:xxxxx@host/0"},
		{"redis://app:pa#ss@host/0", "redis://app:xxxxx@host/0"},
		{"redis://app:pa?ss@host/0", "redis://xxxxx"}, // cannot tell: hide it all
		// query parameters
		{"redis://host/0?password=s3cret", "redis://host/0?password=xxxxx"},
		{"redis://host/0?db=1&Password=s3cret&client_name=w", "redis://host/0?db=1&Password=xxxxx&client_name=w"},
		{"redis://u:s3cret@host/0?pass=s3cret#frag", "redis://u:xxxxx@host/0?pass=xxxxx#frag"},
		{"redis://host/0?auth_token=s3cret&x", "redis://host/0?auth_token=xxxxx&x"},
		{"redis://host/0?sentinel_password=s3cret", "redis://host/0?sentinel_password=xxxxx"},
	} {
		if got := broker.RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzRedactURL: whatever the user name, password and host, the password
// does not survive redaction, nor appear in Open's errors (unless it is also
// part of what may be shown).
func FuzzRedactURL(f *testing.F) {
	for _, s := range [][3]string{
		{"app", "s3cret", "host:6379/0"}, {"", "s3cret", "h"}, {"a/b", "s3cr?t", "h/0?x=1"},
		{"app", "s3#cret", "h/0"}, {"app", "s3@cret", "h/0?client_name=a@b"}, {"", "1234/abc", "h"},
		{"u", "p%zzass", "h:bad"}, {"u", "pass", "h?password=pass"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, user, pass, host string) {
		// What may be shown: the scheme, the user name, the host and the
		// redaction itself.
		if len(pass) < 2 {
			return
		}
		pass = "Q7" + pass + "Q7" // not a word of the error messages
		if strings.Contains("rediss://"+user+":xxxxx@"+host, pass) {
			return
		}
		for _, u := range []string{"redis://" + user + ":" + pass + "@" + host, "rediss://:" + pass + "@" + host} {
			if got := broker.RedactURL(u); strings.Contains(got, pass) {
				t.Fatalf("RedactURL(%q) = %q shows the password", u, got)
			}
			// Open does not connect; its errors do not show the password either.
			b, err := broker.Open(u, broker.Options{})
			if err == nil {
				_ = b.Close()
			} else if strings.Contains(err.Error(), pass) {
				t.Fatalf("Open(%q): %q shows the password", u, err)
			}
		}
	})
}

// clientOptions opens url and returns the go-redis options it made.
func clientOptions(t *testing.T, url string, conn broker.ConnOptions) *redis.Options {
	t.Helper()
	b, err := broker.OpenWith(url, broker.Options{}, conn)
	if err != nil {
		t.Fatalf("OpenWith(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.Client().(*redis.Client).Options()
}

func TestOpenURLForms(t *testing.T) {
	o := clientOptions(t, "redis://app:s3cret@redis.example:1234/3", broker.ConnOptions{})
	if o.Addr != "redis.example:1234" || o.DB != 3 || o.Username != "app" || o.Password != "s3cret" || o.TLSConfig != nil {
		t.Errorf("redis://app:s3cret@redis.example:1234/3: addr %s db %d user %q password %q tls %v", o.Addr, o.DB, o.Username, o.Password, o.TLSConfig)
	}
	if !o.ContextTimeoutEnabled {
		t.Error("ContextTimeoutEnabled is off")
	}
	// go-redis' fallback when the server lacks them is a data race.
	if o.MaintNotificationsConfig == nil || o.MaintNotificationsConfig.Mode != maintnotifications.ModeDisabled {
		t.Errorf("maintenance notifications not disabled: %+v", o.MaintNotificationsConfig)
	}
	o = clientOptions(t, "redis://:s3cret@h", broker.ConnOptions{})
	if o.Addr != "h:6379" || o.Username != "" || o.Password != "s3cret" {
		t.Errorf("redis://:s3cret@h: addr %s user %q password %q", o.Addr, o.Username, o.Password)
	}
	o = clientOptions(t, "rediss://:s3cret@redis.example:6380/0?dial_timeout=2s", broker.ConnOptions{})
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" || o.TLSConfig.MinVersion != tls.VersionTLS12 ||
		o.TLSConfig.InsecureSkipVerify || o.TLSConfig.RootCAs != nil || o.Password != "s3cret" || o.DialTimeout != 2*time.Second {
		t.Errorf("rediss://: tls %+v, password %q, dial timeout %v", o.TLSConfig, o.Password, o.DialTimeout)
	}
	pki := redistest.NewPKI(t, "a")
	o = clientOptions(t, "rediss://h:6380/0?tls_ca="+pki.CA+"&tls_cert="+pki.ClientCert+"&tls_key="+pki.ClientKey+
		"&tls_server_name=redis.internal&skip_verify=true&pool_size=7", broker.ConnOptions{})
	if c := o.TLSConfig; c == nil || c.ServerName != "redis.internal" || !c.InsecureSkipVerify || c.RootCAs == nil ||
		len(c.Certificates) != 1 || o.PoolSize != 7 {
		t.Errorf("rediss:// with TLS parameters: tls %+v, pool %d", c, o.PoolSize)
	}
	o = clientOptions(t, "unix:///run/redis.sock?db=2", broker.ConnOptions{})
	if o.Network != "unix" || o.Addr != "/run/redis.sock" || o.DB != 2 {
		t.Errorf("unix://: network %s addr %s db %d", o.Network, o.Addr, o.DB)
	}
}

func TestOpenOverrides(t *testing.T) {
	// ConnOptions win over the URL, field by field.
	o := clientOptions(t, "redis://app:old@h/0", broker.ConnOptions{Username: "other", Password: "new"})
	if o.Username != "other" || o.Password != "new" {
		t.Errorf("user %q password %q; want other, new", o.Username, o.Password)
	}
	o = clientOptions(t, "redis://app:old@h/0", broker.ConnOptions{Password: "new"})
	if o.Username != "app" || o.Password != "new" {
		t.Errorf("password only: user %q password %q; want app, new", o.Username, o.Password)
	}
	o = clientOptions(t, "redis://app:old@h/0", broker.ConnOptions{Username: "other"})
	if o.Username != "other" || o.Password != "old" {
		t.Errorf("user only: user %q password %q; want other, old", o.Username, o.Password)
	}
	o = clientOptions(t, "redis://h/0", broker.ConnOptions{Username: "app", Password: "s3cret"})
	if o.Username != "app" || o.Password != "s3cret" {
		t.Errorf("no credentials in the URL: user %q password %q", o.Username, o.Password)
	}

	// TLS files: the option's, not the URL's (which does not even exist).
	pki := redistest.NewPKI(t, "a")
	o = clientOptions(t, "rediss://h/0?tls_ca=/nonexistent/ca.pem&tls_server_name=from-url&tls_cert=/nonexistent/c.pem",
		broker.ConnOptions{CAFile: pki.CA, ServerName: "from-options", CertFile: pki.ClientCert, KeyFile: pki.ClientKey})
	if c := o.TLSConfig; c.ServerName != "from-options" || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Errorf("TLS overrides: %+v", c)
	}
	// The key may be in the certificate's file.
	combined := filepath.Join(t.TempDir(), "client-with-key.pem")
	writeFile(t, combined, append(readFile(t, pki.ClientCert), readFile(t, pki.ClientKey)...))
	o = clientOptions(t, "rediss://h/0", broker.ConnOptions{CertFile: combined})
	if len(o.TLSConfig.Certificates) != 1 {
		t.Errorf("certificate and key in one file: %d certificates", len(o.TLSConfig.Certificates))
	}

	// A base *tls.Config is kept (cloned, not modified); the fields apply on top.
	base := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "base-name"}
	o = clientOptions(t, "rediss://h/0", broker.ConnOptions{TLS: base, CAFile: pki.CA})
	if c := o.TLSConfig; c == base || c.MinVersion != tls.VersionTLS13 || c.ServerName != "base-name" || c.RootCAs == nil {
		t.Errorf("base TLS config: %+v", c)
	}
	if base.RootCAs != nil {
		t.Error("the base TLS config was modified")
	}
	o = clientOptions(t, "rediss://h/0", broker.ConnOptions{TLS: base, ServerName: "explicit"})
	if o.TLSConfig.ServerName != "explicit" {
		t.Errorf("ServerName over the base config's: %q", o.TLSConfig.ServerName)
	}
	o = clientOptions(t, "rediss://h/0", broker.ConnOptions{InsecureSkipVerify: true})
	if !o.TLSConfig.InsecureSkipVerify {
		t.Error("InsecureSkipVerify not applied")
	}

	// The pool is at least PoolSize; a larger pool_size in the URL wins.
	if o := clientOptions(t, "redis://h/0?pool_size=50", broker.ConnOptions{PoolSize: 10}); o.PoolSize != 50 {
		t.Errorf("pool_size=50, PoolSize 10: pool %d", o.PoolSize)
	}
	if o := clientOptions(t, "redis://h/0?pool_size=5", broker.ConnOptions{PoolSize: 10}); o.PoolSize != 10 {
		t.Errorf("pool_size=5, PoolSize 10: pool %d", o.PoolSize)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	pki := redistest.NewPKI(t, "a")
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a certificate\n"))
	const pw = "s3cret"
	const url = "rediss://app:" + pw + "@h:6380/0"
	for _, c := range []struct {
		name string
		url  string
		conn broker.ConnOptions
		want string // in the error
	}{
		{"missing CA file", url, broker.ConnOptions{CAFile: filepath.Join(dir, "nope.pem")}, "nope.pem: no such file"},
		{"missing CA file in the URL", url + "?tls_ca=" + filepath.Join(dir, "nope.pem"), broker.ConnOptions{}, "nope.pem: no such file"},
		{"CA file without a certificate", url, broker.ConnOptions{CAFile: garbage}, "no PEM certificate"},
		{"bad key", url, broker.ConnOptions{CertFile: pki.ClientCert, KeyFile: garbage}, "garbage.pem"},
		{"key of another certificate", url, broker.ConnOptions{CertFile: pki.ClientCert, KeyFile: redistest.NewPKI(t, "b").ClientKey}, "private key does not match"},
		{"missing key", url, broker.ConnOptions{CertFile: pki.ClientCert, KeyFile: filepath.Join(dir, "nokey.pem")}, "nokey.pem"},
		{"certificate without its key", url, broker.ConnOptions{CertFile: pki.ClientCert}, "client certificate"},
		{"key without a certificate", url, broker.ConnOptions{KeyFile: pki.ClientKey}, "needs a certificate"},
		{"TLS file with redis://", "redis://app:" + pw + "@h/0", broker.ConnOptions{CAFile: pki.CA}, "need a rediss:// URL"},
		{"TLS config with redis://", "redis://app:" + pw + "@h/0", broker.ConnOptions{TLS: &tls.Config{}}, "need a rediss:// URL"},
		{"TLS parameter in a redis:// URL", "redis://app:" + pw + "@h/0?tls_ca=" + pki.CA, broker.ConnOptions{}, "need a rediss:// URL"},
		{"skip_verify in a redis:// URL", "redis://app:" + pw + "@h/0?skip_verify=true", broker.ConnOptions{}, "need a rediss:// URL"},
		{"bad skip_verify", url + "?skip_verify=maybe", broker.ConnOptions{}, "skip_verify"},
		{"unknown parameter", url + "?colour=blue", broker.ConnOptions{}, "unexpected option: colour"},
		{"bad database", "redis://app:" + pw + "@h/x", broker.ConnOptions{}, "invalid database"},
		{"bad scheme", "http://app:" + pw + "@h/0", broker.ConnOptions{}, "unsupported scheme"},
		// net/url's own errors quote the URL; these must not.
		{"bad port", "redis://app:" + pw + "@h:port/0", broker.ConnOptions{}, "invalid URL"},
		{"unescaped / in the password", "redis://:12/" + pw + "@h/0", broker.ConnOptions{}, "an @ after the host"},
		{"unescaped # in the password", "redis://:12#" + pw + "@h/0", broker.ConnOptions{}, "an @ after the host"},
		{"unescaped ? in the password", "redis://app:ab?" + pw + "@h/0", broker.ConnOptions{}, "an @ after the host"},
		{"bad escape in the password", "redis://app:%zz" + pw + "@h/0", broker.ConnOptions{}, "invalid URL"},
	} {
		b, err := broker.OpenWith(c.url, broker.Options{}, c.conn)
		if err == nil {
			_ = b.Close()
			t.Errorf("%s: no error", c.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, msg, c.want)
		}
		if strings.Contains(msg, pw) || strings.Contains(msg, ":12") || strings.Contains(msg, ":ab") || strings.Contains(msg, "%zz") {
			t.Errorf("%s: error %q shows the password", c.name, msg)
		}
		if !strings.HasPrefix(msg, "open ") {
			t.Errorf("%s: error %q does not start with open <redacted url>", c.name, msg)
		}
	}
}

// TestOpenACL: a user and password from the URL or from the options, against
// a miniredis that requires them.
func TestOpenACL(t *testing.T) {
	m := miniredis.RunT(t)
	m.RequireUserAuth("app", "s3cret")
	ctx := context.Background()

	for _, c := range []struct {
		url  string
		conn broker.ConnOptions
	}{
		{"redis://app:s3cret@" + m.Addr() + "/0", broker.ConnOptions{}},
		{"redis://" + m.Addr() + "/0", broker.ConnOptions{Username: "app", Password: "s3cret"}},
		{"redis://app:wrong@" + m.Addr() + "/0", broker.ConnOptions{Password: "s3cret"}},
	} {
		b, err := broker.OpenWith(c.url, broker.Options{}, c.conn)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, ctx, b)
		_ = b.Close()
	}

	for _, url := range []string{
		"redis://app:wrong@" + m.Addr() + "/0",
		"redis://" + m.Addr() + "/0", // default user: no access
		"redis://:s3cret@" + m.Addr() + "/0",
	} {
		b, err := broker.Open(url, broker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = b.Check(ctx)
		_ = b.Close()
		if err == nil {
			t.Errorf("%s: Check passed; want an auth error", broker.RedactURL(url))
		} else if !strings.Contains(err.Error(), "WRONGPASS") && !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("%s: %v; want WRONGPASS or NOAUTH", broker.RedactURL(url), err)
		}
	}
}

// TestOpenTLS: rediss:// against a miniredis that requires client
// certificates (the integration tests do it against redis-server).
func TestOpenTLS(t *testing.T) {
	pki, other := redistest.NewPKI(t, "a"), redistest.NewPKI(t, "b")
	serverPair, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(readFile(t, pki.CA))
	m := miniredis.NewMiniRedis()
	if err := m.StartTLS(&tls.Config{
		Certificates: []tls.Certificate{serverPair}, ClientCAs: clientCAs, ClientAuth: tls.RequireAndVerifyClientCert,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx := context.Background()
	url := "rediss://" + m.Addr() + "/0?dial_timeout=2s"

	good := broker.ConnOptions{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
	b, err := broker.OpenWith(url, broker.Options{}, good)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ctx, b)
	_ = b.Close()

	// The same through the URL's parameters, with the server's other name.
	_, port, _ := net.SplitHostPort(m.Addr())
	b, err = broker.Open("rediss://localhost:"+port+"/0?tls_ca="+pki.CA+"&tls_cert="+pki.ClientCert+"&tls_key="+pki.ClientKey, broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ctx, b)
	_ = b.Close()

	for _, c := range []struct {
		name string
		conn broker.ConnOptions
		want string
	}{
		{"no client certificate", broker.ConnOptions{CAFile: pki.CA}, "certificate"},
		{"client certificate of another CA", broker.ConnOptions{CAFile: pki.CA, CertFile: other.ClientCert, KeyFile: other.ClientKey}, "certificate"},
		{"server of another CA", broker.ConnOptions{CAFile: other.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, "certificate signed by unknown authority"},
		{"system CAs", broker.ConnOptions{CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, "certificate signed by unknown authority"},
		{"wrong server name", broker.ConnOptions{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "redis.example"}, "redis.example"},
	} {
		b, err := broker.OpenWith(url, broker.Options{}, c.conn)
		if err != nil {
			t.Fatal(err)
		}
		err = b.Check(ctx)
		_ = b.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check = %v; want an error about %q", c.name, err, c.want)
		}
	}

	// Not verifying the server (tests only) still needs the client certificate.
	b, err = broker.OpenWith(url, broker.Options{}, broker.ConnOptions{InsecureSkipVerify: true, CertFile: pki.ClientCert, KeyFile: pki.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ctx, b)
	_ = b.Close()
}

// roundTrip enqueues a task through b and reads it back.
func roundTrip(t *testing.T, ctx context.Context, b *broker.Redis) {
	t.Helper()
	m := newMsg(t, "sec.task", "default", 0, 1)
	if err := b.Enqueue(ctx, m); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	r, err := b.GetResult(ctx, m.ID)
	if err != nil {
		t.Fatalf("GetResult: %v", err)
	}
	if r.Status != task.StatusNew || r.TaskName != "sec.task" {
		t.Fatalf("GetResult: status %s task %q", r.Status, r.TaskName)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientOptions(t *testing.T) {
	o, err := broker.ClientOptions("rediss://app:s3cret@h:6380/2", broker.ConnOptions{ServerName: "n", PoolSize: 3})
	if err != nil || o.Addr != "h:6380" || o.DB != 2 || o.Username != "app" || o.Password != "s3cret" ||
		o.TLSConfig.ServerName != "n" || o.PoolSize != 3 || !o.ContextTimeoutEnabled {
		t.Fatalf("ClientOptions: %+v, %v", o, err)
	}
	_, err = broker.ClientOptions("redis://app:s3cret@h:port/0", broker.ConnOptions{})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.HasPrefix(err.Error(), "redis://app:xxxxx@h:port/0: ") {
		t.Fatalf("ClientOptions of a bad URL: %v", err)
	}
}

func TestOpenClusterURL(t *testing.T) {
	c, err := broker.NewClient("redis+cluster://app:s3cret@n1:7000,n2:7001,n3?pool_size=7&read_timeout=3s", broker.ConnOptions{PoolSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("redis+cluster:// gave a %T, want *redis.ClusterClient", c)
	}
	o := cc.Options()
	if got := strings.Join(o.Addrs, " "); got != "n1:7000 n2:7001 n3:6379" {
		t.Errorf("addrs %q; want n1:7000 n2:7001 n3:6379", got)
	}
	if m := o.MaintNotificationsConfig; m == nil || m.Mode != maintnotifications.ModeDisabled {
		t.Errorf("cluster: maintenance notifications not disabled: %+v", m)
	}
	if o.Username != "app" || o.Password != "s3cret" || o.PoolSize != 20 || o.ReadTimeout != 3*time.Second ||
		!o.ContextTimeoutEnabled || o.TLSConfig != nil {
		t.Errorf("user %q password %q pool %d read timeout %v context timeouts %v tls %v",
			o.Username, o.Password, o.PoolSize, o.ReadTimeout, o.ContextTimeoutEnabled, o.TLSConfig)
	}

	pki := redistest.NewPKI(t, "a")
	c, err = broker.NewClient("rediss+cluster://n1:7000,n2:7001/0?tls_ca="+pki.CA, broker.ConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Each node's certificate is checked against that node's own host.
	if tc := c.(*redis.ClusterClient).Options().TLSConfig; tc == nil || tc.RootCAs == nil || tc.ServerName != "" {
		t.Errorf("rediss+cluster:// TLS config %+v: want the CA and no fixed server name", tc)
	}
}

func TestOpenSentinelURL(t *testing.T) {
	c, err := broker.NewClient("redis+sentinel://app:s3cret@s1:26380,s2,s3:26382/mymaster/2?sentinel_password=sp&dial_timeout=2s", broker.ConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fc, ok := c.(*redis.Client)
	if !ok {
		t.Fatalf("redis+sentinel:// gave a %T, want *redis.Client", c)
	}
	o := fc.Options()
	if o.Username != "app" || o.Password != "s3cret" || o.DB != 2 || o.DialTimeout != 2*time.Second || !o.ContextTimeoutEnabled {
		t.Errorf("user %q password %q db %d dial timeout %v context timeouts %v", o.Username, o.Password, o.DB, o.DialTimeout, o.ContextTimeoutEnabled)
	}
	if !strings.Contains(o.Addr, "FailoverClient") {
		t.Errorf("addr %q: not a failover client", o.Addr)
	}
	for url, want := range map[string]string{
		"redis-sentinel://s1/m": "*redis.Client", "rediss-sentinel://s1/m": "*redis.Client",
		"redis-cluster://n1,n2": "*redis.ClusterClient", "rediss-cluster://n1": "*redis.ClusterClient",
	} {
		c, err := broker.NewClient(url, broker.ConnOptions{})
		if err != nil {
			t.Errorf("%s: %v", url, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != want {
			t.Errorf("%s gave a %s, want a %s", url, got, want)
		}
		c.Close()
	}
	if _, err := broker.ClientOptions("redis+sentinel://s1/mymaster", broker.ConnOptions{}); err == nil ||
		!strings.Contains(err.Error(), "NewClient") {
		t.Errorf("ClientOptions of a sentinel URL: %v; want an error pointing to NewClient", err)
	}
}

func TestOpenClusterAndSentinelErrors(t *testing.T) {
	const pw = "s3cret"
	for _, c := range []struct{ name, url, want string }{
		{"cluster database", "redis+cluster://:" + pw + "@n1,n2/3", "only database 0"},
		{"empty host", "redis+cluster://:" + pw + "@n1,,n2", "empty host"},
		{"sentinel without master", "redis+sentinel://:" + pw + "@s1,s2", "master-name"},
		{"sentinel path too long", "redis+sentinel://:" + pw + "@s1/m/0/x", "master-name"},
		{"sentinel bad db", "redis+sentinel://:" + pw + "@s1/m/x", "invalid database"},
		{"unknown kind", "redis+shard://:" + pw + "@n1", "unsupported scheme"},
		{"unix cluster", "unix+cluster:///tmp/x.sock", "unsupported scheme"},
		{"sentinel password outside sentinel", "redis+cluster://n1?sentinel_password=" + pw, "redis+sentinel://"},
		{"TLS with redis+cluster://", "redis+cluster://:" + pw + "@n1?skip_verify=true", "rediss+cluster://"},
		{"unknown option", "redis+cluster://:" + pw + "@n1?colour=blue", "unexpected option: colour"},
	} {
		b, err := broker.Open(c.url, broker.Options{})
		if err == nil {
			_ = b.Close()
			t.Errorf("%s: no error", c.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, pw) {
			t.Errorf("%s: error %q; want it to contain %q and not the password", c.name, msg, c.want)
		}
	}
}
