package broker

import (
	"bytes"
	"encoding/hex"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gotasks/gotasks/task"
)

// oldValue is a task value as the enqueue script stored it before the
// envelope was compacted: header line, then msgpack.Marshal of the
// envelope, which writes every int64 in 9 bytes and the default backoff in
// full (bench.noop with the bench's payload, copied from Redis). Tasks
// stored by an earlier version are still in Redis after an upgrade: they
// must read the same.
const oldValue = "302030203935383033323034303439362030200a98aa62656e63682e6e6f6f70c46b86a3736571d30000000000000000a7757365725f6964d30000000000401640a5656d61696cad61406578616d706c652e636f6da77375626a656374ae5765656b6c792073756d6d617279a874656d706c617465a67765656b6c79a773656e745f6174d30006474846204000d30006610eed83ae93d3000000000000000001d300000000000003e8d300000000000927c0d30000000000000000"

func TestDecodeOldFormatValue(t *testing.T) {
	raw, err := hex.DecodeString(oldValue)
	if err != nil {
		t.Fatal(err)
	}
	b := fuzzBackend(t)
	r, err := b.decodeTask("01M881R292D8NKD96BPWPQ4B9D", "default", string(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := task.Limits{MaxAttempts: 1, BackoffBase: task.DefaultBackoffBase, BackoffMax: task.DefaultBackoffMax}
	if r.TaskName != "bench.noop" || r.Status != task.StatusNew || r.Priority != 0 || r.Attempts != 0 ||
		!r.EnqueuedAt.Equal(time.UnixMicro(0x0006610eed83ae93)) || !r.RunAfter.IsZero() || r.Limits != want || len(r.Args) != 107 {
		t.Fatalf("old value decoded as %+v", r)
	}
	var args map[string]any
	if err := r.DecodeArgs(&args); err != nil || args["email"] != "a@example.com" {
		t.Fatalf("args %v, %v", args, err)
	}
	// The same task written now reads the same, in 32 bytes less.
	env, _ := encodeEnvelope(&task.Message{TaskName: r.TaskName, Args: r.Args, EnqueuedAt: r.EnqueuedAt, Limits: r.Limits})
	header, _, _ := strings.Cut(string(raw), "\n")
	now := header + "\n" + env
	if len(raw)-len(now) != 32 {
		t.Errorf("value %d bytes, was %d", len(now), len(raw))
	}
	again, err := b.decodeTask(r.ID, r.Queue, now)
	if err != nil {
		t.Fatal(err)
	}
	if again.TaskName != r.TaskName || !bytes.Equal(again.Args, r.Args) || !again.EnqueuedAt.Equal(r.EnqueuedAt) || again.Limits != r.Limits {
		t.Fatalf("new encoding decoded as %+v, want %+v", again, r)
	}
}

// envelopeCases are messages whose envelopes cover every length and
// integer format the encoder writes.
func envelopeCases() []*task.Message {
	at := time.UnixMicro(1767225600123456)
	var out []*task.Message
	for _, name := range []string{"", "t", strings.Repeat("n", 31), strings.Repeat("n", 32), strings.Repeat("n", 255), strings.Repeat("n", 256), strings.Repeat("n", 70000)} {
		out = append(out, &task.Message{TaskName: name, Args: []byte{0x80}, EnqueuedAt: at})
	}
	for _, args := range [][]byte{nil, {}, bytes.Repeat([]byte{7}, 255), bytes.Repeat([]byte{7}, 256), bytes.Repeat([]byte{7}, 65536)} {
		out = append(out, &task.Message{TaskName: "a", Args: args, EnqueuedAt: at})
	}
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for _, n := range ints {
		d := time.Duration(n) * time.Millisecond
		if n > math.MaxInt64/int64(time.Millisecond) || n < math.MinInt64/int64(time.Millisecond) {
			d = time.Duration(n) // still covers the widest formats
		}
		out = append(out, &task.Message{
			TaskName: "ints", Args: []byte{0xc0}, EnqueuedAt: time.UnixMicro(n), RunAfter: time.UnixMicro(n),
			Limits: task.Limits{MaxAttempts: int(n), BackoffBase: d, BackoffMax: d, Timeout: d},
		})
	}
	// The defaults, which the envelope leaves out, and values next to them.
	for _, l := range []task.Limits{
		{MaxAttempts: 1, BackoffBase: task.DefaultBackoffBase, BackoffMax: task.DefaultBackoffMax},
		{MaxAttempts: 5, BackoffBase: task.DefaultBackoffBase + time.Millisecond, BackoffMax: task.DefaultBackoffMax - time.Millisecond, Timeout: time.Second},
		{MaxAttempts: 3, BackoffBase: time.Hour, BackoffMax: time.Hour}, // a base over the default max: the max defaults to it
		{MaxAttempts: 3, BackoffBase: time.Hour, BackoffMax: 2 * time.Hour},
	} {
		out = append(out, &task.Message{TaskName: "limits", Args: []byte{0x90}, EnqueuedAt: at, RunAfter: at.Add(time.Minute), Limits: l})
	}
	return out
}

// The encoder writes exactly what msgpack writes with compact integers,
// so that any msgpack decoder (a worker of an earlier version included,
// which decodes into the same array of eight) reads it.
func TestEnvelopeIsCompactMsgpack(t *testing.T) {
	for i, m := range envelopeCases() {
		e := envelope{
			Task: m.TaskName, Args: m.Args, EnqueuedAt: m.EnqueuedAt.UnixMicro(),
			MaxAttempts: m.MaxAttempts, BackoffBase: m.BackoffBase.Milliseconds(),
			BackoffMax: m.BackoffMax.Milliseconds(), Timeout: m.Timeout.Milliseconds(),
		}
		if !m.RunAfter.IsZero() {
			e.RunAfter = m.RunAfter.UnixMicro()
		}
		if e.BackoffBase == defaultBackoffBaseMs {
			e.BackoffBase = 0
		}
		if e.BackoffMax == max(defaultBackoffMaxMs, m.BackoffBase.Milliseconds()) {
			e.BackoffMax = 0
		}
		var want bytes.Buffer
		enc := msgpack.NewEncoder(&want)
		enc.UseCompactInts(true)
		if err := enc.Encode(&e); err != nil {
			t.Fatal(err)
		}
		got := appendEnvelope([]byte("x"), m, "", 0)[1:]
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("case %d: appendEnvelope\n%x\nmsgpack\n%x", i, got, want.Bytes())
		}
		// It decodes, as the old envelope did, with the defaults back.
		var d envelope
		if err := unmarshal(got, &d); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		d.withDefaults()
		e.withDefaults()
		if d.Task != e.Task || !bytes.Equal(d.Args, e.Args) || d.EnqueuedAt != e.EnqueuedAt || d.RunAfter != e.RunAfter ||
			d.MaxAttempts != e.MaxAttempts || d.BackoffBase != e.BackoffBase || d.BackoffMax != e.BackoffMax || d.Timeout != e.Timeout {
			t.Fatalf("case %d: decoded %+v, want %+v", i, d, e)
		}
	}
}

// A task stored in the new format and in the old one reads the same.
func TestOldAndNewEnvelopesDecodeAlike(t *testing.T) {
	b := fuzzBackend(t)
	for i, m := range envelopeCases() {
		if m.MaxAttempts < 0 || m.BackoffBase < 0 || m.Timeout < 0 || m.EnqueuedAt.UnixMicro() < 0 {
			continue // not a task Enqueue lets through
		}
		l := m.Limits
		if l.BackoffBase <= 0 {
			l.BackoffBase = task.DefaultBackoffBase
		}
		if l.BackoffMax <= 0 {
			l.BackoffMax = max(task.DefaultBackoffMax, l.BackoffBase)
		}
		m.Limits = l // as Enqueue fills them in
		old, err := msgpack.Marshal(&envelope{
			Task: m.TaskName, Args: m.Args, EnqueuedAt: m.EnqueuedAt.UnixMicro(), RunAfter: m.RunAfter.UnixMicro(),
			MaxAttempts: m.MaxAttempts, BackoffBase: l.BackoffBase.Milliseconds(),
			BackoffMax: l.BackoffMax.Milliseconds(), Timeout: l.Timeout.Milliseconds(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if m.RunAfter.IsZero() {
			old, _ = msgpack.Marshal(&envelope{
				Task: m.TaskName, Args: m.Args, EnqueuedAt: m.EnqueuedAt.UnixMicro(),
				MaxAttempts: m.MaxAttempts, BackoffBase: l.BackoffBase.Milliseconds(),
				BackoffMax: l.BackoffMax.Milliseconds(), Timeout: l.Timeout.Milliseconds(),
			})
		}
		env, _ := encodeEnvelope(m)
		const header = "2 -7 123 1767225600999999 w1,w2\n"
		ro, err1 := b.decodeTask("id", "q", header+string(old))
		rn, err2 := b.decodeTask("id", "q", header+env)
		if err1 != nil || err2 != nil {
			t.Fatalf("case %d: %v, %v", i, err1, err2)
		}
		if ro.TaskName != rn.TaskName || !bytes.Equal(ro.Args, rn.Args) || !ro.EnqueuedAt.Equal(rn.EnqueuedAt) ||
			!ro.RunAfter.Equal(rn.RunAfter) || ro.Limits != rn.Limits || ro.Attempts != 2 || rn.Priority != -7 {
			t.Fatalf("case %d: old format %+v\nnew format %+v", i, ro, rn)
		}
		if len(env) > len(old) {
			t.Errorf("case %d: new envelope %d bytes, old %d", i, len(env), len(old))
		}
	}
}
