// Package serializer turns task arguments and return values into bytes and
// back. gotasks stores everything it sends through Redis with one of these;
// msgpack is the default because it is compact and keeps time.Time and
// []byte intact, JSON is there for payloads other languages must read.
package serializer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Serializer encodes and decodes values. Implementations must be safe for
// concurrent use.
type Serializer interface {
	// Name identifies the format ("msgpack", "json").
	Name() string
	// Marshal encodes v. It returns an error, never panics, for values the
	// format cannot hold (channels, functions, cyclic data).
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, which must be a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// Default is the serializer used when none is configured: msgpack.
var Default Serializer = Msgpack{}

// Msgpack is the msgpack serializer (github.com/vmihailenco/msgpack/v5).
// Struct fields are named by their `msgpack` tag, falling back to the `json`
// tag, so a struct tagged for JSON keeps its field names in both formats.
type Msgpack struct{}

var encPool = sync.Pool{New: func() any {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag("json")
	return &pooledEncoder{buf: &buf, enc: enc}
}}

type pooledEncoder struct {
	buf *bytes.Buffer
	enc *msgpack.Encoder
}

// Name returns "msgpack".
func (Msgpack) Name() string { return "msgpack" }

// Marshal encodes v as msgpack. It refuses values nested deeper than
// MaxDepth, which Unmarshal would refuse.
func (Msgpack) Marshal(v any) (out []byte, err error) {
	pe := encPool.Get().(*pooledEncoder)
	defer func() {
		// msgpack panics on a few pathological inputs (for example a nil map
		// key of interface type); a task payload must never crash the caller.
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: encode %T: %v", v, r)
		}
		if pe.buf.Cap() <= 64<<10 { // do not keep huge buffers alive
			pe.buf.Reset()
			encPool.Put(pe)
		}
	}()
	pe.buf.Reset()
	if err := checkCycles(v); err != nil {
		return nil, fmt.Errorf("msgpack: encode %T: %w", v, err)
	}
	if err := pe.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("msgpack: encode %T: %w", v, err)
	}
	// Refuse now what Unmarshal would refuse (nesting deeper than MaxDepth),
	// rather than in the worker.
	if err := CheckMsgpack(pe.buf.Bytes()); err != nil {
		return nil, fmt.Errorf("msgpack: encode %T: %w", v, err)
	}
	if t := reflect.TypeOf(v); t != nil && mayHoldMap(t) {
		return canonical(pe.buf.Bytes()), nil // see canonical.go
	}
	return bytes.Clone(pe.buf.Bytes()), nil
}

// Unmarshal decodes msgpack data into v. It first checks the data with
// CheckMsgpack, so that data nested deeper than MaxDepth, truncated data
// and bytes after the value are refused with an error (wrapping ErrTooDeep
// or ErrMalformed) instead of crashing the process or being ignored; and it
// refuses an ext value where v has a map (see forkGuard).
func (Msgpack) Unmarshal(data []byte, v any) (err error) {
	ambiguous, err := scan(data, nil)
	if err != nil {
		return fmt.Errorf("msgpack: decode into %T: %w", v, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: decode into %T: %v", v, r)
		}
	}()
	if !ambiguous {
		dec := msgpack.NewDecoder(bytes.NewReader(data))
		dec.SetCustomStructTag("json")
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("msgpack: decode into %T: %w", v, err)
		}
		return nil
	}
	g := &forkGuard{data: data, forks: make([]uint64, len(data)/64+1), fork: -1}
	_, _ = scan(data, g.forks)
	dec := msgpack.NewDecoder(g)
	dec.SetCustomStructTag("json")
	if err := dec.Decode(v); err != nil {
		if g.fork >= 0 {
			return fmt.Errorf("msgpack: decode into %T: %w: an ext value where a map is expected (its payload at byte %d would be read as the map)", v, ErrMalformed, g.fork)
		}
		return fmt.Errorf("msgpack: decode into %T: %w", v, err)
	}
	return nil
}

// JSON is the encoding/json serializer.
type JSON struct{}

// Name returns "json".
func (JSON) Name() string { return "json" }

// Marshal encodes v as JSON.
func (JSON) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("json: encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes JSON data into v.
func (JSON) Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("json: decode into %T: %w", v, err)
	}
	return nil
}

// registered are the serializers other than msgpack and json that
// Register made known to ByName, by name.
var registered sync.Map // name → Serializer

// Register makes s known to ByName under s.Name(), in this process. A
// task names its producer's serializer and a worker decodes it with the
// one of that name, so a program with a serializer of its own registers
// it on both sides (before opening a backend, and in the worker's main
// before cli.Main). The names msgpack, json and "" are taken; Register
// panics on them, like a second Define of a name.
func Register(s Serializer) {
	switch name := s.Name(); name {
	case "", "msgpack", "json":
		panic(fmt.Sprintf("serializer: Register(%q): the name is taken by a built-in serializer", name))
	default:
		registered.Store(name, s)
	}
}

// ByName returns the serializer called name: "msgpack" (or ""), "json",
// or one made known with Register.
func ByName(name string) (Serializer, error) {
	switch name {
	case "", "msgpack":
		return Msgpack{}, nil
	case "json":
		return JSON{}, nil
	}
	if s, ok := registered.Load(name); ok {
		return s.(Serializer), nil
	}
	return nil, fmt.Errorf("serializer: unknown format %q (want msgpack, json or one made known with serializer.Register)", name)
}
