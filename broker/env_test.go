package broker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
)

// clearEnv unsets every variable ConfigFromEnv reads, for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, v := range broker.EnvVars() {
		t.Setenv(v, "")
	}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	clearEnv(t)
	c, err := broker.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != broker.DefaultRedisURL || c.Conn != (broker.ConnOptions{}) || c.Options.Prefix != "" || c.Options.ResultTTL != 0 ||
		c.Options.Serializer != nil || c.Options.MaxArgsSize != 0 || c.Options.WaitReplicas != 0 || c.Options.WaitTimeout != 0 {
		t.Errorf("nothing set: %+v", c)
	}
}

func TestConfigFromEnvReadsEveryVariable(t *testing.T) {
	clearEnv(t)
	for k, v := range map[string]string{
		broker.EnvRedisURL: "rediss://redis.example:6380/2", broker.EnvRedisUsername: "app", broker.EnvRedisPassword: "s3cret",
		broker.EnvTLSCA: "/ca.pem", broker.EnvTLSCert: "/c.pem", broker.EnvTLSKey: "/k.pem", broker.EnvTLSServerName: "name",
		broker.EnvTLSSkipVerify: "true", broker.EnvPrefix: "app", broker.EnvResultTTL: "168h", broker.EnvSerializer: "json",
		broker.EnvMaxArgsSize: "4096", broker.EnvWaitReplicas: "1", broker.EnvWaitTimeout: "250ms",
	} {
		t.Setenv(k, v)
	}
	c, err := broker.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	wantConn := broker.ConnOptions{Username: "app", Password: "s3cret", CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem",
		ServerName: "name", InsecureSkipVerify: true}
	o := c.Options
	if c.URL != "rediss://redis.example:6380/2" || c.Conn != wantConn || o.Prefix != "app" || o.ResultTTL != 168*time.Hour ||
		o.Serializer != (serializer.JSON{}) || o.MaxArgsSize != 4096 || o.WaitReplicas != 1 || o.WaitTimeout != 250*time.Millisecond {
		t.Errorf("config %+v", c)
	}
}

// Every variable that does not parse is named in the error (and the
// error never shows a password); the others are read.
func TestConfigFromEnvNamesBadVariables(t *testing.T) {
	clearEnv(t)
	t.Setenv(broker.EnvRedisPassword, "s3cret")
	t.Setenv(broker.EnvPrefix, "app")
	bad := map[string]string{
		broker.EnvResultTTL: "a week", broker.EnvSerializer: "yaml", broker.EnvMaxArgsSize: "1MiB",
		broker.EnvWaitReplicas: "-1", broker.EnvWaitTimeout: "0s", broker.EnvTLSSkipVerify: "maybe",
	}
	for k, v := range bad {
		t.Setenv(k, v)
	}
	c, err := broker.ConfigFromEnv()
	var envErr *broker.EnvError
	if !errors.As(err, &envErr) {
		t.Fatalf("err = %v", err)
	}
	for k := range bad {
		if !strings.Contains(err.Error(), "$"+k+":") {
			t.Errorf("the error does not name %s: %v", k, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if c.Options.Prefix != "app" || c.Conn.Password != "s3cret" {
		t.Errorf("the good variables were not read: %+v", c)
	}
	if _, err := broker.OpenFromEnv(broker.Options{}); !errors.As(err, &envErr) {
		t.Errorf("OpenFromEnv with bad variables: %v", err)
	}
}

func TestConfigSetRefusesUnknownVariables(t *testing.T) {
	var c broker.Config
	if err := c.Set("GOTASKS_COLOUR", "blue"); err == nil {
		t.Error("no error")
	}
	if err := c.Set(broker.EnvPrefix, ""); err == nil {
		t.Error("empty prefix: no error")
	}
	if err := c.Set(broker.EnvRedisPassword, ""); err != nil || c.Conn.Password != "" {
		t.Errorf("empty password (none): %v", err)
	}
}

// OpenFromEnv: the environment sets what opts leaves zero; what opts sets
// wins.
func TestOpenFromEnv(t *testing.T) {
	clearEnv(t)
	m := miniredis.RunT(t)
	t.Setenv(broker.EnvRedisURL, "redis://"+m.Addr()+"/0")
	t.Setenv(broker.EnvPrefix, "env")
	t.Setenv(broker.EnvResultTTL, "168h")
	t.Setenv(broker.EnvSerializer, "json")
	t.Setenv(broker.EnvMaxArgsSize, "4096")
	t.Setenv(broker.EnvWaitReplicas, "1")
	t.Setenv(broker.EnvWaitTimeout, "2s")
	b, err := broker.OpenFromEnv(broker.Options{Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	o := b.Options()
	if o.Name != "mine" || o.Prefix != "env" || o.ResultTTL != 168*time.Hour || o.Serializer.Name() != "json" ||
		o.MaxArgsSize != 4096 || o.WaitReplicas != 1 || o.WaitTimeout != 2*time.Second {
		t.Errorf("from the environment: %+v", o)
	}
	if err := b.Check(t.Context()); err != nil {
		t.Errorf("not connected to $GOTASKS_REDIS_URL: %v", err)
	}

	explicit := broker.Options{Prefix: "mine", ResultTTL: time.Hour, Serializer: serializer.Msgpack{}, MaxArgsSize: 10,
		WaitReplicas: 2, WaitTimeout: time.Second}
	b2, err := broker.OpenFromEnv(explicit)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b2.Close() }()
	o = b2.Options()
	if o.Prefix != "mine" || o.ResultTTL != time.Hour || o.Serializer.Name() != "msgpack" || o.MaxArgsSize != 10 ||
		o.WaitReplicas != 2 || o.WaitTimeout != time.Second {
		t.Errorf("explicit options must win: %+v", o)
	}
}
