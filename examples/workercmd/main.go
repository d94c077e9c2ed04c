// Command workercmd is the README's worker command: cli.Main with the
// emails package's tasks. Try it with examples/enqueue:
//
//	go run ./examples/workercmd      # serves $GOTASKS_REDIS_URL, default redis://127.0.0.1:6379/0
//	go run ./examples/enqueue
package main

import (
	"os"

	"github.com/gotasks/gotasks/cli"
	_ "github.com/gotasks/gotasks/examples/emails" // your package of tasks: importing it registers them
)

func main() { os.Exit(cli.Main(os.Args)) }
