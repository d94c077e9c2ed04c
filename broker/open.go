package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
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
// connection (Close closes it). The URL is
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://...   (TLS)
//
// where user is a Redis ACL user (none: the default user) and the options
// are go-redis' (dial_timeout, pool_size, ...) plus, for rediss://,
//
//	tls_ca=/path/ca.pem         CAs that verify the server (default: the system's)
//	tls_cert=/path/client.pem   client certificate, for tls-auth-clients
//	tls_key=/path/client.key    its key (default: in tls_cert)
//	tls_server_name=name        name to verify the certificate against (default: host)
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
func OpenWith(rawURL string, opts Options, conn ConnOptions) (*Redis, error) {
	ropts, err := redisOptions(rawURL, conn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", RedactURL(rawURL), err)
	}
	b := New(redis.NewClient(ropts), opts)
	b.owned = true
	return b, nil
}

// ClientOptions returns the go-redis options OpenWith would use for url and
// conn (to validate them early, or to open another client to the same
// Redis). Its errors start with the redacted URL and never contain the
// password.
func ClientOptions(url string, conn ConnOptions) (*redis.Options, error) {
	ropts, err := redisOptions(url, conn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RedactURL(url), err)
	}
	return ropts, nil
}

// tlsSettings are the file-based TLS settings, from the URL or ConnOptions.
type tlsSettings struct {
	ca, cert, key, serverName string
	skipVerify                bool
}

func (s tlsSettings) any() bool {
	return s.ca != "" || s.cert != "" || s.key != "" || s.serverName != "" || s.skipVerify
}

// redisOptions turns the URL and conn into go-redis options. Its errors do
// not contain the URL.
func redisOptions(rawURL string, conn ConnOptions) (*redis.Options, error) {
	if _, rest, ok := strings.Cut(rawURL, "://"); ok {
		if i := strings.IndexAny(rest, "/?#"); i >= 0 && strings.Contains(rest[i:], "@") {
			// Most likely a password with an unescaped / ? or #, which
			// would be taken for the end of the host, and the password
			// for the path, query or fragment (and end up in errors).
			return nil, errors.New("invalid URL: an @ after the host (" + percentEncodeHint + ")")
		}
	}
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, urlError(rawURL, err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
		return nil, fmt.Errorf("unsupported scheme %q: want redis://, rediss:// (TLS) or unix://", u.Scheme)
	}
	// Take our own query parameters out: redis.ParseURL rejects them.
	q := u.Query()
	var ts tlsSettings
	ts.ca, ts.cert, ts.key, ts.serverName = q.Get(paramCA), q.Get(paramCert), q.Get(paramKey), q.Get(paramServerName)
	if q.Has(paramSkipVerify) {
		if v := q.Get(paramSkipVerify); v != "" {
			if ts.skipVerify, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("invalid %s=%q: want true or false", paramSkipVerify, v)
			}
		} else {
			ts.skipVerify = true // ?skip_verify alone
		}
	}
	for _, p := range []string{paramCA, paramCert, paramKey, paramServerName, paramSkipVerify} {
		q.Del(p)
	}
	u.RawQuery = q.Encode()

	// ConnOptions win over the URL, field by field.
	ts.ca = or(conn.CAFile, ts.ca)
	ts.cert = or(conn.CertFile, ts.cert)
	ts.key = or(conn.KeyFile, ts.key)
	ts.serverName = or(conn.ServerName, ts.serverName)
	ts.skipVerify = ts.skipVerify || conn.InsecureSkipVerify
	if u.Scheme != "rediss" && (ts.any() || conn.TLS != nil) {
		return nil, errors.New("TLS options need a rediss:// URL (redis:// is unencrypted)")
	}

	ropts, err := redis.ParseURL(u.String())
	if err != nil {
		// About the path or a query option: the user info is not in them.
		return nil, err
	}
	if conn.Username != "" {
		ropts.Username = conn.Username
	}
	if conn.Password != "" {
		ropts.Password = conn.Password
	}
	if ropts.TLSConfig != nil { // rediss://
		if ropts.TLSConfig, err = tlsConfig(u.Hostname(), conn.TLS, ts); err != nil {
			return nil, err
		}
	}
	ropts.PoolSize = max(ropts.PoolSize, conn.PoolSize)
	// Context deadlines bound each command (the worker relies on it).
	ropts.ContextTimeoutEnabled = true
	return ropts, nil
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
