package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/serializer"
)

// ConnOptions are connection settings given next to the URL, for what is
// awkward or unsafe to put in it (a password from a secret store, TLS
// files, a ready-made *tls.Config).
//
// Each non-zero field overrides the same setting in the URL (the user name
// and password in redis://user:password@host, the tls_* query parameters);
// zero fields leave the URL's setting alone. PoolSize is a minimum: a
// larger pool_size in the URL wins.
//
// TLS settings need a rediss:// URL: with redis:// they are an error rather
// than a silently unencrypted connection.
type ConnOptions struct {
	Username string // ACL user; empty: the URL's, else the default user
	Password string // empty: the URL's (if any)

	// TLS is the base TLS configuration (cloned, never modified). The other
	// TLS fields are applied on top of it. Nil: TLS 1.2 or later, the
	// system's root CAs, the URL's host as server name.
	TLS        *tls.Config
	CAFile     string // PEM file of the CAs that verify the server, instead of the system's
	CertFile   string // PEM client certificate (for tls-auth-clients); may also hold the key
	KeyFile    string // PEM key of CertFile; default CertFile
	ServerName string // name the server's certificate is verified against; default the URL's host
	// InsecureSkipVerify accepts any server certificate. For tests only:
	// the connection is encrypted but anyone in between can read it.
	InsecureSkipVerify bool

	PoolSize int // at least this many connections (0: go-redis' default)
}

// URL query parameters that Open takes itself (redis.ParseURL handles the
// others and rejects unknown ones). Each is also a ConnOptions field.
const (
	paramCA         = "tls_ca"
	paramCert       = "tls_cert"
	paramKey        = "tls_key"
	paramServerName = "tls_server_name"
	paramSkipVerify = "skip_verify"
)

// Open connects to the Redis at url and returns a backend that owns the
// connection (Close closes it). The URL names one of three deployments:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://...                       one Redis, TLS
//	unix://[[user]:password@]/path/redis.sock[?db=N]
//
//	redis+cluster://[[user]:password@]host:port[,host:port...][?option=value&...]
//	rediss+cluster://...               Redis Cluster, TLS
//
//	redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db][?option=value&...]
//	rediss+sentinel://...              Redis Sentinel, TLS
//
// (redis-cluster:// and redis-sentinel:// are accepted too.) A cluster URL
// lists some of the cluster's nodes (the client finds the
// rest) and has no database number. A sentinel URL lists the sentinels
// and names the master they watch; the user and password are those of
// the Redis master and replicas, and sentinel_username= and
// sentinel_password= those of the sentinels, if they need any. user is a
// Redis ACL user (none: the default user) and the options are go-redis'
// (dial_timeout, pool_size, ...) plus, for TLS,
//
//	tls_ca=/path/ca.pem         CAs that verify the server (default: the system's)
//	tls_cert=/path/client.pem   client certificate, for tls-auth-clients
//	tls_key=/path/client.key    its key (default: in tls_cert)
//	tls_server_name=name        name to verify the certificate against (default: each node's host)
//	skip_verify=true            do not verify the server: for tests only
//
// Special characters in the user name and password must be percent-encoded.
// Open does not connect: the first command does (see Check). Errors never
// contain the password.
func Open(url string, opts Options) (*Redis, error) {
	return OpenWith(url, opts, ConnOptions{})
}

// OpenWith is Open with connection settings that override the URL's; see
// ConnOptions.
//
// A Serializer that ByName does not know is refused: the tasks name their
// serializer, and a worker could not decode them (serializer.Register
// makes one known, on both sides).
func OpenWith(rawURL string, opts Options, conn ConnOptions) (*Redis, error) {
	if opts.Serializer != nil {
		if _, err := serializer.ByName(opts.Serializer.Name()); err != nil {
			return nil, fmt.Errorf("open: Options.Serializer %T: %w", opts.Serializer, err)
		}
	}
	client, err := NewClient(rawURL, conn)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	b := New(client, opts)
	b.owned = true
	return b, nil
}

// NewClient returns a go-redis client for any URL Open takes: a
// *redis.Client for one Redis or Sentinel (a failover client), a
// *redis.ClusterClient for a cluster. It does not connect. Its errors start
// with the redacted URL and never contain the password.
func NewClient(url string, conn ConnOptions) (redis.UniversalClient, error) {
	d, err := parseURL(url, conn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RedactURL(url), err)
	}
	switch {
	case d.cluster != nil:
		return redis.NewClusterClient(d.cluster), nil
	case d.failover != nil:
		return redis.NewFailoverClient(d.failover), nil
	}
	return redis.NewClient(d.single), nil
}

// ClientOptions returns the go-redis options OpenWith would use for a
// single-Redis url and conn (to validate them early, or to open another
// client to the same Redis); for cluster and sentinel URLs use NewClient.
// Its errors start with the redacted URL and never contain the password.
func ClientOptions(url string, conn ConnOptions) (*redis.Options, error) {
	d, err := parseURL(url, conn)
	if err == nil && d.single == nil {
		err = errors.New("a cluster or sentinel URL has no single-node options (use NewClient)")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RedactURL(url), err)
	}
	return d.single, nil
}

// tlsSettings are the file-based TLS settings, from the URL or ConnOptions.
type tlsSettings struct {
	ca, cert, key, serverName string
	skipVerify                bool
}

func (s tlsSettings) any() bool {
	return s.ca != "" || s.cert != "" || s.key != "" || s.serverName != "" || s.skipVerify
}

// deployment is the client configuration a URL describes: exactly one of
// its fields is set.
type deployment struct {
	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// Default ports of the hosts in cluster and sentinel URLs.
const (
	defaultRedisPort    = "6379"
	defaultSentinelPort = "26379"
)

// Query parameters of sentinel URLs for the sentinels' own credentials.
const (
	paramSentinelUser = "sentinel_username"
	paramSentinelPass = "sentinel_password"
)

// parseURL turns the URL and conn into go-redis options. Its errors do not
// contain the URL.
func parseURL(rawURL string, conn ConnOptions) (deployment, error) {
	var d deployment
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if ok {
		if i := strings.IndexAny(rest, "/?#"); i >= 0 && strings.Contains(rest[i:], "@") {
			// Most likely a password with an unescaped / ? or #, which
			// would be taken for the end of the host, and the password
			// for the path, query or fragment (and end up in errors).
			return d, errors.New("invalid URL: an @ after the host (" + percentEncodeHint + ")")
		}
	}
	base, kind, _ := strings.Cut(strings.ToLower(scheme), "+")
	if kind == "" {
		// redis-sentinel:// and redis-cluster:// are spellings seen in
		// other clients' documentation: take them too.
		if b, k, ok := strings.Cut(base, "-"); ok {
			base, kind = b, k
		}
	}
	if base != "redis" && base != "rediss" && (base != "unix" || kind != "") ||
		kind != "" && kind != "cluster" && kind != "sentinel" {
		return d, fmt.Errorf("unsupported scheme %q: want redis://, rediss:// (TLS), unix://, "+
			"redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://", scheme)
	}
	// Cluster and sentinel URLs list several hosts; net/url takes one, so
	// the first stays in the URL and the others are set aside.
	var hosts []string
	if kind != "" {
		authEnd := strings.IndexAny(rest, "/?#")
		if authEnd < 0 {
			authEnd = len(rest)
		}
		auth, tail := rest[:authEnd], rest[authEnd:]
		userinfo, list := "", auth
		if at := strings.LastIndex(auth, "@"); at >= 0 {
			userinfo, list = auth[:at+1], auth[at+1:]
		}
		port := defaultRedisPort
		if kind == "sentinel" {
			port = defaultSentinelPort
		}
		for _, h := range strings.Split(list, ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				return d, errors.New("invalid URL: an empty host in the host list")
			}
			if _, _, err := net.SplitHostPort(h); err != nil {
				h = net.JoinHostPort(strings.Trim(h, "[]"), port)
			}
			hosts = append(hosts, h)
		}
		rawURL = base + "://" + userinfo + hosts[0] + tail
	}
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return d, urlError(rawURL, err)
	}
	u.Scheme = base
	// Take our own query parameters out: go-redis rejects them.
	q := u.Query()
	var ts tlsSettings
	ts.ca, ts.cert, ts.key, ts.serverName = q.Get(paramCA), q.Get(paramCert), q.Get(paramKey), q.Get(paramServerName)
	if q.Has(paramSkipVerify) {
		if v := q.Get(paramSkipVerify); v != "" {
			if ts.skipVerify, err = strconv.ParseBool(v); err != nil {
				return d, fmt.Errorf("invalid %s=%q: want true or false", paramSkipVerify, v)
			}
		} else {
			ts.skipVerify = true // ?skip_verify alone
		}
	}
	sentinelUser, sentinelPass := q.Get(paramSentinelUser), q.Get(paramSentinelPass)
	if kind != "sentinel" && (q.Has(paramSentinelUser) || q.Has(paramSentinelPass)) {
		return d, errors.New("sentinel_username and sentinel_password need a redis+sentinel:// URL")
	}
	for _, p := range []string{paramCA, paramCert, paramKey, paramServerName, paramSkipVerify, paramSentinelUser, paramSentinelPass} {
		q.Del(p)
	}

	// ConnOptions win over the URL, field by field.
	ts.ca = or(conn.CAFile, ts.ca)
	ts.cert = or(conn.CertFile, ts.cert)
	ts.key = or(conn.KeyFile, ts.key)
	ts.serverName = or(conn.ServerName, ts.serverName)
	ts.skipVerify = ts.skipVerify || conn.InsecureSkipVerify
	if base != "rediss" && (ts.any() || conn.TLS != nil) {
		return d, fmt.Errorf("TLS options need a %s URL (%s is unencrypted)",
			strings.Replace(scheme, "redis", "rediss", 1)+"://", scheme+"://")
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	user, pass = or(conn.Username, user), or(conn.Password, pass)
	var tlsConf *tls.Config
	if base == "rediss" {
		// In a cluster or behind sentinels every node has its own host;
		// with no server name, each connection verifies its own.
		host := u.Hostname()
		if kind != "" {
			host = ""
		}
		if tlsConf, err = tlsConfig(host, conn.TLS, ts); err != nil {
			return d, err
		}
	}

	switch kind {
	case "cluster":
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return d, fmt.Errorf("invalid URL path %q: a cluster has only database 0", u.Path)
		}
		u.Path, u.User = "", nil
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		u.RawQuery = q.Encode()
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return d, err
		}
		o.Username, o.Password, o.TLSConfig = user, pass, tlsConf
		o.PoolSize = max(o.PoolSize, conn.PoolSize)
		o.ContextTimeoutEnabled = true // context deadlines bound each command (the worker relies on it)
		o.MaintNotificationsConfig = noMaintNotifications()
		d.cluster = o
	case "sentinel":
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" || len(parts) > 2 {
			return d, errors.New("invalid URL path: a sentinel URL ends in /master-name or /master-name/db")
		}
		q.Set("master_name", parts[0])
		if len(parts) == 2 {
			q.Set("db", parts[1])
		}
		u.Path, u.User = "", nil
		if sentinelUser != "" || sentinelPass != "" {
			u.User = neturl.UserPassword(sentinelUser, sentinelPass)
		}
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		u.RawQuery = q.Encode()
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return d, err
		}
		o.Username, o.Password, o.TLSConfig = user, pass, tlsConf
		o.PoolSize = max(o.PoolSize, conn.PoolSize)
		o.ContextTimeoutEnabled = true
		d.failover = o
	default:
		u.RawQuery = q.Encode()
		o, err := redis.ParseURL(u.String())
		if err != nil {
			// About the path or a query option: the user info is not in them.
			return d, err
		}
		o.Username, o.Password = user, pass
		if o.TLSConfig != nil { // rediss://
			o.TLSConfig = tlsConf
		}
		o.PoolSize = max(o.PoolSize, conn.PoolSize)
		o.ContextTimeoutEnabled = true
		o.MaintNotificationsConfig = noMaintNotifications()
		d.single = o
	}
	return d, nil
}

// noMaintNotifications turns off go-redis' maintenance notifications (a
// Redis Enterprise / Cloud feature of RESP3). On servers without them
// (Redis before 8, miniredis) go-redis' fallback writes the client's options
// while other connections read them: a data race that -race reports (seen
// in 3 of 8 runs of the broker tests).
func noMaintNotifications() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

func tlsConfig(host string, base *tls.Config, ts tlsSettings) (*tls.Config, error) {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if ts.serverName != "" {
		c.ServerName = ts.serverName
	} else if c.ServerName == "" {
		c.ServerName = host
	}
	if ts.skipVerify {
		c.InsecureSkipVerify = true
	}
	if ts.ca != "" {
		pem, err := os.ReadFile(ts.ca)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", ts.ca)
		}
		c.RootCAs = pool
	}
	if ts.key != "" && ts.cert == "" {
		return nil, errors.New("a TLS key file needs a certificate file (tls_cert, --tls-cert)")
	}
	if ts.cert != "" {
		key := or(ts.key, ts.cert)
		pair, err := tls.LoadX509KeyPair(ts.cert, key)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s, key %s: %w", ts.cert, key, err)
		}
		c.Certificates = append(c.Certificates, pair)
	}
	return c, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// urlError describes a URL that does not parse without quoting it: the
// parse error of net/url contains the whole URL, and its detail (a bad port,
// a bad escape) can be a piece of a password with special characters.
func urlError(rawURL string, err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) && !strings.Contains(rawURL, "@") {
		return fmt.Errorf("invalid URL: %w", ue.Err)
	}
	return errors.New("invalid URL (" + percentEncodeHint + ")")
}

const percentEncodeHint = "percent-encode special characters such as @ : / ? # % in the user name and password"

// Query parameters whose value RedactURL hides: any whose name contains
// one of these.
var secretParams = []string{"pass", "pwd", "secret", "token", "auth", "credential"}

// RedactURL returns url with any password replaced by "xxxxx", for logs and
// errors: the password in the user info (redis://user:password@host,
// redis://:password@host, and redis://password@host, which some clients
// read as a password) and the values of query parameters such as password=.
// It works on the text, so it also redacts URLs that do not parse; when it
// cannot tell where the user info ends, it hides more rather than less.
func RedactURL(url string) string {
	prefix, rest := "", url
	if scheme, r, ok := strings.Cut(url, "://"); ok {
		prefix, rest = scheme+"://", r
	}
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	if !strings.Contains(rest[authEnd:], "@") {
		// The usual case: any @ ends the user info.
		if at := strings.LastIndex(rest[:authEnd], "@"); at >= 0 {
			prefix += redactUserinfo(rest[:at]) + "@"
			rest = rest[at+1:]
		}
		return prefix + redactQuery(rest)
	}
	// An @ after a / ? or #: a password with one of those unescaped, or an
	// @ in the path or a query value. Everything up to the last @ may be
	// user info.
	at := strings.LastIndex(rest, "@")
	head, tail := rest[:at], rest[at+1:]
	if strings.Contains(head, "?") {
		// The @ may be inside a query value, which then goes on in tail.
		return prefix + "xxxxx"
	}
	return prefix + redactUserinfo(head) + "@" + redactQuery(tail)
}

// redactUserinfo hides the password of user[:password]; a lone name may be
// a password too.
func redactUserinfo(ui string) string {
	user, _, hasPass := strings.Cut(ui, ":")
	switch {
	case hasPass && !strings.ContainsAny(user, "/?#"):
		return user + ":xxxxx"
	case ui == "":
		return ""
	default:
		return "xxxxx"
	}
}

// redactQuery hides the values of secret-looking query parameters in s
// (host, path, query and fragment), keeping everything else as it is.
func redactQuery(s string) string {
	i := strings.IndexByte(s, '?')
	if i < 0 {
		return s
	}
	query, frag, hasFrag := strings.Cut(s[i+1:], "#")
	parts := strings.Split(query, "&")
	for j, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		name := k
		if un, err := neturl.QueryUnescape(k); err == nil {
			name = un
		}
		name = strings.ToLower(name)
		for _, secret := range secretParams {
			if strings.Contains(name, secret) {
				parts[j] = k + "=xxxxx"
				break
			}
		}
	}
	out := s[:i+1] + strings.Join(parts, "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}
