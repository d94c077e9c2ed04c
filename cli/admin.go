package cli

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// adminCommand is one `admin` command.
type adminCommand struct {
	name, args, summary string
	examples            []string // after "prog admin "
	flags               []adminFlag
	shared              []string // flags of flagDefs it takes besides the connection flags
	wantID              bool
	run                 func(a *adminRun, ctx context.Context) error
}

// adminFlag is a flag of one admin command.
type adminFlag struct {
	name, arg, usage, def string
	bind                  func(fs *flag.FlagSet, name string, a *adminRun)
}

func (c adminCommand) flagNames() []string {
	names := slices.Concat(connFlags, c.shared, []string{"json"})
	for _, f := range c.flags {
		names = append(names, f.name)
	}
	return names
}

var (
	queueFlag = func(usage, def string) adminFlag {
		return adminFlag{name: "queue", arg: "Q", usage: usage, def: def,
			bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.StringVar(&a.queue, name, "", "") }}
	}
	failedFilterFlags = []adminFlag{
		{name: "task", arg: "NAME", usage: "only the tasks of this name", def: "every task",
			bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.StringVar(&a.filter.TaskName, name, "", "") }},
		{name: "error-type", arg: "TYPE", usage: "only the tasks whose final error has this type (the TYPE admin show prints, e.g. gotasks.Timeout, *net.OpError)", def: "any",
			bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.StringVar(&a.filter.ErrorType, name, "", "") }},
	}
	adminCommands = []adminCommand{
		{name: "queues", summary: "every queue: pending, deferred and running counts, age of the oldest and the next pending task",
			examples: []string{"queues", "queues --json"}, run: (*adminRun).queues},
		{name: "tasks", args: "--queue Q [--state pending|deferred|running|failed] [--limit N] [--offset N] [--meta KEY=VALUE]...",
			summary: "a page of a queue's unfinished or failed tasks",
			examples: []string{"tasks --queue emails", "tasks --queue emails --state failed --limit 10",
				"tasks --queue emails --meta tenant=acme --meta region=eu --limit 500"},
			flags: []adminFlag{
				queueFlag("the queue to list (required)", ""),
				{name: "state", arg: "STATE", usage: "pending, deferred, running or failed", def: string(broker.StatePending),
					bind: func(fs *flag.FlagSet, name string, a *adminRun) {
						fs.StringVar(&a.state, name, string(broker.StatePending), "")
					}},
				{name: "limit", arg: "N", usage: "list at most this many tasks", def: "50",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.IntVar(&a.limit, name, 50, "") }},
				{name: "offset", arg: "N", usage: "skip this many tasks first", def: "0",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.IntVar(&a.offset, name, 0, "") }},
				{name: "meta", arg: "KEY=VALUE", usage: "show only the tasks whose metadata has KEY set to VALUE; " +
					"repeatable: a task is shown when all match. The filter runs here, on the page read from Redis " +
					"(--offset, --limit), so a page may show fewer tasks than --limit, or none, while tasks further " +
					"on match: raise --limit, or page on with --offset",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.Var(metaFlag{&a.meta}, name, "") }},
			}, run: (*adminRun).tasks},
		{name: "show", args: "ID", summary: "one task or result: status, times, workers, every attempt's error, the return value",
			examples: []string{"show 01J9Z3X1Y2", "show 01J9Z3X1Y2 --json"}, wantID: true, run: (*adminRun).show},
		{name: "retry", args: "ID", summary: "run a FAILED task again, under the same id",
			examples: []string{"retry 01J9Z3X1Y2"}, wantID: true, run: (*adminRun).retry},
		{name: "cancel", args: "ID", summary: "cancel a task: one not started ends CANCELLED now; a running one is stopped by its worker",
			examples: []string{"cancel 01J9Z3X1Y2"}, wantID: true, shared: []string{"result-ttl"}, run: (*adminRun).cancel},
		{name: "purge", args: "--queue Q [--yes]", summary: "remove every pending and deferred task of a queue (asks for confirmation)",
			examples: []string{"purge --queue emails", "purge --queue emails --yes --json"},
			flags: []adminFlag{
				queueFlag("the queue to purge (required)", ""),
				{name: "yes", usage: "do not ask for confirmation",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.BoolVar(&a.yes, name, false, "") }},
			}, run: (*adminRun).purge},
		{name: "retry-failed", args: "--queue Q [--task NAME] [--error-type TYPE]",
			summary:  "run again every FAILED task of a queue (the dead-letter set), or those of a task name or an error type; each task moves atomically, and a run cut short goes on when run again",
			examples: []string{"retry-failed --queue emails", "retry-failed --queue emails --task emails.send --error-type '*net.OpError'"},
			flags:    append([]adminFlag{queueFlag("the queue (required)", "")}, failedFilterFlags...), run: (*adminRun).retryFailed},
		{name: "delete-failed", args: "--queue Q [--task NAME] [--error-type TYPE] [--yes]",
			summary:  "delete every FAILED result of a queue, or those of a task name or an error type (asks for confirmation)",
			examples: []string{"delete-failed --queue emails --error-type gotasks.DecodeArgs", "delete-failed --queue emails --yes --json"},
			flags: append([]adminFlag{queueFlag("the queue (required)", ""),
				{name: "yes", usage: "do not ask for confirmation",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.BoolVar(&a.yes, name, false, "") }}},
				failedFilterFlags...), run: (*adminRun).deleteFailed},
		{name: "pause", args: "--queue Q", summary: "stop every worker from claiming tasks of a queue until it is resumed (running tasks finish; enqueues still work)",
			examples: []string{"pause --queue emails", "pause --queue emails --json"},
			flags:    []adminFlag{queueFlag("the queue to pause (required)", "")}, run: (*adminRun).pause},
		{name: "resume", args: "--queue Q", summary: "let workers claim tasks of a paused queue again",
			examples: []string{"resume --queue emails"},
			flags:    []adminFlag{queueFlag("the queue to resume (required)", "")}, run: (*adminRun).resume},
		{name: "prune", args: "[--min-age-days N] [--failed-min-age-days N] [--queue Q] [--dry-run]",
			summary:  "delete old finished results (django-tasks' prune_db_task_results)",
			examples: []string{"prune --dry-run", "prune --min-age-days 7 --failed-min-age-days 30 --queue emails"},
			flags: []adminFlag{
				{name: "min-age-days", arg: "N", usage: "delete results that finished at least this many days ago", def: "14",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.IntVar(&a.minAgeDays, name, 14, "") }},
				{name: "failed-min-age-days", arg: "N", usage: "the same for FAILED results", def: "--min-age-days",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.IntVar(&a.failedMinAgeDays, name, 0, "") }},
				queueFlag("only this queue; * for every queue", "*, every queue"),
				{name: "dry-run", usage: "only count the results that would be deleted",
					bind: func(fs *flag.FlagSet, name string, a *adminRun) { fs.BoolVar(&a.dryRun, name, false, "") }},
			}, run: (*adminRun).prune},
	}
)

func adminCommandNamed(name string) (adminCommand, bool) {
	i := slices.IndexFunc(adminCommands, func(c adminCommand) bool { return c.name == name })
	if i < 0 {
		return adminCommand{}, false
	}
	return adminCommands[i], true
}

// Admin is the admin command: inspection and maintenance of the queues of
// a Redis backend. args are the arguments after "admin" (the command and
// its flags). Prompts and progress go to stderr, results to stdout; purge
// reads its confirmation from stdin. It returns the exit code: 0 when the
// operation succeeded, 1 when it failed, was refused or not confirmed, 2
// for bad usage. With --json, results and errors are JSON on stdout: an
// error is {"error": "..."}, with the same exit code.
func Admin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return admin(ctx, "worker", args, stdin, stdout, stderr)
}

// adminMain runs the admin command for Program.Main, with the process's
// signals, and go-redis' log lines through a logger on stderr.
func adminMain(prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	log := Config{LogFormat: "text", LogLevel: "warn"}.NewLogger(stderr)
	broker.SetRedisLogger(log)
	ctx, stop := SignalContext(log)
	defer stop()
	if stdin == nil {
		stdin = os.Stdin
	}
	return admin(ctx, prog, args, stdin, stdout, stderr)
}

// wantsJSON reports whether args ask for JSON output, for errors found
// before the flags are parsed.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		name, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "json" {
			b, err := strconv.ParseBool(v)
			return !hasValue || (err == nil && b)
		}
	}
	return false
}

func admin(ctx context.Context, prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &adminRun{prog: prog, name: prog + " admin", stdin: stdin, stdout: stdout, stderr: stderr, json: wantsJSON(args)}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		if a.json {
			return a.fail(exitUsage, errors.New("want a command: "+adminCommandList()))
		}
		if len(args) > 0 {
			fmt.Fprintf(stderr, "%s: want a command before the flags\n\n", a.name)
		}
		adminUsage(stderr, prog)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if args[0] == "help" && len(args) > 1 {
			return admin(ctx, prog, []string{args[1], "--help"}, stdin, stdout, stderr)
		}
		adminUsage(stdout, prog)
		return exitOK
	}
	c, ok := adminCommandNamed(args[0])
	if !ok {
		err := fmt.Errorf("unknown command %q (want %s)", args[0], adminCommandList())
		if a.json {
			return a.fail(exitUsage, err)
		}
		fmt.Fprintf(stderr, "%s: %v\n\n", a.name, err)
		adminUsage(stderr, prog)
		return exitUsage
	}
	a.cmd, a.name = c, prog+" admin "+c.name
	err := a.parse(args[1:])
	if errors.Is(err, flag.ErrHelp) {
		a.help(stdout)
		return exitOK
	}
	if err != nil {
		return a.fail(exitUsage, err)
	}
	// One connection suffices: the commands run one operation at a time.
	bc := a.cfg.Broker
	bc.Conn.PoolSize = 1
	b, err := bc.Open()
	if err != nil {
		// broker's errors carry the redacted URL, never the password.
		return a.fail(exitFailed, fmt.Errorf("--redis-url: %w", err))
	}
	defer func() { _ = b.Close() }()
	a.b = b
	if err := c.run(a, ctx); err != nil {
		return a.fail(exitFailed, err)
	}
	return exitOK
}

func adminCommandList() string {
	var names []string
	for _, c := range adminCommands {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

func adminUsage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s admin COMMAND [flags]\n\n", prog)
	fmt.Fprintln(w, "Inspects and maintains the queues of a gotasks Redis backend. Commands:")
	fmt.Fprintln(w)
	for _, c := range adminCommands {
		fmt.Fprintf(w, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, `
Every command takes the connection flags (--redis-url, --redis-username,
--redis-password, --tls-*, --prefix, or their variables: see '%[1]s help')
and --json: results as JSON on stdout, and errors as {"error": "..."} on
stdout too. See '%[1]s help admin COMMAND' for a command's flags.
Exit status: 0 done, 1 failed, refused or not confirmed, 2 bad usage.

Examples:
  %[1]s admin queues
  %[1]s admin tasks --queue emails --state failed
  %[1]s admin show ID --json
`, prog)
}

// adminRun is one admin command: its flags and where it writes.
type adminRun struct {
	prog, name       string
	cmd              adminCommand
	stdin            io.Reader
	stdout, stderr   io.Writer
	set              *flagSet
	cfg              *Config
	b                *broker.Redis
	json             bool
	id               string
	queue, state     string
	limit, offset    int
	yes, dryRun      bool
	minAgeDays       int
	failedMinAgeDays int
	meta             task.Metadata       // tasks --meta: every pair must match
	filter           broker.FailedFilter // retry-failed, delete-failed: --task, --error-type
}

// metaFlag collects the repeatable --meta KEY=VALUE of tasks.
type metaFlag struct{ m *task.Metadata }

func (f metaFlag) String() string { return "" }

func (f metaFlag) Set(v string) error {
	key, value, ok := strings.Cut(v, "=")
	if !ok || key == "" {
		return fmt.Errorf("want KEY=VALUE, not %q", v)
	}
	if *f.m == nil {
		*f.m = task.Metadata{}
	}
	(*f.m)[key] = value
	return nil
}

// matchesMeta reports whether r's metadata has every pair of want.
func matchesMeta(r *task.RawResult, want task.Metadata) bool {
	for k, v := range want {
		if got, ok := r.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// fail reports err and returns code: as {"error": "..."} on stdout with
// --json, else on stderr.
func (a *adminRun) fail(code int, err error) int {
	if a.json {
		_ = json.NewEncoder(a.stdout).Encode(map[string]string{"error": err.Error()})
		return code
	}
	fmt.Fprintf(a.stderr, "%s: %v\n", a.name, err)
	if code == exitUsage {
		fmt.Fprintf(a.stderr, "Run '%s help admin %s' for its flags.\n", a.prog, a.cmd.name)
	}
	return code
}

func (a *adminRun) help(w io.Writer) {
	c := a.cmd
	fmt.Fprintf(w, "Usage: %s %s\n\n%s.\n\nExamples:\n", a.name, c.args, strings.ToUpper(c.summary[:1])+c.summary[1:])
	for _, e := range c.examples {
		fmt.Fprintf(w, "  %s admin %s\n", a.prog, e)
	}
	fmt.Fprintf(w, "\nFlags:\n")
	for _, f := range c.flags {
		printFlag(w, f.name, f.arg, f.usage, f.def)
	}
	printFlag(w, "json", "", "print JSON on stdout: the result, or {\"error\": \"...\"}", "")
	printFlags(w, "admin", slices.Concat(c.shared, connFlags))
}

// parse parses the command's flags, the connection flags and --json, over
// the environment's settings.
func (a *adminRun) parse(args []string) error {
	s := newFlagSet("admin "+a.cmd.name, slices.Concat(connFlags, a.cmd.shared))
	s.names = a.cmd.flagNames()
	a.set, a.cfg = s, s.cfg
	fs := s.fs
	fs.BoolVar(&a.json, "json", a.json, "")
	for _, f := range a.cmd.flags {
		f.bind(fs, f.name, a)
	}
	// Positional arguments may come before, between or after the flags
	// (`show ID --json`), which flag.Parse alone does not allow.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return s.parseError(err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case a.cmd.wantID && len(pos) != 1:
		return fmt.Errorf("want one task id, got %d arguments", len(pos))
	case a.cmd.wantID:
		a.id = pos[0]
	case len(pos) > 0:
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if err := s.check(); err != nil {
		return err
	}
	if isMemoryURL(a.cfg.Broker.URL) {
		return fmt.Errorf("%s memory:// would inspect a new, empty Redis: give the Redis the workers use", s.source("redis-url"))
	}
	return a.check()
}

// check validates the command's own flags.
func (a *adminRun) check() error {
	switch a.cmd.name {
	case "tasks", "purge", "pause", "resume", "retry-failed", "delete-failed":
		if a.queue == "" {
			return errors.New("--queue is required")
		}
		if a.queue == "*" {
			return fmt.Errorf("--queue takes one queue here, not * (see '%s admin queues')", a.prog)
		}
	}
	switch a.cmd.name {
	case "tasks":
		switch broker.State(a.state) {
		case broker.StatePending, broker.StateDeferred, broker.StateRunning, broker.StateFailed:
		default:
			return fmt.Errorf("--state must be pending, deferred, running or failed, not %q", a.state)
		}
		if a.limit < 1 {
			return fmt.Errorf("--limit must be at least 1, not %d", a.limit)
		}
		if a.offset < 0 {
			return fmt.Errorf("--offset must not be negative, not %d", a.offset)
		}
	case "prune":
		if a.minAgeDays < 0 {
			return fmt.Errorf("--min-age-days must not be negative, not %d", a.minAgeDays)
		}
		if !a.set.given("failed-min-age-days") {
			a.failedMinAgeDays = a.minAgeDays
		} else if a.failedMinAgeDays < 0 {
			return fmt.Errorf("--failed-min-age-days must not be negative, not %d", a.failedMinAgeDays)
		}
	}
	return nil
}

// needQueue returns an error unless queue exists: it has been used (it is
// among the broker's known queues).
func (a *adminRun) needQueue(ctx context.Context, queue string) error {
	known, err := a.b.KnownQueues(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(known, queue) {
		return nil
	}
	if len(known) == 0 {
		return fmt.Errorf("queue %q does not exist: no queue has been used yet (is --prefix right?)", queue)
	}
	return fmt.Errorf("queue %q does not exist; the queues are: %s", queue, strings.Join(known, ", "))
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
	fmt.Fprintln(tw, "QUEUE\tSTATE\tPENDING\tDEFERRED\tRUNNING\tFAILED\tOLDEST PENDING\tNEXT PENDING\tCOMPLETED TOTAL")
	for _, s := range stats {
		state := "active"
		if s.Paused() {
			state = "paused"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\n", s.Queue, state, s.Pending, s.Deferred, s.Running, s.Failed,
			age(s.OldestAge), age(s.NextAge), s.Completed)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// taskJSON is a task or result as the JSON output shows it.
type taskJSON struct {
	ID          string        `json:"id"`
	Task        string        `json:"task"`
	Status      task.Status   `json:"status"`
	Queue       string        `json:"queue"`
	Priority    int           `json:"priority"`
	Attempts    int           `json:"attempts"`
	MaxAttempts int           `json:"max_attempts,omitempty"`
	WorkerIDs   []string      `json:"worker_ids,omitempty"`
	EnqueuedAt  time.Time     `json:"enqueued_at,omitzero"`
	RunAfter    time.Time     `json:"run_after,omitzero"`
	StartedAt   time.Time     `json:"started_at,omitzero"`
	LastAttempt time.Time     `json:"last_attempted_at,omitzero"`
	Progress    *progressJSON `json:"progress,omitempty"`
	// CancelRequested: a RUNNING task whose cancel was asked for.
	CancelRequested bool            `json:"cancel_requested,omitempty"`
	FinishedAt      time.Time       `json:"finished_at,omitzero"`
	Error           *task.Error     `json:"error,omitempty"`
	Errors          []*task.Error   `json:"errors,omitempty"`
	Metadata        task.Metadata   `json:"metadata,omitempty"`
	Args            json.RawMessage `json:"args,omitempty"`
	ArgsError       string          `json:"args_error,omitempty"`
	Value           json.RawMessage `json:"return_value,omitempty"`
	ValueError      string          `json:"return_value_error,omitempty"`
}

// progressJSON is a task's last progress in the JSON output.
type progressJSON struct {
	Done    int64     `json:"done"`
	Total   int64     `json:"total,omitempty"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

func toJSON(r *task.RawResult, withData bool) taskJSON {
	j := taskJSON{
		ID: r.ID, Task: r.TaskName, Status: r.Status, Queue: r.Queue, Priority: r.Priority,
		Attempts: r.Attempts, MaxAttempts: r.MaxAttempts, WorkerIDs: r.WorkerIDs,
		EnqueuedAt: r.EnqueuedAt, RunAfter: r.RunAfter, StartedAt: r.StartedAt, LastAttempt: r.LastAttemptedAt,
		FinishedAt: r.FinishedAt, Error: r.Err, Errors: r.Errors, Metadata: r.Metadata,
	}
	j.CancelRequested = r.CancelRequested
	if p := r.Progress; p != nil {
		j.Progress = &progressJSON{Done: p.Done, Total: p.Total, Message: p.Message, At: p.At}
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
	if err := a.needQueue(ctx, a.queue); err != nil {
		return err
	}
	state := broker.State(a.state)
	page, err := a.b.ListTasks(ctx, a.queue, state, a.offset, a.limit)
	if err != nil {
		return err
	}
	rs := page
	if len(a.meta) > 0 {
		rs = slices.DeleteFunc(slices.Clone(page), func(r *task.RawResult) bool { return !matchesMeta(r, a.meta) })
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
				msg = firstLine(r.Err.Error()) // "Type: message", or the message alone
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
	switch {
	case len(a.meta) > 0 && len(page) == a.limit:
		fmt.Fprintf(a.stderr, "%d of the %d tasks read match --meta; there may be more: --offset %d\n", len(rs), len(page), a.offset+len(page))
	case len(a.meta) > 0:
		fmt.Fprintf(a.stderr, "%d of the %d tasks read match --meta\n", len(rs), len(page))
	case len(page) == a.limit:
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
	row("attempts", dashboard.AttemptsLine(r))
	row("workers", cmp.Or(strings.Join(r.WorkerIDs, ", "), "-"))
	row("enqueued", stamp(r.EnqueuedAt))
	row("run after", stamp(r.RunAfter))
	row("started", stamp(r.StartedAt))
	if !r.LastAttemptedAt.Equal(r.StartedAt) {
		row("last attempt", stamp(r.LastAttemptedAt))
	}
	row("finished", stamp(r.FinishedAt))
	if r.CancelRequested {
		row("cancel", "asked for: its worker stops it")
	}
	if p := r.Progress; p != nil {
		row("progress", dashboard.ProgressLine(p))
	}
	metaRows(tw, r.Metadata)
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

// metaRows writes the metadata rows of show: "metadata:" and one
// KEY=VALUE per row, sorted by key ("-" for none). A key or value that
// would not read back from the row as it is, is quoted, Go style (see
// quoteMeta).
func metaRows(tw io.Writer, m task.Metadata) {
	if len(m) == 0 {
		fmt.Fprintf(tw, "metadata:\t-\n")
		return
	}
	label := "metadata:"
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(tw, "%s\t%s=%s\n", label, quoteMeta(k, "="), quoteMeta(m[k], ""))
		label = ""
	}
}

// quoteMeta returns s, or s quoted when it holds characters that do not
// print on one line (a newline, a tab, control characters), begins or
// ends with a space, begins with a quote, or holds one of special (the
// '=' of a key).
func quoteMeta(s, special string) string {
	if strings.ContainsAny(s, special) || strings.HasPrefix(s, `"`) || strings.TrimSpace(s) != s ||
		strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
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
		return fmt.Errorf("refused: %w (it has finished)", err)
	}
	if err != nil {
		return err
	}
	if r.Status == task.StatusRunning {
		// Asked for: its worker cancels the task's context; it ends
		// CANCELLED if it returns that error, else with its own outcome.
		return a.done("cancel asked for (its worker stops it; see admin show)", r)
	}
	return a.done("cancelled", r)
}

// selection says which FAILED tasks a bulk command acts on.
func (a *adminRun) selection() string {
	what := fmt.Sprintf("the FAILED tasks of queue %q", a.queue)
	if a.filter.TaskName != "" {
		what += fmt.Sprintf(" named %q", a.filter.TaskName)
	}
	if a.filter.ErrorType != "" {
		what += fmt.Sprintf(" whose error is a %s", a.filter.ErrorType)
	}
	return what
}

// confirm asks, unless --yes, for the queue's name on stdin after what
// (what the command is about to do); nothing is done otherwise, which the
// error says with undone ("deleted", "purged").
func (a *adminRun) confirm(what, undone string) error {
	if a.yes {
		return nil
	}
	fmt.Fprintf(a.stderr, "%s\nType the queue name to confirm: ", what)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the confirmation: %w", err)
	}
	if strings.TrimSpace(line) != a.queue {
		return fmt.Errorf("not confirmed: nothing %s (--yes skips the confirmation)", undone)
	}
	return nil
}

func (a *adminRun) retryFailed(ctx context.Context) error {
	if err := a.needQueue(ctx, a.queue); err != nil {
		return err
	}
	n, err := a.b.RetryFailedWhere(ctx, a.queue, a.filter)
	if err != nil {
		return fmt.Errorf("%w (run again to go on)", err)
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": a.queue, "retried": n})
	}
	fmt.Fprintf(a.stdout, "retried %d of %s\n", n, a.selection())
	return nil
}

func (a *adminRun) deleteFailed(ctx context.Context) error {
	if err := a.needQueue(ctx, a.queue); err != nil {
		return err
	}
	if err := a.confirm(fmt.Sprintf("This deletes %s for good.", a.selection()), "deleted"); err != nil {
		return err
	}
	n, err := a.b.DeleteFailedWhere(ctx, a.queue, a.filter)
	if err != nil {
		return fmt.Errorf("%w (run again to go on)", err)
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": a.queue, "deleted": n})
	}
	fmt.Fprintf(a.stdout, "deleted %d of %s\n", n, a.selection())
	return nil
}

func (a *adminRun) pause(ctx context.Context) error {
	if err := a.needQueue(ctx, a.queue); err != nil {
		return err
	}
	since, changed, err := a.b.Pause(ctx, a.queue)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": a.queue, "paused": true, "paused_since": since.UTC(), "changed": changed})
	}
	if !changed {
		fmt.Fprintf(a.stdout, "queue %q was already paused, since %s\n", a.queue, stamp(since))
		return nil
	}
	fmt.Fprintf(a.stdout, "paused queue %q: workers claim none of its tasks until '%s admin resume --queue %s' (running tasks finish)\n",
		a.queue, a.prog, a.queue)
	return nil
}

func (a *adminRun) resume(ctx context.Context) error {
	if err := a.needQueue(ctx, a.queue); err != nil {
		return err
	}
	changed, err := a.b.Resume(ctx, a.queue)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": a.queue, "paused": false, "changed": changed})
	}
	if !changed {
		fmt.Fprintf(a.stdout, "queue %q was not paused\n", a.queue)
		return nil
	}
	fmt.Fprintf(a.stdout, "resumed queue %q\n", a.queue)
	return nil
}

func (a *adminRun) purge(ctx context.Context) error {
	if err := a.needQueue(ctx, a.queue); err != nil {
		return err
	}
	c, err := a.b.Count(ctx, a.queue)
	if err != nil {
		return err
	}
	if err := a.confirm(fmt.Sprintf("This removes the %d pending and %d deferred tasks of queue %q for good (running tasks are left alone).",
		c.Pending, c.Deferred, a.queue), "purged"); err != nil {
		return err
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
	queue := a.queue
	if queue == "*" {
		queue = "" // every queue, as broker.Prune says it
	}
	if queue != "" {
		if err := a.needQueue(ctx, queue); err != nil {
			return err
		}
	}
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
	if queue != "" {
		scope = fmt.Sprintf("queue %q", queue)
	}
	fmt.Fprintf(a.stderr, "pruning results of %s...\n", scope)
	total := 0
	for _, p := range passes {
		n, err := a.b.Prune(ctx, p.minAge, p.statuses, queue, a.dryRun)
		total += n
		if err != nil {
			return fmt.Errorf("after %d results: %w", total, err)
		}
	}
	if a.json {
		return a.printJSON(map[string]any{"queue": cmp.Or(queue, "*"), "dry_run": a.dryRun, "results": total,
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

// firstLine is s up to its first newline, for a table cell.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
