package worker

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// Exit codes of Admin (and Main).
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// adminCommands lists the admin commands with a one-line summary, in the
// order the usage shows them.
var adminCommands = []struct{ name, args, summary string }{
	{"queues", "", "every queue: pending, deferred and running counts, age of the oldest and the next pending task"},
	{"tasks", "--queue Q [--state pending|deferred|running|failed] [--limit N] [--offset N]", "a page of a queue's unfinished or failed tasks"},
	{"show", "ID", "one task or result: status, times, workers, every attempt's error, the return value"},
	{"retry", "ID", "run a FAILED task again, under the same id"},
	{"cancel", "ID", "cancel a task that has not started (NEW, deferred or waiting for a retry)"},
	{"purge", "--queue Q [--yes]", "remove every pending and deferred task of a queue (asks for confirmation)"},
	{"prune", "[--min-age-days N] [--failed-min-age-days N] [--queue Q] [--dry-run]", "delete old finished results (django-tasks' prune_db_task_results)"},
}

// Admin is the `worker admin` command: inspection and maintenance of the
// queues of a Redis backend. args are the arguments after "admin" (the
// command and its flags). Prompts and progress go to stderr, results to
// stdout; purge reads its confirmation from stdin. It returns the exit
// code: 0 when the operation succeeded, 1 when it failed or was refused or
// not confirmed, 2 for bad usage.
func Admin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		adminUsage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	a := &adminRun{name: "worker admin " + args[0], stdin: stdin, stdout: stdout, stderr: stderr}
	var run func(context.Context) error
	switch args[0] {
	case "queues":
		run = a.queues
	case "tasks":
		a.fs().StringVar(&a.queue, "queue", "", "queue to list (required)")
		a.fs().StringVar(&a.state, "state", string(broker.StatePending), "pending, deferred, running or failed")
		a.fs().IntVar(&a.limit, "limit", 50, "list at most this many tasks")
		a.fs().IntVar(&a.offset, "offset", 0, "skip this many tasks first")
		run = a.tasks
	case "show":
		a.wantID = true
		run = a.show
	case "retry":
		a.wantID = true
		run = a.retry
	case "cancel":
		a.wantID = true
		run = a.cancel
	case "purge":
		a.fs().StringVar(&a.queue, "queue", "", "queue to purge (required)")
		a.fs().BoolVar(&a.yes, "yes", false, "do not ask for confirmation")
		run = a.purge
	case "prune":
		a.fs().IntVar(&a.minAgeDays, "min-age-days", 14, "delete results that finished at least this many days ago")
		a.fs().IntVar(&a.failedMinAgeDays, "failed-min-age-days", -1, "the same for FAILED results (default: --min-age-days)")
		a.fs().StringVar(&a.queue, "queue", "", "only this queue (default: every queue)")
		a.fs().BoolVar(&a.dryRun, "dry-run", false, "only count the results that would be deleted")
		run = a.prune
	default:
		fmt.Fprintf(stderr, "worker admin: unknown command %q\n\n", args[0])
		adminUsage(stderr)
		return exitUsage
	}
	cfg, err := a.parse(args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", a.name, err)
		return exitUsage
	}
	// One connection suffices: the commands run one operation at a time.
	b, err := broker.OpenWith(cfg.RedisURL, broker.Options{Prefix: cfg.Prefix}, cfg.ConnOptions(1))
	if err != nil {
		// broker's errors carry the redacted URL, never the password.
		fmt.Fprintf(stderr, "%s: --redis-url: %v\n", a.name, err)
		return exitFailed
	}
	defer func() { _ = b.Close() }()
	a.b = b
	if err := run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", a.name, err)
		return exitFailed
	}
	return exitOK
}

func adminUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: worker admin <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Inspects and maintains the queues of a gotasks Redis backend. Commands:")
	fmt.Fprintln(w)
	for _, c := range adminCommands {
		fmt.Fprintf(w, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command takes the worker's connection flags (--redis-url, --redis-username,")
	fmt.Fprintln(w, "--redis-password or $GOTASKS_REDIS_PASSWORD, --tls-*, --prefix) and --json for")
	fmt.Fprintln(w, "machine-readable output; see `worker admin <command> --help`. Exit status: 0 done,")
	fmt.Fprintln(w, "1 failed, refused or not confirmed, 2 bad usage.")
}

// adminRun is one admin command: its flags and where it writes.
type adminRun struct {
	name                   string
	stdin                  io.Reader
	stdout, stderr         io.Writer
	flags                  *flag.FlagSet
	b                      *broker.Redis
	json                   bool
	wantID                 bool
	id                     string
	queue, state           string
	limit, offset          int
	yes, dryRun            bool
	minAgeDays             int
	failedMinAgeDays       int
	connFlagNames          []string
	redisURL, redisUser    string
	redisPassword, prefix  string
	tlsCA, tlsCert, tlsKey string
	tlsServerName          string
	tlsSkipVerify          bool
}

func (a *adminRun) fs() *flag.FlagSet {
	if a.flags == nil {
		a.flags = flag.NewFlagSet(a.name, flag.ContinueOnError)
		a.flags.SetOutput(a.stderr)
	}
	return a.flags
}

// parse parses the command's flags, the connection flags and --json. The
// connection flags are handed on to ParseFlags, so that their defaults
// from the environment and their checks (URL, TLS) are the worker's own.
func (a *adminRun) parse(args []string) (Config, error) {
	fs := a.fs()
	fs.BoolVar(&a.json, "json", false, "print JSON instead of a table")
	conn := []struct {
		name, usage string
		p           *string
	}{
		{"redis-url", "Redis URL, as the worker's (default from $GOTASKS_REDIS_URL, else redis://127.0.0.1:6379/0)", &a.redisURL},
		{"redis-username", "Redis ACL user (overrides the URL's)", &a.redisUser},
		{"redis-password", "Redis password (overrides the URL's; default from $GOTASKS_REDIS_PASSWORD, which is safer)", &a.redisPassword},
		{"tls-ca", "PEM file of the CAs that verify the server; needs rediss://", &a.tlsCA},
		{"tls-cert", "PEM client certificate; needs rediss://", &a.tlsCert},
		{"tls-key", "PEM key of --tls-cert", &a.tlsKey},
		{"tls-server-name", "name to verify the server's certificate against", &a.tlsServerName},
		{"prefix", "key prefix, as the worker's (default " + broker.DefaultPrefix + ")", &a.prefix},
	}
	for _, c := range conn {
		fs.StringVar(c.p, c.name, "", c.usage)
		a.connFlagNames = append(a.connFlagNames, c.name)
	}
	fs.BoolVar(&a.tlsSkipVerify, "tls-skip-verify", false, "do not verify the server's certificate: FOR TESTING ONLY")
	a.connFlagNames = append(a.connFlagNames, "tls-skip-verify")
	usage := ""
	for _, c := range adminCommands {
		if a.name == "worker admin "+c.name {
			usage = c.args + "\n\n" + c.summary
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: %s [flags] %s\n\nFlags:\n", a.name, usage)
		fs.PrintDefaults()
	}
	// Positional arguments may come before, between or after the flags
	// (`show ID --json`), which flag.Parse alone does not allow.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return Config{}, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case a.wantID && len(pos) != 1:
		return Config{}, fmt.Errorf("want one task id, got %d arguments (see --help)", len(pos))
	case a.wantID:
		a.id = pos[0]
	case len(pos) > 0:
		return Config{}, fmt.Errorf("unexpected argument %q (see --help)", pos[0])
	}
	var fwd []string
	fs.Visit(func(f *flag.Flag) {
		for _, n := range a.connFlagNames {
			if f.Name == n {
				fwd = append(fwd, "--"+n+"="+f.Value.String())
			}
		}
	})
	cfg, err := ParseFlags(a.name, fwd, a.stderr)
	if err != nil {
		return cfg, err
	}
	if isMemoryURL(cfg.RedisURL) {
		return cfg, fmt.Errorf("--redis-url memory:// would inspect a new, empty Redis: give the Redis the workers use")
	}
	return cfg, a.check()
}

// check validates the command's own flags.
func (a *adminRun) check() error {
	switch strings.TrimPrefix(a.name, "worker admin ") {
	case "tasks":
		if a.queue == "" {
			return errors.New("--queue is required")
		}
		switch broker.State(a.state) {
		case broker.StatePending, broker.StateDeferred, broker.StateRunning, broker.StateFailed:
		default:
			return fmt.Errorf("--state must be pending, deferred, running or failed, not %q", a.state)
		}
		if a.limit < 1 || a.offset < 0 {
			return fmt.Errorf("--limit must be at least 1 and --offset not negative, not %d and %d", a.limit, a.offset)
		}
	case "purge":
		if a.queue == "" {
			return errors.New("--queue is required")
		}
	case "prune":
		if a.failedMinAgeDays < 0 {
			a.failedMinAgeDays = a.minAgeDays
		}
		if a.minAgeDays < 0 {
			return fmt.Errorf("--min-age-days must not be negative, not %d", a.minAgeDays)
		}
	}
	return nil
}

func (a *adminRun) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// age formats a queue age for people: "-" for nothing pending.
func age(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// stamp formats a time for tables: UTC, so that rows compare across hosts.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func (a *adminRun) queues(ctx context.Context) error {
	stats, err := a.b.QueueStats(ctx)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(stats) // see broker.QueueStat.MarshalJSON
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tPENDING\tDEFERRED\tRUNNING\tFAILED\tOLDEST PENDING\tNEXT PENDING\tCOMPLETED TOTAL")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\n", s.Queue, s.Pending, s.Deferred, s.Running, s.Failed,
			age(s.OldestAge), age(s.NextAge), s.Completed)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// taskJSON is a task or result as the JSON output shows it.
type taskJSON struct {
	ID          string          `json:"id"`
	Task        string          `json:"task"`
	Status      task.Status     `json:"status"`
	Queue       string          `json:"queue"`
	Priority    int             `json:"priority"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
	WorkerIDs   []string        `json:"worker_ids,omitempty"`
	EnqueuedAt  time.Time       `json:"enqueued_at,omitzero"`
	RunAfter    time.Time       `json:"run_after,omitzero"`
	StartedAt   time.Time       `json:"started_at,omitzero"`
	FinishedAt  time.Time       `json:"finished_at,omitzero"`
	Error       *task.Error     `json:"error,omitempty"`
	Errors      []*task.Error   `json:"errors,omitempty"`
	Args        json.RawMessage `json:"args,omitempty"`
	ArgsError   string          `json:"args_error,omitempty"`
	Value       json.RawMessage `json:"return_value,omitempty"`
	ValueError  string          `json:"return_value_error,omitempty"`
}

func toJSON(r *task.RawResult, withData bool) taskJSON {
	j := taskJSON{
		ID: r.ID, Task: r.TaskName, Status: r.Status, Queue: r.Queue, Priority: r.Priority,
		Attempts: r.Attempts, MaxAttempts: r.MaxAttempts, WorkerIDs: r.WorkerIDs,
		EnqueuedAt: r.EnqueuedAt, RunAfter: r.RunAfter, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		Error: r.Err, Errors: r.Errors,
	}
	if withData {
		var err error
		if j.Args, err = serializer.DisplayJSON(r.Serializer, r.Args); err != nil {
			j.ArgsError = err.Error()
		}
		if r.Status == task.StatusComplete {
			if j.Value, err = serializer.DisplayJSON(r.Serializer, r.Value); err != nil {
				j.ValueError = err.Error()
			}
		}
	}
	return j
}

func (a *adminRun) tasks(ctx context.Context) error {
	state := broker.State(a.state)
	rs, err := a.b.ListTasks(ctx, a.queue, state, a.offset, a.limit)
	if err != nil {
		return err
	}
	if a.json {
		out := make([]taskJSON, 0, len(rs))
		for _, r := range rs {
			out = append(out, toJSON(r, false))
		}
		return a.printJSON(out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if state == broker.StateFailed {
		fmt.Fprintln(tw, "ID\tTASK\tATTEMPTS\tFINISHED\tERROR")
		for _, r := range rs {
			msg := "-"
			if r.Err != nil {
				msg = r.Err.Type + ": " + firstLine(r.Err.Message)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.ID, r.TaskName, r.Attempts, stamp(r.FinishedAt), msg)
		}
	} else {
		fmt.Fprintln(tw, "ID\tTASK\tPRIORITY\tATTEMPTS\tENQUEUED\tRUN AFTER\tSTARTED\tWORKERS")
		for _, r := range rs {
			workers := "-"
			if len(r.WorkerIDs) > 0 {
				workers = strings.Join(r.WorkerIDs, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.TaskName, r.Priority, r.Attempts,
				stamp(r.EnqueuedAt), stamp(r.RunAfter), stamp(r.StartedAt), workers)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if len(rs) == a.limit {
		fmt.Fprintf(a.stderr, "%d tasks shown; there may be more: --offset %d\n", len(rs), a.offset+len(rs))
	}
	return nil
}

func (a *adminRun) show(ctx context.Context) error {
	r, err := a.b.GetResult(ctx, a.id)
	if err != nil {
		return err
	}
	j := toJSON(r, true)
	if a.json {
		return a.printJSON(j)
	}
	w := a.stdout
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("id", r.ID)
	row("status", string(r.Status))
	row("task", r.TaskName)
	row("queue", r.Queue)
	row("priority", fmt.Sprint(r.Priority))
	row("attempts", fmt.Sprintf("%d of %d", r.Attempts, max(r.MaxAttempts, 1)))
	row("workers", cmp.Or(strings.Join(r.WorkerIDs, ", "), "-"))
	row("enqueued", stamp(r.EnqueuedAt))
	row("run after", stamp(r.RunAfter))
	row("started", stamp(r.StartedAt))
	row("finished", stamp(r.FinishedAt))
	switch {
	case j.ArgsError != "":
		row("args", j.ArgsError)
	case j.Args != nil:
		row("args", string(j.Args))
	}
	if r.Status == task.StatusComplete {
		switch {
		case j.ValueError != "":
			row("return value", j.ValueError)
		case j.Value != nil:
			row("return value", string(j.Value))
		default:
			row("return value", "(none)")
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	errs := r.Errors
	// A final error is normally also the last attempt's; one stored without
	// its attempt's (an older worker) would otherwise not be shown.
	if r.Err != nil && (len(errs) == 0 || *errs[len(errs)-1] != *r.Err) {
		errs = append(errs, r.Err)
	}
	for i, e := range errs {
		fmt.Fprintf(w, "\nerror of attempt %d: %s\n", i+1, e.Error())
		if e.Traceback != "" {
			for _, line := range strings.Split(strings.TrimRight(e.Traceback, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
	}
	return nil
}

// done reports a finished single-task operation.
func (a *adminRun) done(what string, r *task.RawResult) error {
	if a.json {
		return a.printJSON(map[string]any{"id": a.id, "ok": true, "status": status(r)})
	}
	fmt.Fprintf(a.stdout, "%s %s\n", what, a.id)
	return nil
}

func status(r *task.RawResult) task.Status {
	if r == nil {
		return ""
	}
	return r.Status
}

func (a *adminRun) retry(ctx context.Context) error {
	err := a.b.RetryFailed(ctx, a.id)
	if errors.Is(err, broker.ErrNotRetryable) {
		return fmt.Errorf("refused: %w", err)
	}
	if err != nil {
		return err
	}
	r, err := a.b.GetResult(ctx, a.id)
	if err != nil {
		// Retried, but a worker may already have taken and finished it.
		r = &task.RawResult{Status: task.StatusNew}
	}
	return a.done("retrying", r)
}

func (a *adminRun) cancel(ctx context.Context) error {
	r, err := a.b.Cancel(ctx, a.id)
	if errors.Is(err, task.ErrNotCancellable) {
		return fmt.Errorf("refused: %w (only a task that has not started can be cancelled)", err)
	}
	if err != nil {
		return err
	}
	return a.done("cancelled", r)
}

func (a *adminRun) purge(ctx context.Context) error {
	c, err := a.b.Count(ctx, a.queue)
	if err != nil {
		return err
	}
	if !a.yes {
		fmt.Fprintf(a.stderr, "This removes the %d pending and %d deferred tasks of queue %q for good (running tasks are left alone).\nType the queue name to confirm: ",
			c.Pending, c.Deferred, a.queue)
		line, err := bufio.NewReader(a.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the confirmation: %w", err)
		}
		if strings.TrimSpace(line) != a.queue {
			return errors.New("not confirmed: nothing purged (--yes skips the confirmation)")
		}
	}
	fmt.Fprintf(a.stderr, "purging queue %q...\n", a.queue)
	stopProgress := a.purgeProgress(ctx, c.Pending+c.Deferred)
	n, err := a.b.Purge(ctx, a.queue)
	stopProgress()
	if err != nil {
		return fmt.Errorf("after %d removed: %w", n, err)
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": a.queue, "purged": n})
	}
	fmt.Fprintf(a.stdout, "purged %d tasks from queue %q\n", n, a.queue)
	return nil
}

// purgeProgress prints, once a second until stopped, about how many tasks
// the running Purge has removed: it removes them in batches but reports
// only its total, so the count is before minus what is left (tasks
// enqueued meanwhile make it low). The returned func returns once nothing
// more is printed.
func (a *adminRun) purgeProgress(ctx context.Context, before int64) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if c, err := a.b.Count(ctx, a.queue); err == nil {
					fmt.Fprintf(a.stderr, "purged about %d so far\n", max(before-c.Pending-c.Deferred, 0))
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

func (a *adminRun) prune(ctx context.Context) error {
	day := 24 * time.Hour
	type pass struct {
		minAge   time.Duration
		statuses []task.Status
	}
	passes := []pass{{time.Duration(a.minAgeDays) * day, nil}}
	if a.failedMinAgeDays != a.minAgeDays {
		passes = []pass{
			{time.Duration(a.minAgeDays) * day, []task.Status{task.StatusComplete, task.StatusCancelled}},
			{time.Duration(a.failedMinAgeDays) * day, []task.Status{task.StatusFailed}},
		}
	}
	scope := "every queue"
	if a.queue != "" {
		scope = fmt.Sprintf("queue %q", a.queue)
	}
	fmt.Fprintf(a.stderr, "pruning results of %s...\n", scope)
	total := 0
	for _, p := range passes {
		n, err := a.b.Prune(ctx, p.minAge, p.statuses, a.queue, a.dryRun)
		total += n
		if err != nil {
			return fmt.Errorf("after %d results: %w", total, err)
		}
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": a.queue, "dry_run": a.dryRun, "results": total,
			"min_age_days": a.minAgeDays, "failed_min_age_days": a.failedMinAgeDays})
	}
	verb := "deleted"
	if a.dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(a.stdout, "%s %d results of %s (finished more than %d days ago, FAILED ones %d days)\n",
		verb, total, scope, a.minAgeDays, a.failedMinAgeDays)
	return nil
}

// adminMain runs Admin for Main, with the process's streams and signals.
func adminMain(args []string) int {
	ctx, stop := SignalContext(Config{LogFormat: "text", LogLevel: "warn"}.NewLogger(os.Stderr))
	defer stop()
	return Admin(ctx, args, os.Stdin, os.Stdout, os.Stderr)
}

// firstLine is s up to its first newline, for a table cell.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
