package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Worker processes: the bench binary re-executed as a worker of one system
// (childMain), driven over its stdin and stdout, one line each way:
//
//	parent → child   child → parent
//	                 ready                  connected, waiting for go
//	go                                      start the worker
//	stat             stat <cpu ns> <ran>    CPU used so far, tasks run so far
//	(stdin closed)   done <ran>             worker stopped; then it exits

// childEnv, set in a process's environment, makes the bench binary a worker
// process of the system it names (see childMain); a hidden mode rather than
// a flag, so that it also works for the test binary.
const childEnv = "GOTASKS_BENCH_WORKER"

// procsResult is one drain by worker processes.
type procsResult struct {
	n        int // tasks drained
	elapsed  time.Duration
	ran      []int64         // tasks each process ran
	cpu      []time.Duration // CPU each process used over the timed drain
	redisCPU time.Duration   // INFO cpu, over the same drain
	benchCPU time.Duration   // this process: the producer's connection and the 2 ms polling
	// machineBusy is the CPU time used by everything on the machine over
	// the drain (all CPUs); machineOK is false where it is not measured.
	machineBusy time.Duration
	machineOK   bool
	cpus        int // the machine's, for machineBusy
}

func (p procsResult) rate() float64 { return float64(p.n) / p.elapsed.Seconds() }

func sum[T int64 | float64 | time.Duration](xs []T) T {
	var t T
	for _, x := range xs {
		t += x
	}
	return t
}

// drainRateProcs is drainRate with procs worker processes, each at
// concurrency c.
func drainRateProcs(ctx context.Context, a *admin, s system, url string, n, procs, c int) (float64, error) {
	p, err := drainProcs(ctx, a, s, url, n, procs, c, 0)
	if err != nil {
		return 0, err
	}
	return p.rate(), nil
}

// drainProcs fills n tasks, then times procs worker processes (the bench
// binary re-executed as a worker, see childMain) at concurrency c each,
// their task waiting sleep after it starts, until every task is complete.
// The processes connect first and are all told to start at once, so that
// exec and connection set-up are not timed. It checks that the processes
// ran every task between them, and measures the CPU that each of them,
// redis-server, this process and the whole machine used meanwhile.
func drainProcs(ctx context.Context, a *admin, s system, url string, n, procs, c int, sleep time.Duration) (procsResult, error) {
	if err := s.Fill(ctx, n); err != nil {
		return procsResult{}, err
	}
	var children []*child
	defer func() {
		for _, ch := range children {
			ch.kill()
		}
	}()
	for range procs {
		ch, err := spawnChild(ctx, s.Name(), url, c, sleep)
		if err != nil {
			return procsResult{}, err
		}
		children = append(children, ch)
	}
	cpu0 := make([]time.Duration, procs)
	for i, ch := range children {
		st, err := ch.stat()
		if err != nil {
			return procsResult{}, err
		}
		cpu0[i] = st.cpu
	}
	redis0, err := a.cpuSeconds(ctx)
	if err != nil {
		return procsResult{}, err
	}
	bench0 := processCPU()
	idle0, cpus, ok0 := machineIdle()
	start := time.Now()
	for _, ch := range children {
		if err := ch.send("go"); err != nil {
			return procsResult{}, err
		}
	}
	if err := waitDrained(ctx, s, drainTimeout(n)); err != nil {
		return procsResult{}, err
	}
	res := procsResult{n: n, elapsed: time.Since(start)}
	idle1, _, ok1 := machineIdle()
	res.benchCPU = processCPU() - bench0
	res.machineBusy = time.Duration(cpus)*res.elapsed - (idle1 - idle0)
	res.machineOK, res.cpus = ok0 && ok1, cpus
	redis1, err := a.cpuSeconds(ctx)
	if err != nil {
		return procsResult{}, err
	}
	res.redisCPU = time.Duration((redis1 - redis0) * float64(time.Second))
	for i, ch := range children {
		st, err := ch.stat()
		if err != nil {
			return procsResult{}, err
		}
		res.cpu = append(res.cpu, st.cpu-cpu0[i])
	}
	for _, ch := range children {
		ran, err := ch.stop()
		if err != nil {
			return procsResult{}, err
		}
		res.ran = append(res.ran, ran)
	}
	children = nil
	if got := sum(res.ran); got < int64(n) {
		return procsResult{}, fmt.Errorf("%s: the queue is empty but the worker processes ran only %d of %d tasks", s.Name(), got, n)
	}
	return res, nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // from its stdout; closed at EOF
	done  chan error
}

// spawnChild starts a worker process and waits until it is connected.
func spawnChild(ctx context.Context, system, url string, c int, sleep time.Duration) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("worker process: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "--redis-url", url, "--concurrency", strconv.Itoa(c), "--task-sleep", sleep.String())
	cmd.Env = append(os.Environ(), childEnv+"="+system)
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("worker process: %w", err)
	}
	ch := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
		_, _ = io.Copy(io.Discard, stdout)
		ch.done <- cmd.Wait()
	}()
	if _, err := ch.expect("ready"); err != nil {
		ch.kill()
		return nil, fmt.Errorf("%s worker process: %w", system, err)
	}
	return ch, nil
}

// expect waits for the child's next line, which must start with word, and
// returns the rest of it.
func (c *child) expect(word string) (string, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return "", fmt.Errorf("exited before saying %q", word)
		}
		rest, found := strings.CutPrefix(line, word)
		if !found || (rest != "" && rest[0] != ' ') {
			return "", fmt.Errorf("said %q, want %q", line, word)
		}
		return strings.TrimSpace(rest), nil
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("did not say %q within 30s", word)
	}
}

func (c *child) send(line string) error {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return fmt.Errorf("worker process: %w", err)
	}
	return nil
}

type childStat struct {
	cpu time.Duration
	ran int64
}

// stat asks the child for the CPU time it has used and the tasks it ran.
func (c *child) stat() (childStat, error) {
	if err := c.send("stat"); err != nil {
		return childStat{}, err
	}
	rest, err := c.expect("stat")
	if err != nil {
		return childStat{}, fmt.Errorf("worker process: %w", err)
	}
	var st childStat
	var ns int64
	if _, err := fmt.Sscan(rest, &ns, &st.ran); err != nil {
		return childStat{}, fmt.Errorf("worker process: stat %q: %w", rest, err)
	}
	st.cpu = time.Duration(ns)
	return st, nil
}

// stop closes the child's stdin, which tells it to shut down, waits for it
// and returns how many tasks it ran.
func (c *child) stop() (int64, error) {
	c.stdin.Close()
	rest, err := c.expect("done")
	if err != nil {
		c.kill()
		return 0, fmt.Errorf("worker process: %w", err)
	}
	ran, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		c.kill()
		return 0, fmt.Errorf("worker process: done %q: %w", rest, err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			return 0, fmt.Errorf("worker process: %w", err)
		}
		return ran, nil
	case <-time.After(30 * time.Second):
		c.kill()
		return 0, errors.New("worker process did not exit within 30s")
	}
}

func (c *child) kill() {
	c.stdin.Close()
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// childMain is a worker process: it connects, says "ready", starts its
// worker on "go", answers "stat", and shuts the worker down when its stdin
// closes (see the protocol at the top of this file).
func childMain(system string, args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench %s worker process: %v\n", system, err)
		return 1
	}
	var url string
	c := 16
	for i := 0; i+1 < len(args); i += 2 {
		var err error
		switch args[i] {
		case "--redis-url":
			url = args[i+1]
		case "--concurrency":
			c, err = strconv.Atoi(args[i+1])
		case "--task-sleep":
			taskSleep, err = time.ParseDuration(args[i+1])
		}
		if err != nil {
			return fail(fmt.Errorf("%s: %w", args[i], err))
		}
	}
	open, ok := openers[system]
	if !ok {
		return fail(fmt.Errorf("unknown system %q", system))
	}
	ctx := context.Background()
	s, err := open(url)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	if _, err := s.Unfinished(ctx); err != nil { // connected
		return fail(err)
	}
	fmt.Println("ready")
	var stop func() error
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "go":
			if stop == nil {
				if stop, err = s.StartWorker(ctx, c); err != nil {
					return fail(err)
				}
			}
		case "stat":
			fmt.Println("stat", processCPU().Nanoseconds(), ran.Load())
		}
	}
	if stop != nil {
		if err := stop(); err != nil {
			return fail(err)
		}
	}
	fmt.Println("done", ran.Load())
	return 0
}
