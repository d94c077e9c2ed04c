package broker

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gotasks/gotasks/task"
)

// envelope is the immutable part of a task, opaque to the Lua scripts: a
// msgpack array, written by appendEnvelope and read with msgpack.
type envelope struct {
	_msgpack   struct{} `msgpack:",as_array"`
	Task       string
	Args       []byte
	EnqueuedAt int64 // unix µs
	RunAfter   int64 // unix µs; 0: not deferred
	// task.Limits, in milliseconds. BackoffBase and BackoffMax are 0 when
	// they are the defaults (task.DefaultBackoffBase, and the larger of
	// task.DefaultBackoffMax and the base): withDefaults fills them in.
	MaxAttempts int
	BackoffBase int64
	BackoffMax  int64
	Timeout     int64
	// Serializer names the serializer of Args and of the return value, a
	// ninth element written only when it is not msgpack (so that msgpack
	// envelopes stay as they were): any worker then decodes what any
	// producer wrote. Without it a reader uses its own (default msgpack),
	// as for envelopes written before it existed.
	Serializer string `msgpack:"-"`
	// Metadata, a tenth element (a map of strings, or nil) written only
	// when the task has any or an eleventh follows; the ninth is then
	// written too.
	Metadata task.Metadata `msgpack:"-"`
	// ResultTTL, an eleventh element (milliseconds) written only when the
	// producer's ResultTTL is not the default: the result is kept that
	// long, whatever the storing worker's own option says.
	ResultTTL int64 `msgpack:"-"`
}

// DecodeMsgpack reads an envelope of eight elements or more: the ninth is
// the serializer's name, and later ones (from a newer version) are skipped.
func (e *envelope) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 8 {
		return fmt.Errorf("envelope of %d elements, want 8 or more", n)
	}
	if e.Task, err = d.DecodeString(); err != nil {
		return err
	}
	if e.Args, err = d.DecodeBytes(); err != nil {
		return err
	}
	for _, p := range []*int64{&e.EnqueuedAt, &e.RunAfter} {
		if *p, err = d.DecodeInt64(); err != nil {
			return err
		}
	}
	if e.MaxAttempts, err = d.DecodeInt(); err != nil {
		return err
	}
	for _, p := range []*int64{&e.BackoffBase, &e.BackoffMax, &e.Timeout} {
		if *p, err = d.DecodeInt64(); err != nil {
			return err
		}
	}
	if n > 8 {
		if e.Serializer, err = d.DecodeString(); err != nil {
			return err
		}
	}
	if n > 9 {
		if err := d.Decode(&e.Metadata); err != nil {
			return err
		}
	}
	if n > 10 {
		if e.ResultTTL, err = d.DecodeInt64(); err != nil {
			return err
		}
	}
	for range n - 11 {
		if err := d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// The defaults of task.Limits, in the envelope's milliseconds.
var (
	defaultBackoffBaseMs = task.DefaultBackoffBase.Milliseconds()
	defaultBackoffMaxMs  = task.DefaultBackoffMax.Milliseconds()
)

// withDefaults fills in the limits the envelope leaves out (0) because
// they are the defaults. Values written before they were left out carry
// them in full, and read the same.
func (e *envelope) withDefaults() {
	if e.BackoffBase <= 0 {
		e.BackoffBase = defaultBackoffBaseMs
	}
	if e.BackoffMax <= 0 {
		e.BackoffMax = max(defaultBackoffMaxMs, e.BackoffBase)
	}
}

func encodeEnvelope(m *task.Message) (string, error) {
	return string(appendEnvelope(nil, m, "", 0)), nil
}

// appendEnvelope appends m's envelope to dst: the msgpack that
// msgpack.Marshal(&envelope{...}) gives with compact integers (each in
// the fewest bytes, where Marshal writes every int64 in 9), and the
// default backoff as 0. Any msgpack decoder reads it as the same array of
// eight (workers of earlier versions too); for the bench's tasks it makes
// the stored value 155 bytes instead of 187, which Redis keeps in a
// 160-byte allocation instead of a 192-byte one.
//
// ser is the serializer's name, written as a ninth element unless it is
// msgpack (the empty string) and the task has no metadata (the tenth) and
// ttlMs is 0 (the result TTL, the eleventh).
func appendEnvelope(dst []byte, m *task.Message, ser string, ttlMs int64) []byte {
	var runAfter int64
	if !m.RunAfter.IsZero() {
		runAfter = m.RunAfter.UnixMicro()
	}
	base, bmax := m.BackoffBase.Milliseconds(), m.BackoffMax.Milliseconds()
	if base == defaultBackoffBaseMs {
		base = 0
	}
	if bmax == max(defaultBackoffMaxMs, m.BackoffBase.Milliseconds()) {
		bmax = 0
	}
	fields := 8
	switch {
	case ttlMs > 0:
		fields = 11
	case len(m.Metadata) > 0:
		fields = 10
	case ser != "" && ser != "msgpack":
		fields = 9
	}
	dst = append(dst, 0x90|byte(fields)) // fixarray
	dst = appendMsgpackStr(dst, m.TaskName)
	dst = appendMsgpackBin(dst, m.Args)
	dst = appendMsgpackInt(dst, m.EnqueuedAt.UnixMicro())
	dst = appendMsgpackInt(dst, runAfter)
	dst = appendMsgpackInt(dst, int64(m.MaxAttempts))
	dst = appendMsgpackInt(dst, base)
	dst = appendMsgpackInt(dst, bmax)
	dst = appendMsgpackInt(dst, m.Timeout.Milliseconds())
	if fields > 8 {
		dst = appendMsgpackStr(dst, cmp.Or(ser, "msgpack"))
	}
	if fields > 9 {
		if len(m.Metadata) > 0 {
			dst = appendMetadata(dst, m.Metadata)
		} else {
			dst = append(dst, 0xc0) // nil
		}
	}
	if fields > 10 {
		dst = appendMsgpackInt(dst, ttlMs)
	}
	return dst
}

func appendMsgpackStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}

// appendMsgpackBin writes b as msgpack bin, and nil as nil (as Marshal).
func appendMsgpackBin(dst []byte, b []byte) []byte {
	switch n := len(b); {
	case b == nil:
		return append(dst, 0xc0)
	case n <= math.MaxUint8:
		dst = append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0xc5, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, b...)
}

// appendMsgpackInt writes v in the shortest msgpack integer format.
func appendMsgpackInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0 && v < 128:
		return append(dst, byte(v)) // positive fixint
	case v >= -32 && v < 0:
		return append(dst, byte(v)) // negative fixint
	case v >= 0 && v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v >= 0 && v <= math.MaxUint32:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	case v >= math.MinInt8 && v < 0:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16 && v < 0:
		return append(dst, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32 && v < 0:
		return append(dst, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	case v >= 0:
		return append(dst, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, 0xd3, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendMetadata writes m as a msgpack map of strings, in key order (the
// same metadata, the same bytes).
func appendMetadata(dst []byte, m task.Metadata) []byte {
	switch n := len(m); {
	case n < 16:
		dst = append(dst, 0x80|byte(n))
	default: // at most task.MaxMetadataKeys
		dst = append(dst, 0xde, byte(n>>8), byte(n))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		dst = appendMsgpackStr(dst, k)
		dst = appendMsgpackStr(dst, m[k])
	}
	return dst
}
