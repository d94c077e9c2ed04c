package worker

import "time"

// The worker command line (flags, environment variables, the run,
// dashboard, admin and help commands, memory://, the health, metrics and
// dashboard servers) is package cli: a program's main calls
// cli.Main(os.Args). This package is the pool alone.

// minStopWait is the least a goroutine that stops at once (an idle one) is
// waited for once the shutdown is over (see awaitStopped).
const minStopWait = 100 * time.Millisecond
