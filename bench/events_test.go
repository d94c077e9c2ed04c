package main

import (
	"io"
	"os"
	"testing"
)

func TestEventsFlag(t *testing.T) {
	for arg, want := range map[string]string{"auto": "", "off": "off", "publish": "publish", "sharded": "sharded"} {
		cfg, _, err := parseFlags([]string{"--events", arg}, io.Discard)
		if err != nil || cfg.Events != want {
			t.Errorf("--events %s: %q, %v; want %q", arg, cfg.Events, err, want)
		}
	}
	if _, _, err := parseFlags([]string{"--events", "loud"}, io.Discard); err == nil {
		t.Error("--events loud was accepted")
	}
	t.Setenv(eventsEnv, "off")
	if o := brokerOptions(); o.Events != "off" {
		t.Errorf("brokerOptions with %s=off: %q", eventsEnv, o.Events)
	}
	_ = os.Unsetenv(eventsEnv)
}
