package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Report is what the bench prints as a table and writes as JSON.
type Report struct {
	Machine Machine `json:"machine"`
	Config  Config  `json:"config"`
	Rows    []Row   `json:"rows"`
	// Middleware is the middleware section (--only middleware), whose
	// ratios are to its "none" variant; nil when it did not run.
	Middleware *MiddlewareResult `json:"middleware,omitempty"`
}

// Machine says where the numbers come from.
type Machine struct {
	Date      string `json:"date"`
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	Load      string `json:"load"` // 1-minute load average at the start → at the end
	OS        string `json:"os"`
	GoVersion string `json:"go"`
	Redis     string `json:"redis"`
	Gotasks   string `json:"gotasks"`
	Asynq     string `json:"asynq"`
}

// Row is one metric for both systems. A nil value was not measured (n/a);
// Note says why.
type Row struct {
	ID      string   `json:"id"`
	Metric  string   `json:"metric"`
	Unit    string   `json:"unit"`
	Better  string   `json:"better"` // "higher" or "lower"
	Gotasks *float64 `json:"gotasks"`
	Asynq   *float64 `json:"asynq"`
	Ratio   *float64 `json:"ratio"` // gotasks / asynq
	Target  string   `json:"target,omitempty"`
	Met     *bool    `json:"met,omitempty"`
	Note    string   `json:"note,omitempty"`
	// Scale is the detail of a scale-out row (shares, CPU per process).
	Scale *ScaleResult `json:"scale,omitempty"`
}

// metric describes a row: how to label it and which target of issue #6
// applies.
type metric struct {
	id, label, unit string
	lowerBetter     bool
	asynq           bool // asynq is measured too
	target          string
	met             func(g, a float64, hasA bool) (ok, known bool)
	note            string
}

func atLeastTimes(k float64) func(g, a float64, hasA bool) (bool, bool) {
	return func(g, a float64, hasA bool) (bool, bool) { return g >= k*a, hasA && a > 0 }
}

func atMostTimes(k float64) func(g, a float64, hasA bool) (bool, bool) {
	return func(g, a float64, hasA bool) (bool, bool) { return g <= k*a, hasA && a > 0 }
}

func atLeast(v float64) func(g, a float64, hasA bool) (bool, bool) {
	return func(g, _ float64, _ bool) (bool, bool) { return g >= v, true }
}

func atMost(v float64) func(g, a float64, hasA bool) (bool, bool) {
	return func(g, _ float64, _ bool) (bool, bool) { return g <= v, true }
}

// metrics are the rows, in table order; the ids are stable for JSON users.
func metrics(cfg Config) []metric {
	drain := func(c int, target string, met func(g, a float64, hasA bool) (bool, bool)) metric {
		return metric{id: fmt.Sprintf("drain_c%d", c), label: fmt.Sprintf("drain, 1 process, concurrency %d", c),
			unit: "tasks/s", asynq: true, target: target, met: met}
	}
	ms := []metric{
		{id: "enqueue_1", label: "enqueue, 1 goroutine, 1 task/call", unit: "tasks/s", asynq: true,
			target: "≥ 1.0× asynq", met: atLeastTimes(1.0)},
		{id: "enqueue_16", label: "enqueue, 16 goroutines, 1 task/call", unit: "tasks/s", asynq: true,
			target: "≥ 1.5× asynq", met: atLeastTimes(1.5)},
		{id: "redis_cpu_enqueue", label: "Redis CPU per task, that enqueue", unit: "µs/task", lowerBetter: true, asynq: true,
			note: "INFO cpu; steadier than rates on a busy machine"},
		{id: "enqueue_many_100", label: "enqueue, EnqueueMany batches of 100", unit: "tasks/s",
			target: "≥ 150,000/s", met: atLeast(150_000), note: "asynq has no batch or pipelined enqueue"},
		drain(1, "", nil),
		drain(16, "≥ 10× asynq", atLeastTimes(10)),
		drain(64, "", nil),
		{id: "redis_cpu_c16", label: "Redis CPU per task, drain at concurrency 16", unit: "µs/task", lowerBetter: true, asynq: true,
			target: "≤ 10 µs", met: atMost(10), note: "INFO cpu"},
		{id: "worker_cpu_c16", label: "worker process CPU per task, same drain", unit: "µs/task", lowerBetter: true, asynq: true,
			target: "≤ 8 µs", met: atMost(8), note: "in-process worker, with the bench's 2 ms polling"},
		{id: "drain_2proc", label: fmt.Sprintf("drain, 2 processes × concurrency %d", cfg.ProcConcurrency),
			unit: "tasks/s", asynq: true},
	}
	for _, k := range scaleKinds(cfg) {
		for _, procs := range cfg.ScaleProcs {
			m := metric{id: scaleID(k, procs), label: scaleLabel(k, procs), unit: "tasks/s"}
			if procs == 2 && slices.Contains(cfg.ScaleProcs, 1) {
				m.target = fmt.Sprintf("≥ %.1f× 1 process", scaleGrowth)
			}
			ms = append(ms, m)
		}
	}
	return append(ms, []metric{
		{id: "latency_p50", label: "idle enqueue→start latency p50", unit: "ms", lowerBetter: true, asynq: true,
			target: "≤ 5 ms", met: atMost(5)},
		{id: "latency_p99", label: "idle enqueue→start latency p99", unit: "ms", lowerBetter: true, asynq: true,
			target: "≤ 25 ms", met: atMost(25)},
		{id: "wait_p50", label: "Result.Wait finish→return p50, events", unit: "ms", lowerBetter: true,
			target: "≤ 2 ms", met: atMost(2), note: "gotasks only; idle worker; Wait's interval 1 min"},
		{id: "wait_p99", label: "Result.Wait finish→return p99, events", unit: "ms", lowerBetter: true,
			target: "≤ 10 ms", met: atMost(10), note: "gotasks only"},
		{id: "wait_poll_p50", label: "Result.Wait finish→return p50, polling 50 ms", unit: "ms", lowerBetter: true,
			note: "gotasks only; events off: the fallback"},
		{id: "wait_poll_p99", label: "Result.Wait finish→return p99, polling 50 ms", unit: "ms", lowerBetter: true,
			note: "gotasks only"},
		{id: "memory_per_task", label: "Redis memory per pending task", unit: "bytes", lowerBetter: true, asynq: true,
			target: "≤ 0.5× asynq", met: atMostTimes(0.5)},
		{id: "claim_small", label: fmt.Sprintf("claim+run+complete, %s pending", count(cfg.SmallPending)),
			unit: "µs/task", lowerBetter: true, note: "gotasks only; worker at concurrency 1"},
		{id: "claim_large", label: fmt.Sprintf("claim+run+complete, %s pending", count(cfg.LargePending)),
			unit: "µs/task", lowerBetter: true, note: "gotasks only; worker at concurrency 1"},
		{id: "claim_growth", label: "claim cost growth (large / small)", unit: "×", lowerBetter: true,
			target: "≤ 2× (logarithmic)", met: atMost(2), note: "log(1M)/log(1k) = 2"},
		{id: "hotpath_allocs", label: "worker hot path, allocations", unit: "allocs/task", lowerBetter: true,
			note: "gotasks only; go test -bench HotPath"},
		{id: "hotpath_bytes", label: "worker hot path, bytes allocated", unit: "B/task", lowerBetter: true,
			note: "gotasks only; go test -bench HotPath"},
	}...)
}

// results holds what was measured: results[id][system].
type results map[string]map[string]float64

func (r results) set(id, system string, v float64) {
	if r[id] == nil {
		r[id] = map[string]float64{}
	}
	r[id][system] = v
}

// buildRows turns results into rows; notes explains what was skipped.
func buildRows(cfg Config, res results, notes map[string]string, scale map[string]*ScaleResult) []Row {
	var rows []Row
	for _, m := range metrics(cfg) {
		row := Row{ID: m.id, Metric: m.label, Unit: m.unit, Better: "higher", Target: m.target, Note: m.note}
		if m.lowerBetter {
			row.Better = "lower"
		}
		g, hasG := res[m.id][nameGotasks]
		a, hasA := res[m.id][nameAsynq]
		if hasG {
			row.Gotasks = ptr(g)
		}
		if hasA {
			row.Asynq = ptr(a)
		}
		if hasG && hasA && a != 0 {
			row.Ratio = ptr(g / a)
		}
		if hasG && m.met != nil {
			if ok, known := m.met(g, a, hasA); known {
				row.Met = &ok
			}
		}
		if sc := scale[m.id]; sc != nil {
			row.Scale = sc
			row.Note = sc.note()
			if m.target != "" && sc.VsOne != nil {
				ok := *sc.VsOne >= scaleGrowth
				row.Met = &ok
			}
		}
		if n := notes[m.id]; n != "" {
			row.Note = strings.TrimPrefix(row.Note+"; "+n, "; ")
		}
		rows = append(rows, row)
	}
	return rows
}

func ptr(v float64) *float64 { return &v }

// tableCells returns the header and the rows of the table as text.
func tableCells(r *Report) [][]string {
	cells := [][]string{{"metric", "unit", "gotasks", "asynq", "gotasks/asynq", "better", "target", "met", "note"}}
	for _, row := range r.Rows {
		met := ""
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*row.Met]
		}
		ratio := "n/a"
		if row.Ratio != nil {
			ratio = fmt.Sprintf("%.3g×", *row.Ratio)
		}
		cells = append(cells, []string{row.Metric, row.Unit, num(row.Gotasks), num(row.Asynq), ratio,
			row.Better, row.Target, met, row.Note})
	}
	return cells
}

// numeric columns are right-aligned in the text table.
var numeric = []bool{false, false, true, true, true, false, false, false, false}

const ratioLegend = "gotasks/asynq: above 1 favours gotasks where better=higher (rates), below 1 where better=lower (latency, memory, cost)."

// writeTable prints the report as an aligned text table, or as Markdown.
func writeTable(w io.Writer, r *Report, markdown bool) error {
	m := r.Machine
	c := r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "gotasks %s vs asynq %s · redis %s · %s · %d CPUs (%s) · %s · load %s · %s\n",
		m.Gotasks, m.Asynq, m.Redis, m.GoVersion, m.CPUs, m.CPU, m.OS, m.Load, m.Date)
	fmt.Fprintf(&b, "tasks=%d · payload %d bytes · latency: %d samples at concurrency %d, random pause < %v before each\n\n",
		c.Tasks, c.PayloadBytes, c.LatencySamples, c.LatencyConcurrency, c.LatencyGap)
	if measured(r.Rows) || r.Middleware == nil {
		writeCells(&b, tableCells(r), numeric, markdown)
		b.WriteString("\n" + ratioLegend + "\n")
		if r.Middleware != nil {
			b.WriteString("\n")
		}
	}
	if r.Middleware != nil {
		writeMiddleware(&b, r.Middleware, markdown)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// measured says whether any row has a value: with --only middleware none
// has, and the table of n/a rows is left out.
func measured(rows []Row) bool {
	return slices.ContainsFunc(rows, func(r Row) bool { return r.Gotasks != nil || r.Asynq != nil })
}

// writeCells writes cells (the first row is the header) as an aligned text
// table, numeric columns right-aligned, or as Markdown.
func writeCells(b *strings.Builder, cells [][]string, numeric []bool, markdown bool) {
	if markdown {
		for i, row := range cells {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
			if i == 0 {
				for j := range row {
					if numeric[j] {
						b.WriteString("|---:")
					} else {
						b.WriteString("|---")
					}
				}
				b.WriteString("|\n")
			}
		}
	} else {
		width := make([]int, len(cells[0]))
		for _, row := range cells {
			for j, cell := range row {
				width[j] = max(width[j], utf8.RuneCountInString(cell))
			}
		}
		for _, row := range cells {
			var line strings.Builder
			for j, cell := range row {
				pad := strings.Repeat(" ", width[j]-utf8.RuneCountInString(cell))
				if numeric[j] {
					line.WriteString(pad + cell)
				} else {
					line.WriteString(cell + pad)
				}
				line.WriteString("  ")
			}
			b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
		}
	}
}

// num formats a value for the table: thousands separated, with decimals
// only where they matter.
func num(v *float64) string {
	if v == nil {
		return "n/a"
	}
	x := *v
	switch {
	case math.Abs(x) >= 1000:
		return count(int(math.Round(x)))
	case math.Abs(x) >= 100:
		return fmt.Sprintf("%.0f", x)
	case math.Abs(x) >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// count formats n with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func writeJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
