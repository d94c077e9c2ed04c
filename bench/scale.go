package main

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The scale section (issue #5): gotasks drain throughput with 1, 2 and 4
// worker processes on one queue, for three kinds of work, with each
// process's share of the tasks and the CPU that every process used.

// scaleGrowth is the target of the 2-process rows: more throughput than
// one process by more than the noise of a shared machine.
const scaleGrowth = 1.1

// scaleKind is one kind of work the scale section measures.
type scaleKind struct {
	id, what string
	conc     int           // per worker process
	wait     time.Duration // each task waits this long (0: a no-op)
}

func scaleKinds(cfg Config) []scaleKind {
	return []scaleKind{
		{fmt.Sprintf("noop_c%d", cfg.ProcConcurrency), "no-op tasks", cfg.ProcConcurrency, 0},
		{"noop_c1", "no-op tasks", 1, 0},
		{fmt.Sprintf("io_c%d", cfg.ScaleIOConcurrency), fmt.Sprintf("tasks waiting %v", cfg.ScaleIOWait),
			cfg.ScaleIOConcurrency, cfg.ScaleIOWait},
	}
}

func scaleID(k scaleKind, procs int) string { return fmt.Sprintf("scale_%s_p%d", k.id, procs) }

func scaleLabel(k scaleKind, procs int) string {
	s := "es"
	if procs == 1 {
		s = ""
	}
	return fmt.Sprintf("scale-out, %s, concurrency %d × %d process%s", k.what, k.conc, procs, s)
}

// ScaleResult is the detail of a scale row, in the JSON report as "scale".
// Everything but the rounds' rates is of the best round.
type ScaleResult struct {
	Processes   int       `json:"processes"`
	Concurrency int       `json:"concurrency"` // per process
	TaskWait    int64     `json:"task_wait_ns"`
	Rate        float64   `json:"tasks_per_s"` // the best round's
	Rounds      []float64 `json:"rounds_tasks_per_s"`
	VsOne       *float64  `json:"vs_1_process,omitempty"` // Rate / the 1-process row's Rate
	Shares      []float64 `json:"shares"`                 // each process's fraction of the tasks
	ShareMin    float64   `json:"share_min"`
	ShareMax    float64   `json:"share_max"`
	CPU         ScaleCPU  `json:"cpu_percent"`
	// CPU per task, µs: redis-server's, and all worker processes' together.
	RedisPerTask  float64 `json:"redis_cpu_us_per_task"`
	WorkerPerTask float64 `json:"workers_cpu_us_per_task"`
}

// ScaleCPU is CPU time over the drain / its wall time, in % of one CPU,
// as top shows it: 100 is one core fully busy.
type ScaleCPU struct {
	Redis   float64   `json:"redis_server"`
	Workers []float64 `json:"workers"`
	Bench   float64   `json:"bench"` // the bench itself: producer connection, 2 ms polling
	// Machine is everything on the machine (Linux only); Others is what
	// is left of it after the above: other programs, and the kernel's
	// loopback networking (softirq) where no process is charged for it.
	// Idle is Capacity - Machine; Capacity is 100 × CPUs.
	Machine  *float64 `json:"machine,omitempty"`
	Others   *float64 `json:"others,omitempty"`
	Idle     *float64 `json:"idle,omitempty"`
	Capacity int      `json:"capacity"`
}

// newScaleResult describes the best (fastest) of rounds: load from other
// programs only ever slows a drain down, so on a shared machine the best
// round is the one least disturbed.
func newScaleResult(k scaleKind, rounds []procsResult) *ScaleResult {
	m := slices.MaxFunc(rounds, func(a, b procsResult) int { return cmp.Compare(a.rate(), b.rate()) })
	res := &ScaleResult{
		Processes: len(m.ran), Concurrency: k.conc, TaskWait: k.wait.Nanoseconds(), Rate: m.rate(),
		ShareMin: 1,
	}
	for _, p := range rounds {
		res.Rounds = append(res.Rounds, p.rate())
	}
	total := float64(sum(m.ran))
	for _, n := range m.ran {
		sh := float64(n) / total
		res.Shares = append(res.Shares, sh)
		res.ShareMin, res.ShareMax = min(res.ShareMin, sh), max(res.ShareMax, sh)
	}
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / m.elapsed.Seconds() }
	res.CPU = ScaleCPU{Redis: pct(m.redisCPU), Bench: pct(m.benchCPU), Capacity: 100 * runtime.NumCPU()}
	if m.machineOK {
		res.CPU.Capacity = 100 * m.cpus // all of them, even if the bench may use fewer
	}
	for _, d := range m.cpu {
		res.CPU.Workers = append(res.CPU.Workers, pct(d))
	}
	if m.machineOK {
		all := pct(m.machineBusy)
		others := max(0, all-res.CPU.Redis-res.CPU.Bench-sum(res.CPU.Workers))
		idle := max(0, float64(res.CPU.Capacity)-all)
		res.CPU.Machine, res.CPU.Others, res.CPU.Idle = &all, &others, &idle
	}
	perTask := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / total }
	res.RedisPerTask, res.WorkerPerTask = perTask(m.redisCPU), perTask(sum(m.cpu))
	return res
}

// note is the row's note in the table: growth, fairness, CPU.
func (s *ScaleResult) note() string {
	var parts []string
	if s.VsOne != nil && s.Processes > 1 {
		parts = append(parts, fmt.Sprintf("%.2f× 1 process", *s.VsOne))
	}
	if s.Processes > 1 {
		parts = append(parts, fmt.Sprintf("shares %.1f–%.1f%%", 100*s.ShareMin, 100*s.ShareMax))
	}
	ws := make([]string, len(s.CPU.Workers))
	for i, w := range s.CPU.Workers {
		ws[i] = fmt.Sprintf("%.0f", w)
	}
	cpu := fmt.Sprintf("CPU%% redis %.0f, worker%s %s, bench %.0f", s.CPU.Redis,
		map[bool]string{true: "s", false: ""}[len(ws) > 1], strings.Join(ws, "+"), s.CPU.Bench)
	if s.CPU.Machine != nil {
		cpu += fmt.Sprintf(", others %.0f, idle %.0f (of %d)", *s.CPU.Others, *s.CPU.Idle, s.CPU.Capacity)
	}
	parts = append(parts, cpu)
	if len(s.Rounds) > 1 {
		parts = append(parts, fmt.Sprintf("best of %d", len(s.Rounds)))
	}
	return strings.Join(parts, " · ")
}

// scaleOut runs the scale section: gotasks only, every kind with every
// number of worker processes, ScaleRounds times over, keeping the best (interleaved, so that
// a burst of load elsewhere hits one round of each rather than every round
// of one), each on a flushed Redis with a fresh producer.
func (r *runner) scaleOut(ctx context.Context) error {
	c := r.cfg
	runs := map[string][]procsResult{}
	for round := range c.ScaleRounds {
		for _, k := range scaleKinds(c) {
			for _, procs := range c.ScaleProcs {
				id := scaleID(k, procs)
				p, err := r.scaleOnce(ctx, k, procs)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", nameGotasks, id, err)
				}
				runs[id] = append(runs[id], p)
				one := newScaleResult(k, []procsResult{p})
				fmt.Fprintf(r.log, "%-8s %-20s %s tasks/s · %s (round %d, %v)\n", nameGotasks, id,
					count(int(one.Rate)), one.note(), round+1, p.elapsed.Round(time.Millisecond))
			}
		}
	}
	for _, k := range scaleKinds(c) {
		var base *ScaleResult
		for _, procs := range c.ScaleProcs {
			id := scaleID(k, procs)
			res := newScaleResult(k, runs[id])
			if procs == 1 {
				base = res
			}
			if base != nil {
				res.VsOne = ptr(res.Rate / base.Rate)
			}
			r.res.set(id, nameGotasks, res.Rate)
			r.scale[id] = res
		}
	}
	return nil
}

// scaleOnce is one drain of c.Tasks by procs worker processes.
func (r *runner) scaleOnce(ctx context.Context, k scaleKind, procs int) (procsResult, error) {
	if err := r.admin.flush(ctx); err != nil {
		return procsResult{}, err
	}
	s, err := openGotasks(r.url)
	if err != nil {
		return procsResult{}, err
	}
	p, err := drainProcs(ctx, r.admin, s, r.url, r.cfg.Tasks, procs, k.conc, k.wait)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return p, err
}
