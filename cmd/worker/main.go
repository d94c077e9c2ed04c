// Command worker runs gotasks tasks from Redis (django-tasks' db_worker).
//
//	worker --redis-url redis://127.0.0.1:6379/0 --queue default --concurrency 8
//	worker demo        # embedded in-memory Redis, demo tasks, results printed
//	worker admin queues  # inspect and manage queues (see worker admin --help)
//	worker dashboard     # the web dashboard alone, on 127.0.0.1:8080
//
// Go cannot load code at run time, so a real deployment builds its own
// worker: a main that imports the packages defining its tasks and calls
// worker.Main(os.Args). This command is that main for a few demo tasks (see
// tasks.go); with --redis-url memory:// it runs the demo.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/gotasks/gotasks/worker"
)

func main() { os.Exit(run(os.Args)) }

func run(args []string) int {
	name, rest := args[0], args[1:]
	if len(rest) > 0 && (rest[0] == "admin" || rest[0] == "dashboard") {
		return worker.Main(args) // inspect and manage queues: commands, or the web dashboard
	}
	demo := len(rest) > 0 && rest[0] == "demo"
	if demo {
		name, rest = name+" demo", rest[1:]
	}
	cfg, err := worker.ParseFlags(name, rest, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	if demo || strings.HasPrefix(cfg.RedisURL, "memory://") {
		return runDemo(cfg)
	}
	log := cfg.NewLogger(os.Stderr)
	if err := openRecorder(cfg); err != nil {
		log.Error("demo.record needs Redis", "err", err)
		return 1
	}
	ctx, stop := worker.SignalContext(log)
	defer stop()
	if err := worker.RunConfig(ctx, cfg, log); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}
