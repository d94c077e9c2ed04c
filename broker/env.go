package broker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gotasks/gotasks/serializer"
)

// Environment variables that configure a backend. ConfigFromEnv and
// OpenFromEnv read them, and so does the worker command (package cli),
// through the same code: a producer and a worker that share an environment
// agree on the key prefix, how long results are kept, and so on. A
// variable that is unset or empty leaves its setting at the default.
const (
	EnvRedisURL      = "GOTASKS_REDIS_URL"       // the URL Open takes; default DefaultRedisURL
	EnvRedisUsername = "GOTASKS_REDIS_USERNAME"  // ConnOptions.Username
	EnvRedisPassword = "GOTASKS_REDIS_PASSWORD"  // ConnOptions.Password
	EnvTLSCA         = "GOTASKS_TLS_CA"          // ConnOptions.CAFile
	EnvTLSCert       = "GOTASKS_TLS_CERT"        // ConnOptions.CertFile
	EnvTLSKey        = "GOTASKS_TLS_KEY"         // ConnOptions.KeyFile
	EnvTLSServerName = "GOTASKS_TLS_SERVER_NAME" // ConnOptions.ServerName
	EnvTLSSkipVerify = "GOTASKS_TLS_SKIP_VERIFY" // ConnOptions.InsecureSkipVerify: true or false
	EnvPrefix        = "GOTASKS_PREFIX"          // Options.Prefix
	EnvResultTTL     = "GOTASKS_RESULT_TTL"      // Options.ResultTTL: a Go duration, such as 168h
	EnvFailedTTL     = "GOTASKS_FAILED_TTL"      // Options.FailedTTL: a Go duration, such as 720h
	EnvSerializer    = "GOTASKS_SERIALIZER"      // Options.Serializer: msgpack or json
	EnvMaxArgsSize   = "GOTASKS_MAX_ARGS_SIZE"   // Options.MaxArgsSize: bytes
	EnvWaitReplicas  = "GOTASKS_WAIT_REPLICAS"   // Options.WaitReplicas
	EnvWaitTimeout   = "GOTASKS_WAIT_TIMEOUT"    // Options.WaitTimeout: a Go duration
)

// DefaultRedisURL is the Redis of a Config whose URL is not set.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// envSetters sets, for each variable, its field of a Config from a value.
// Its errors say what is wrong with the value without naming the variable
// (the caller knows whether the value came from the variable or a flag);
// they never contain a password.
var envSetters = map[string]func(c *Config, v string) error{
	EnvRedisURL: func(c *Config, v string) error {
		if v == "" {
			return errors.New("want a Redis URL, not the empty string")
		}
		c.URL = v
		return nil
	},
	EnvRedisUsername: func(c *Config, v string) error { c.Conn.Username = v; return nil },
	EnvRedisPassword: func(c *Config, v string) error { c.Conn.Password = v; return nil },
	EnvTLSCA:         func(c *Config, v string) error { c.Conn.CAFile = v; return nil },
	EnvTLSCert:       func(c *Config, v string) error { c.Conn.CertFile = v; return nil },
	EnvTLSKey:        func(c *Config, v string) error { c.Conn.KeyFile = v; return nil },
	EnvTLSServerName: func(c *Config, v string) error { c.Conn.ServerName = v; return nil },
	EnvTLSSkipVerify: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, not %q", v)
		}
		c.Conn.InsecureSkipVerify = b
		return nil
	},
	EnvPrefix: func(c *Config, v string) error {
		if v == "" {
			return errors.New("want a key prefix, not the empty string")
		}
		c.Options.Prefix = v
		return nil
	},
	EnvResultTTL: func(c *Config, v string) error {
		d, err := positiveDuration(v, "168h")
		c.Options.ResultTTL = d
		return err
	},
	EnvFailedTTL: func(c *Config, v string) error {
		d, err := positiveDuration(v, "720h")
		c.Options.FailedTTL = d
		return err
	},
	EnvSerializer: func(c *Config, v string) error {
		s, err := serializer.ByName(v)
		if err != nil {
			return fmt.Errorf("want msgpack, json or a name made known with serializer.Register, not %q", v)
		}
		c.Options.Serializer = s
		return nil
	},
	EnvMaxArgsSize: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("want a number of bytes, at least 1, not %q", v)
		}
		c.Options.MaxArgsSize = n
		return nil
	},
	EnvWaitReplicas: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a number of replicas, 0 or more, not %q", v)
		}
		c.Options.WaitReplicas = n
		return nil
	},
	EnvWaitTimeout: func(c *Config, v string) error {
		d, err := positiveDuration(v, "500ms")
		c.Options.WaitTimeout = d
		return err
	},
}

// EnvVars returns the names of the variables ConfigFromEnv reads.
func EnvVars() []string {
	return []string{
		EnvRedisURL, EnvRedisUsername, EnvRedisPassword,
		EnvTLSCA, EnvTLSCert, EnvTLSKey, EnvTLSServerName, EnvTLSSkipVerify,
		EnvPrefix, EnvResultTTL, EnvFailedTTL, EnvSerializer, EnvMaxArgsSize, EnvWaitReplicas, EnvWaitTimeout,
	}
}

func positiveDuration(v, example string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive Go duration such as %s, not %q", example, v)
	}
	return d, nil
}

// Config is everything needed to open a backend: which Redis, how to
// connect to it, and the backend's Options. ConfigFromEnv fills it from
// the environment; Open opens it.
type Config struct {
	URL     string // see Open; ConfigFromEnv sets DefaultRedisURL when unset
	Conn    ConnOptions
	Options Options
}

// Set sets the setting that the environment variable named variable (one
// of the Env constants) configures, from value as that variable would
// hold it. The worker command's flags call it too, so that a flag and its
// variable take the same values. Its error says what is wrong with the
// value, without naming the variable; an unknown variable is an error.
func (c *Config) Set(variable, value string) error {
	set, ok := envSetters[variable]
	if !ok {
		return fmt.Errorf("gotasks: %s is not a configuration variable", variable)
	}
	return set(c, value)
}

// EnvError is a variable of the environment whose value ConfigFromEnv
// cannot take.
type EnvError struct {
	Variable string
	Err      error // what is wrong with its value
}

func (e *EnvError) Error() string { return "gotasks: $" + e.Variable + ": " + e.Err.Error() }
func (e *EnvError) Unwrap() error { return e.Err }

// ConfigFromEnv returns the Config the environment variables describe (the
// Env constants): the URL (DefaultRedisURL when unset), the connection
// settings, and the Options those variables set; the Options they do not
// set are left zero, so that New applies its defaults. A variable that is
// set but does not parse makes an error (errors.As: *EnvError; every bad
// variable is named), returned with the Config of the others.
func ConfigFromEnv() (Config, error) {
	c := Config{URL: DefaultRedisURL}
	var errs []error
	for _, name := range EnvVars() {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if err := c.Set(name, v); err != nil {
			errs = append(errs, &EnvError{Variable: name, Err: err})
		}
	}
	return c, errors.Join(errs...)
}

// Open opens the backend c describes: OpenWith(c.URL, c.Options, c.Conn).
func (c Config) Open() (*Redis, error) { return OpenWith(c.URL, c.Options, c.Conn) }

// OpenFromEnv opens the backend the environment describes (see
// ConfigFromEnv), with the fields of opts that are set (not zero) taking
// precedence over the variables: a producer that calls
//
//	b, err := broker.OpenFromEnv(broker.Options{})
//
// and a worker command started in the same environment use the same
// Redis, prefix, result TTL, serializer and limits. A variable that does
// not parse is an error naming it, before any connection is made; like
// Open, it does not connect (see Check).
func OpenFromEnv(opts Options) (*Redis, error) {
	c, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	c.Options = opts.over(c.Options)
	return c.Open()
}

// over returns o with the zero fields that a variable can set taken from
// base (the fields no variable sets are o's in any case).
func (o Options) over(base Options) Options {
	if o.Prefix == "" {
		o.Prefix = base.Prefix
	}
	if o.ResultTTL == 0 {
		o.ResultTTL = base.ResultTTL
	}
	if o.Serializer == nil {
		o.Serializer = base.Serializer
	}
	if o.MaxArgsSize == 0 {
		o.MaxArgsSize = base.MaxArgsSize
	}
	if o.WaitReplicas == 0 {
		o.WaitReplicas = base.WaitReplicas
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = base.WaitTimeout
	}
	return o
}
