// Command worker runs gotasks tasks from Redis (django-tasks' db_worker).
//
//	worker --redis-url redis://127.0.0.1:6379/0 --queue default --concurrency 8
//	worker demo          # embedded in-memory Redis, demo tasks, results printed
//	worker admin queues  # inspect and manage queues (worker help admin)
//	worker dashboard     # the web dashboard alone, on 127.0.0.1:8080
//	worker help          # the commands, flags and environment variables
//
// Go cannot load code at run time, so a real deployment builds its own
// worker: a main that imports the packages defining its tasks and calls
// cli.Main(os.Args). This command is that main for a few demo tasks (see
// tasks.go), with a demo command.
package main

import (
	"os"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/cli"
)

func main() { os.Exit(program.Main(os.Args)) }

var program = cli.Program{
	Commands: []cli.Command{demoCommand},
	// demo.record writes to the worker's own Redis.
	BeforeRun: func(_ cli.Config, b *broker.Redis) error {
		recorder = b.Client()
		return nil
	},
}
