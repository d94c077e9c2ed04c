// Package cli is the worker command line: the flags and environment
// variables, the commands (run, the default; dashboard; admin; help), the
// servers a worker process runs beside its pool (health, metrics,
// dashboard), signals and the embedded memory:// Redis. Package worker is
// the pool alone, for programs that run one themselves.
//
// Go cannot load code at run time, so a deployment builds its own worker
// command: a main that imports the packages defining its tasks (so that
// they are registered) and calls
//
//	func main() { os.Exit(cli.Main(os.Args)) }
//
// cmd/worker is that main for a few demo tasks, with a demo command added
// through Program.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gotasks/gotasks/broker"
)

// Exit codes of Main.
const (
	exitOK     = 0
	exitFailed = 1 // the command failed, was refused or not confirmed
	exitUsage  = 2 // bad command line or environment
)

// Main runs the worker command line with the standard commands and returns
// the process exit code: 0 after a clean stop, 2 for a bad command line
// (or environment variable), 1 for other errors. args[0] is the program
// name, as in os.Args.
func Main(args []string) int { return Program{}.Main(args) }

// Program is a worker command line with commands of its own. The zero
// Program is Main's.
type Program struct {
	// Commands are more commands (cmd/worker adds demo). A command with
	// the name of a standard one is ignored.
	Commands []Command
	// BeforeRun, if set, is called by the worker (the run command) once
	// its Redis is open and before it runs tasks; an error ends the
	// command (exit 1).
	BeforeRun func(cfg Config, b *broker.Redis) error
}

// Command is a command of a Program.
type Command struct {
	Name    string // what follows the program name
	Summary string // one line, for the program's help
	// Help is the rest of the command's help: what it does, and examples;
	// its flags are listed after it.
	Help string
	// Flags are the worker's flags it takes, by name ("log-level",
	// "dashboard-addr", ...): the others are refused.
	Flags []string
	// Run runs it until ctx is done (SIGINT or SIGTERM), with the logger
	// of --log-format and --log-level (if it takes them).
	Run func(ctx context.Context, cfg Config, log *slog.Logger) error
}

// spec is a command that takes flags and runs until done.
type spec struct {
	Command
	synopsis string // what follows the program name in its usage
}

// Main runs the command line args (args[0] is the program name) and
// returns the exit code, as the package's Main does.
func (p Program) Main(args []string) int { return p.run(args, os.Stdin, os.Stdout, os.Stderr) }

func (p Program) specs() []spec {
	out := []spec{
		{Command: Command{Name: "run", Summary: "run tasks: claim them from the queues, run them and store their results (the default command)",
			Help: runHelp, Flags: runFlags}, synopsis: "[run] [flags]"},
		{Command: Command{Name: "dashboard", Summary: "serve the web dashboard alone, without running tasks",
			Help: dashboardHelp, Flags: dashboardCmdFlags, Run: RunDashboard}, synopsis: "dashboard [flags]"},
	}
	for _, c := range p.Commands {
		if !slices.ContainsFunc(out, func(s spec) bool { return s.Name == c.Name }) && c.Name != "admin" && c.Name != "help" {
			out = append(out, spec{Command: c, synopsis: c.Name + " [flags]"})
		}
	}
	return out
}

func (p Program) spec(name string) (spec, bool) {
	for _, s := range p.specs() {
		if s.Name == name {
			return s, true
		}
	}
	return spec{}, false
}

// flagOwners returns the commands that take the flag name.
func (p Program) flagOwners(name string) []string {
	var out []string
	for _, s := range p.specs() {
		if slices.Contains(s.Flags, name) {
			out = append(out, s.Name)
		}
	}
	for _, c := range adminCommands {
		if slices.Contains(c.flagNames(), name) {
			out = append(out, "admin "+c.name)
		}
	}
	return out
}

func (p Program) run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	prog := "worker"
	if len(args) > 0 {
		prog, args = filepath.Base(args[0]), args[1:]
	}
	name, explicit := "run", false
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args, explicit = args[0], args[1:], true
	}
	switch name {
	case "help":
		return p.help(prog, args, stdout, stderr)
	case "admin":
		return adminMain(prog, args, stdin, stdout, stderr)
	}
	s, ok := p.spec(name)
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\nRun '%s help' for the commands.\n", prog, name, prog)
		return exitUsage
	}
	fs := newFlagSet(name, s.Flags)
	fs.owners = p.flagOwners
	err := fs.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		if !explicit {
			p.programHelp(stdout, prog)
		} else {
			p.commandHelp(stdout, prog, s)
		}
		return exitOK
	}
	if err != nil {
		who := prog
		if explicit {
			who += " " + name
		}
		fmt.Fprintf(stderr, "%s: %v\nRun '%s help %s' for its flags.\n", who, err, prog, name)
		return exitUsage
	}
	cfg := *fs.cfg
	log := cfg.NewLogger(stderr)
	// go-redis' own lines (failed dials, ...) through the same logger.
	broker.SetRedisLogger(log)
	ctx, stop := SignalContext(log)
	defer stop()
	run := s.Run
	if name == "run" {
		run = func(ctx context.Context, cfg Config, log *slog.Logger) error {
			return runWorker(ctx, cfg, log, p.BeforeRun)
		}
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error(prog+" "+name+" failed", "err", err)
		return exitFailed
	}
	return exitOK
}

// help is `prog help [command [admin command]]`.
func (p Program) help(prog string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		p.programHelp(stdout, prog)
		return exitOK
	}
	if args[0] == "admin" {
		if len(args) == 1 {
			adminUsage(stdout, prog)
			return exitOK
		}
		return adminMain(prog, []string{args[1], "--help"}, nil, stdout, stderr)
	}
	if args[0] == "help" {
		p.programHelp(stdout, prog)
		return exitOK
	}
	s, ok := p.spec(args[0])
	if !ok {
		fmt.Fprintf(stderr, "%s help: unknown command %q\nRun '%s help' for the commands.\n", prog, args[0], prog)
		return exitUsage
	}
	p.commandHelp(stdout, prog, s)
	return exitOK
}

func (p Program) programHelp(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s [command] [flags]\n\n", prog)
	fmt.Fprint(w, "Runs gotasks tasks from Redis (without a command), or inspects and manages them.\n\nCommands:\n")
	for _, s := range p.specs() {
		fmt.Fprintf(w, "  %-10s %s\n", s.Name, s.Summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "admin", "inspect and maintain the queues: queues, tasks, show, retry, cancel, purge, prune")
	fmt.Fprintf(w, "  %-10s %s\n", "help", "this help, or a command's: "+prog+" help COMMAND")
	fmt.Fprintf(w, `
Examples:
  %[1]s --redis-url redis://redis:6379/0 --queue emails,default --concurrency 8
  %[1]s dashboard --dashboard-addr :8080
  %[1]s admin queues
  %[1]s help admin

`, prog)
	envHelp(w)
	s, _ := p.spec("run")
	fmt.Fprintf(w, "\nFlags of run (the default command):\n")
	printFlags(w, "run", s.Flags)
}

func (p Program) commandHelp(w io.Writer, prog string, s spec) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", prog, s.synopsis, strings.TrimSpace(strings.ReplaceAll(s.Help, "PROG", prog)))
	if len(s.Flags) > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, s.Name, s.Flags)
	}
}

const runHelp = `
Runs tasks from Redis: claims ready tasks from the queues, runs them with
--concurrency goroutines and stores their results. The first SIGINT or
SIGTERM stops claiming and lets running tasks finish for --shutdown-timeout,
then hands the rest back to their queue; a second one exits at once (those
tasks then return after --lease).

Examples:
  PROG --redis-url redis://redis:6379/0 --concurrency 8
  PROG --queue emails --queue reports --health-addr :8080 --log-format json
  PROG --exclude-queue slow  # every queue but slow
  GOTASKS_RESULT_TTL=168h PROG --batch  # run what is ready, then exit
`

const dashboardHelp = `
Serves the web dashboard of a Redis (queues, tasks, errors; retry and
cancel) without running tasks, until SIGINT or SIGTERM. A port alone
listens on 127.0.0.1 only.

Examples:
  PROG dashboard --redis-url redis://redis:6379/0
  GOTASKS_DASHBOARD_TOKEN=... PROG dashboard --dashboard-addr 0.0.0.0:8080
`

// envHelp lists the environment variables.
func envHelp(w io.Writer) {
	fmt.Fprint(w, `Environment: the settings that producers need too come from the variables
that broker.OpenFromEnv reads, so that producers and workers agree; a flag
wins over its variable, and a variable that is set must parse.
`)
	line := " "
	for _, v := range append(broker.EnvVars(), EnvDashboardToken) {
		if len(line)+len(v) > 78 {
			fmt.Fprintln(w, line)
			line = " "
		}
		line += " " + v
	}
	fmt.Fprintln(w, line)
}
