package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// The demo is README's first command; it must finish and show every kind
// of outcome it promises.
func TestDemo(t *testing.T) {
	t.Cleanup(func() { task.Configure(nil) })
	cfg, err := worker.ParseFlags("worker demo", []string{"--log-level", "error"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := demo(cfg, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"progress: 6/6 finished",
		"demo.add 3+3, priority 50                  COMPLETE",
		"demo.add 20+22, priority 100, RunAfter 1s  COMPLETE",
		"FAILED",
		"demo.fail: the disk is full",
		"priority 500 is out of range",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
}
