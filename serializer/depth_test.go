package serializer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// be returns n as a big-endian number of size bytes.
func be(n uint64, size int) []byte {
	b := binary.BigEndian.AppendUint64(nil, n)
	return b[8-size:]
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// everyFormat has one value of every msgpack format, as bytes.
func everyFormat() []struct {
	name string
	data []byte
} {
	s300 := bytes.Repeat([]byte("x"), 300)
	s70k := bytes.Repeat([]byte("y"), 70000)
	return []struct {
		name string
		data []byte
	}{
		{"positive fixint 0", []byte{0x00}},
		{"positive fixint 127", []byte{0x7f}},
		{"fixmap empty", []byte{0x80}},
		{"fixmap", []byte{0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x92, 0x01, 0x02}},
		{"fixmap 15", cat([]byte{0x8f}, bytes.Repeat([]byte{0xa1, 'k', 0xc0}, 15))},
		{"fixarray empty", []byte{0x90}},
		{"fixarray", []byte{0x93, 0x01, 0xc0, 0xa0}},
		{"fixarray 15", cat([]byte{0x9f}, bytes.Repeat([]byte{0x07}, 15))},
		{"fixstr empty", []byte{0xa0}},
		{"fixstr 31", cat([]byte{0xbf}, bytes.Repeat([]byte("z"), 31))},
		{"nil", []byte{0xc0}},
		{"false", []byte{0xc2}},
		{"true", []byte{0xc3}},
		{"bin8", cat([]byte{0xc4, 3}, []byte{1, 2, 3})},
		{"bin8 empty", []byte{0xc4, 0}},
		{"bin16", cat([]byte{0xc5}, be(300, 2), s300)},
		{"bin32", cat([]byte{0xc6}, be(70000, 4), s70k)},
		{"ext8", cat([]byte{0xc7, 3, 5}, []byte{1, 2, 3})},
		{"ext8 empty", []byte{0xc7, 0, 5}},
		{"ext16", cat([]byte{0xc8}, be(300, 2), []byte{5}, s300)},
		{"ext32", cat([]byte{0xc9}, be(70000, 4), []byte{5}, s70k)},
		{"float32", cat([]byte{0xca}, be(0x3fc00000, 4))},
		{"float64", cat([]byte{0xcb}, be(0x3ff8000000000000, 8))},
		{"uint8", []byte{0xcc, 0xff}},
		{"uint16", cat([]byte{0xcd}, be(0xffff, 2))},
		{"uint32", cat([]byte{0xce}, be(0xffffffff, 4))},
		{"uint64", cat([]byte{0xcf}, be(1<<63, 8))},
		{"int8", []byte{0xd0, 0x80}},
		{"int16", cat([]byte{0xd1}, be(0x8000, 2))},
		{"int32", cat([]byte{0xd2}, be(0x80000000, 4))},
		{"int64", cat([]byte{0xd3}, be(1<<63, 8))},
		{"fixext1", []byte{0xd4, 5, 1}},
		{"fixext2", []byte{0xd5, 5, 1, 2}},
		{"fixext4", []byte{0xd6, 5, 1, 2, 3, 4}},
		{"fixext8", cat([]byte{0xd7, 5}, bytes.Repeat([]byte{9}, 8))},
		{"fixext16", cat([]byte{0xd8, 5}, bytes.Repeat([]byte{9}, 16))},
		{"str8", cat([]byte{0xd9, 32}, bytes.Repeat([]byte("s"), 32))},
		{"str16", cat([]byte{0xda}, be(300, 2), s300)},
		{"str32", cat([]byte{0xdb}, be(70000, 4), s70k)},
		{"array16", cat([]byte{0xdc}, be(20, 2), bytes.Repeat([]byte{0x01}, 20))},
		{"array16 empty", cat([]byte{0xdc}, be(0, 2))},
		{"array32", cat([]byte{0xdd}, be(70000, 4), bytes.Repeat([]byte{0xc3}, 70000))},
		{"map16", cat([]byte{0xde}, be(16, 2), bytes.Repeat([]byte{0x01, 0x02}, 16))},
		{"map32", cat([]byte{0xdf}, be(3, 4), []byte{0xa1, 'a', 0x01, 0xa1, 'b', 0x90, 0xa1, 'c', 0x80})},
		{"map32 empty", cat([]byte{0xdf}, be(0, 4))},
		{"map with array key", []byte{0x81, 0x92, 0x01, 0x02, 0xc3}},
		{"negative fixint -32", []byte{0xe0}},
		{"negative fixint -1", []byte{0xff}},
		{"time (ext -1)", cat([]byte{0xd6, 0xff}, be(1700000000, 4))},
		{"everything in one array", func() []byte {
			b := cat([]byte{0xdc}, be(0, 2)) // count filled in below
			n := 0
			for _, f := range everyFormatFlat() {
				b = append(b, f...)
				n++
			}
			copy(b[1:3], be(uint64(n), 2))
			return b
		}()},
	}
}

// everyFormatFlat is a few small values of each kind, for nesting.
func everyFormatFlat() [][]byte {
	return [][]byte{
		{0x05}, {0x80}, {0x90}, {0xa1, 'x'}, {0xc0}, {0xc2}, {0xc3}, {0xc4, 1, 9}, {0xc5, 0, 1, 9},
		{0xc6, 0, 0, 0, 1, 9}, {0xc7, 1, 5, 9}, {0xc8, 0, 1, 5, 9}, {0xc9, 0, 0, 0, 1, 5, 9},
		cat([]byte{0xca}, be(0, 4)), cat([]byte{0xcb}, be(0, 8)), {0xcc, 1}, {0xcd, 0, 1},
		{0xce, 0, 0, 0, 1}, cat([]byte{0xcf}, be(1, 8)), {0xd0, 0xff}, {0xd1, 0xff, 0xff},
		{0xd2, 0xff, 0xff, 0xff, 0xff}, cat([]byte{0xd3}, be(1, 8)), {0xd4, 5, 9}, {0xd5, 5, 9, 9},
		{0xd6, 5, 9, 9, 9, 9}, cat([]byte{0xd7, 5}, be(1, 8)), cat([]byte{0xd8, 5}, be(1, 8), be(1, 8)),
		{0xd9, 1, 'x'}, {0xda, 0, 1, 'x'}, {0xdb, 0, 0, 0, 1, 'x'}, {0xdc, 0, 1, 0x01},
		{0xdd, 0, 0, 0, 1, 0x01}, {0xde, 0, 1, 0x01, 0x02}, {0xdf, 0, 0, 0, 1, 0x01, 0x02}, {0xe5},
	}
}

// skipLen is how many bytes msgpack's own decoder reads to skip one value.
func skipLen(t *testing.T, data []byte) int {
	t.Helper()
	r := bytes.NewReader(data)
	if err := msgpack.NewDecoder(r).Skip(); err != nil {
		t.Fatalf("msgpack cannot skip % x: %v", data[:min(len(data), 16)], err)
	}
	return len(data) - r.Len()
}

func TestCheckMsgpackEveryFormat(t *testing.T) {
	for _, tc := range everyFormat() {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckMsgpack(tc.data); err != nil {
				t.Fatalf("CheckMsgpack: %v", err)
			}
			// The scan frames the value as msgpack does.
			if n := skipLen(t, tc.data); n != len(tc.data) {
				t.Fatalf("msgpack reads %d bytes of %d", n, len(tc.data))
			}
			// It still decodes (an ext of an unregistered type only raw).
			var raw msgpack.RawMessage
			if err := (Msgpack{}).Unmarshal(tc.data, &raw); err != nil || !bytes.Equal(raw, tc.data) && tc.name != "nil" {
				t.Fatalf("Unmarshal into RawMessage: %x, %v", raw, err)
			}
			// Into any, except exts of an unregistered type and maps
			// without string keys.
			if !strings.Contains(tc.name, "ext") && !strings.HasPrefix(tc.name, "everything") && tc.name != "map16" && tc.name != "map with array key" {
				var v any
				if err := (Msgpack{}).Unmarshal(tc.data, &v); err != nil {
					t.Fatalf("Unmarshal into any: %v", err)
				}
			}
			// Every prefix is truncated; a byte more is trailing data.
			for k := range len(tc.data) {
				if k > 64 && k < len(tc.data)-64 {
					continue // the ends are where the lengths are
				}
				if err := CheckMsgpack(tc.data[:k]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("CheckMsgpack of the first %d of %d bytes: %v, want ErrMalformed", k, len(tc.data), err)
				}
			}
			if err := CheckMsgpack(append(bytes.Clone(tc.data), 0xc0)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "1 bytes after the value") {
				t.Fatalf("CheckMsgpack with a trailing byte: %v", err)
			}
		})
	}
}

// Values of every Go kind still round-trip through Msgpack.
func TestCheckMsgpackAcceptsWhatMarshalWrites(t *testing.T) {
	type inner struct {
		When  time.Time         `json:"when"`
		Tags  map[string]string `json:"tags"`
		Blob  []byte            `json:"blob"`
		Inner *inner            `json:"inner"`
	}
	deep := any("leaf")
	for range MaxDepth {
		deep = []any{deep}
	}
	values := map[string]any{
		"person":   map[string]any{"name": "Ada", "age": 36, "tags": []string{"a", "b"}, "home": map[string]any{"city": "London"}},
		"nil":      nil,
		"int64":    int64(-1 << 62),
		"uint64":   uint64(1<<64 - 1),
		"float":    3.5,
		"string":   strings.Repeat("é", 40000),
		"bytes":    bytes.Repeat([]byte{0xc1}, 70000),
		"slice":    []int{1, 2, 3},
		"map":      map[string]any{"a": []any{1, "b", nil, map[string]any{"c": true}}},
		"time":     time.Date(2025, 1, 2, 3, 4, 5, 550_000_000, time.UTC),
		"times":    []time.Time{time.Unix(1, 0), time.Unix(1<<33, 7), time.Unix(1<<40, 999_999_999)},
		"struct":   inner{When: time.Unix(1700000000, 560_000_000), Tags: map[string]string{"a": "b"}, Inner: &inner{Blob: []byte{0x91, 0x91}}},
		"maxdepth": deep,
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			data, err := Msgpack{}.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckMsgpack(data); err != nil {
				t.Fatal(err)
			}
			var out any
			if err := (Msgpack{}).Unmarshal(data, &out); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// nest wraps leaf in n levels of the container that open makes.
func nest(n int, open func(inner []byte) []byte, leaf []byte) []byte {
	b := leaf
	for range n {
		b = open(b)
	}
	return b
}

func TestMaxDepth(t *testing.T) {
	prepend := func(head ...byte) func([]byte) []byte {
		return func(inner []byte) []byte { return append(bytes.Clone(head), inner...) }
	}
	kinds := []struct {
		name string
		open func([]byte) []byte
	}{
		{"fixarray", prepend(0x91)},
		{"array16", prepend(0xdc, 0, 1)},
		{"array32", prepend(0xdd, 0, 0, 0, 1)},
		{"fixmap value", prepend(0x81, 0xa1, 'k')},
		{"map16 value", prepend(0xde, 0, 1, 0xa1, 'k')},
		{"map32 key", func(inner []byte) []byte { return cat([]byte{0xdf, 0, 0, 0, 1}, inner, []byte{0xc0}) }},
		{"array with siblings", func(inner []byte) []byte { return cat([]byte{0x93, 0x01}, inner, []byte{0xa1, 'x'}) }},
	}
	for _, k := range kinds {
		for _, leaf := range [][]byte{{0x90}, {0x80}, {0x91, 0x01}} { // the leaf adds a level
			t.Run(fmt.Sprintf("%s/% x", k.name, leaf), func(t *testing.T) {
				ok := nest(MaxDepth-1, k.open, leaf)
				if err := CheckMsgpack(ok); err != nil {
					t.Fatalf("depth MaxDepth: %v", err)
				}
				var v any
				target := any(&v)
				if strings.HasSuffix(k.name, "key") {
					target = new(msgpack.RawMessage) // map[string]any wants string keys
				}
				if err := (Msgpack{}).Unmarshal(ok, target); err != nil {
					t.Fatalf("depth MaxDepth does not decode: %v", err)
				}
				tooDeep := k.open(ok)
				err := CheckMsgpack(tooDeep)
				if !errors.Is(err, ErrTooDeep) {
					t.Fatalf("depth MaxDepth+1: %v, want ErrTooDeep", err)
				}
				err = (Msgpack{}).Unmarshal(tooDeep, &v)
				if !errors.Is(err, ErrTooDeep) || !strings.Contains(err.Error(), "more than 512 levels (serializer.MaxDepth) of arrays and maps") {
					t.Fatalf("Unmarshal of depth MaxDepth+1: %v", err)
				}
			})
		}
	}
	// The error is clear.
	var v any
	err := (Msgpack{}).Unmarshal(bytes.Repeat([]byte{0x91}, 600), &v)
	const want = "msgpack: decode into *interface {}: msgpack data nested too deeply: more than 512 levels (serializer.MaxDepth) of arrays and maps at byte 512"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

// Marshal refuses what Unmarshal would refuse.
func TestMarshalRefusesTooDeep(t *testing.T) {
	deep := any(1)
	for range MaxDepth + 1 {
		deep = []any{deep}
	}
	if _, err := (Msgpack{}).Marshal(deep); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("Marshal of a value MaxDepth+1 deep: %v", err)
	}
}

// tenMB of nested arrays overflows the goroutine stack when decoded
// recursively: a fatal error, not a panic. It must be an error.
const tenMB = 10 << 20

func TestTenMegabytesOfNestingIsAnError(t *testing.T) {
	type args struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	inputs := map[string][]byte{
		"arrays":             bytes.Repeat([]byte{0x91}, tenMB),
		"maps":               bytes.Repeat([]byte{0x81, 0xa1, 'k'}, tenMB/3),
		"unknown field":      cat([]byte{0x82, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x', 0xa5, 'o', 't', 'h', 'e', 'r'}, bytes.Repeat([]byte{0x91}, tenMB)),
		"array32 of arrays":  cat(bytes.Repeat([]byte{0xdd, 0, 0, 0, 1}, tenMB/5), []byte{0xc0}),
		"map keys":           cat(bytes.Repeat([]byte{0x81}, tenMB), []byte{0xc0}),
		"closed then nested": cat([]byte{0x92, 0x90}, bytes.Repeat([]byte{0x91}, tenMB)),
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			targets := []any{new(any), new([]any), new(map[string]any), new(args), new(msgpack.RawMessage), new([]map[string]any)}
			for _, v := range targets {
				err := Msgpack{}.Unmarshal(data, v)
				if !errors.Is(err, ErrTooDeep) {
					t.Errorf("into %T: %v, want ErrTooDeep", v, err)
				}
			}
			if err := CheckMsgpack(data); !errors.Is(err, ErrTooDeep) {
				t.Errorf("CheckMsgpack: %v, want ErrTooDeep", err)
			}
		})
	}
}

// extMap is an ext32 value whose payload is the map {"k": value}.
func extMap(value []byte) []byte {
	payload := cat([]byte{0x81, 0xa1, 'k'}, value, []byte{0xc0})
	return cat([]byte{0xc9}, be(uint64(len(payload)), 4), []byte{5}, payload)
}

// Where it expects a Go map, msgpack also reads an ext header followed by a
// map, from the ext's payload and on past it: bytes the scan took as opaque.
// Unmarshal refuses it.
func TestExtReadAsMap(t *testing.T) {
	// The quirk: msgpack decodes an ext wrapping a map into a map[string]any.
	shallow := extMap(bytes.Repeat([]byte{0x91}, 10)) // {"k": [[[...[nil]...]]]}
	var m map[string]any
	if err := msgpack.Unmarshal(shallow, &m); err != nil || m["k"] == nil {
		t.Fatalf("msgpack does not read an ext-wrapped map: %v, %v", m, err)
	}
	const want = "msgpack: decode into *map[string]interface {}: malformed msgpack: an ext value where a map is expected (its payload at byte 6 would be read as the map)"
	if err := (Msgpack{}).Unmarshal(shallow, &m); !errors.Is(err, ErrMalformed) || err.Error() != want {
		t.Fatalf("Unmarshal of an ext-wrapped map:\n got %v\nwant %s", err, want)
	}

	// What msgpack would read there is unchecked: deep nesting, or a map32
	// header claiming 808 million entries, which it would allocate at once.
	for name, data := range map[string][]byte{
		"10 MB nested":   extMap(bytes.Repeat([]byte{0x91}, tenMB)),
		"huge map32":     []byte("\xd7\xff\xdf0000200"), // a fuzzer's find
		"huge map32 ext": cat([]byte{0xc7, 5, 5, 0xdf, 0x7f, 0xff, 0xff, 0xff}),
	} {
		if err := CheckMsgpack(data); err != nil {
			t.Fatalf("%s: CheckMsgpack: %v (it is well-formed msgpack)", name, err)
		}
		for _, v := range []any{new(map[string]any), new(map[string]string), new(map[int]int), new(struct{ M map[string]any }), new([]map[string]any)} {
			if err := (Msgpack{}).Unmarshal(data, v); err == nil {
				t.Errorf("%s: Unmarshal into %T succeeded", name, v)
			}
		}
		// Where no map is expected, the ext is an ext.
		var raw msgpack.RawMessage
		if err := (Msgpack{}).Unmarshal(data, &raw); err != nil || !bytes.Equal(raw, data) {
			t.Errorf("%s: Unmarshal into RawMessage: %v", name, err)
		}
	}

	// ... wherever it is.
	var padded struct {
		Pad []int
		M   map[string]any
	}
	far := cat([]byte{0x82, 0xa3, 'P', 'a', 'd', 0xdc, 0, 200}, bytes.Repeat([]byte{0x07}, 200), []byte{0xa1, 'M'}, shallow)
	if err := (Msgpack{}).Unmarshal(far, &padded); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at byte 216 ") {
		t.Fatalf("an ext-wrapped map at byte 210: %v", err)
	}
	far[len(far)-len(shallow)] = 0x80 // an empty map instead: fine
	if err := (Msgpack{}).Unmarshal(far[:len(far)-len(shallow)+1], &padded); err != nil || len(padded.Pad) != 200 {
		t.Fatalf("padded struct: %v", err)
	}

	// The map read from an ext may run past its payload and leave the
	// decoder in the middle of a later value (here: a binary), where the
	// scan saw no structure.
	desync := func(depth int) []byte {
		hidden := cat([]byte{0x81, 0xa1, 'k'}, bytes.Repeat([]byte{0x91}, depth), []byte{0xc0})
		content := cat(bytes.Repeat([]byte{'.'}, 194), hidden)
		return cat(
			[]byte{0x92},
			// time ext whose payload reads as {"k": [[[[ str8 ]]]]}, the
			// str8 taking its length from the next byte (0xc6: 198)
			[]byte{0xd7, 0xff, 0x81, 0xa1, 'k', 0x91, 0x91, 0x91, 0x91, 0xd9},
			[]byte{0xc6}, be(uint64(len(content)), 4), content,
		)
	}
	small := desync(5)
	var ms []map[string]any
	if err := msgpack.Unmarshal(small, &ms); err != nil || len(ms) != 2 || fmt.Sprint(ms[1]) != "map[k:[[[[[<nil>]]]]]]" {
		t.Fatalf("msgpack does not read the hidden map: %v, %v", ms, err)
	}
	for _, data := range [][]byte{small, desync(tenMB)} {
		if err := CheckMsgpack(data); err != nil {
			t.Fatal(err)
		}
		if err := (Msgpack{}).Unmarshal(data, &ms); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "an ext value where a map is expected") {
			t.Fatalf("a map hidden in a binary: %v, want ErrMalformed", err)
		}
		var v []any // no map expected: two values, a time and a binary
		if err := (Msgpack{}).Unmarshal(data, &v); err != nil || len(v) != 2 {
			t.Fatalf("into []any: %v", err)
		}
	}

	// An ext with an empty payload followed by a map would make msgpack
	// read that map as the ext's; it is refused.
	if err := (Msgpack{}).Unmarshal([]byte{0x92, 0xc7, 0, 5, 0x80}, new(msgpack.RawMessage)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an empty ext followed by a map: %v", err)
	}
	if err := (Msgpack{}).Unmarshal([]byte{0x92, 0xc7, 0, 5, 0x90}, new(msgpack.RawMessage)); err != nil {
		t.Fatalf("an empty ext followed by an array: %v", err)
	}
}

// Many time values whose payload happens to start like a map (sub-second
// times about 7% of the time) are checked in linear time.
func TestCheckMsgpackManyAmbiguousTimes(t *testing.T) {
	times := make([]time.Time, 200000)
	for i := range times {
		times[i] = time.Unix(1700000000+int64(i), 540_000_000+int64(i)) // fixext8 payloads starting with 0x80..0x8f
	}
	data, err := Msgpack{}.Marshal(struct {
		Times []time.Time
		Index map[string][]time.Time
	}{times, map[string][]time.Time{"a": times[:1000]}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := CheckMsgpack(data); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("CheckMsgpack of %d bytes took %v", len(data), d)
	}
	var back struct {
		Times []time.Time
		Index map[string][]time.Time
	}
	if err := (Msgpack{}).Unmarshal(data, &back); err != nil || len(back.Times) != len(times) || !back.Times[7].Equal(times[7]) {
		t.Fatalf("round trip: %v", err)
	}
}

func TestCheckMsgpackRefusesMalformed(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":                 {},
		"nil":                   nil,
		"reserved code":         {0xc1},
		"reserved in array":     {0x92, 0x01, 0xc1},
		"array32 of 4G":         {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 of 4G":           {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01},
		"map missing a value":   {0x81, 0x01},
		"str32 of 4G":           {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"ext32 of 4G":           {0xc9, 0xff, 0xff, 0xff, 0xff, 0x05, 0x00},
		"ext8 missing its type": {0xc7, 0x00},
		"length cut":            {0xda, 0x01},
		"int cut":               {0xd3, 0x01, 0x02},
		"two values":            {0x01, 0x02},
	} {
		if err := CheckMsgpack(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
		var v any
		if err := (Msgpack{}).Unmarshal(data, &v); !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "msgpack: decode into *interface {}: malformed msgpack: ") {
			t.Errorf("%s: Unmarshal: %v", name, err)
		}
	}
}

// refCheck is CheckMsgpack written the obvious way, recursively, on
// msgpack's own decoder (for small inputs only).
func refCheck(data []byte) error {
	r := bytes.NewReader(data)
	d := msgpack.NewDecoder(r)
	depth, err := refDepth(d)
	if err != nil {
		return err
	}
	if r.Len() != 0 {
		return errors.New("trailing bytes")
	}
	if depth > MaxDepth {
		return errors.New("too deep")
	}
	return nil
}

func refDepth(d *msgpack.Decoder) (int, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	var n int
	switch {
	case c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd:
		n, err = d.DecodeArrayLen()
	case c >= 0x80 && c <= 0x8f || c == 0xde || c == 0xdf:
		n, err = d.DecodeMapLen()
		n *= 2
	default:
		return 0, d.Skip()
	}
	if err != nil {
		return 0, err
	}
	deepest := 0
	for range n {
		k, err := refDepth(d)
		if err != nil {
			return 0, err
		}
		deepest = max(deepest, k)
	}
	return deepest + 1, nil
}

// FuzzCheckMsgpack compares CheckMsgpack with refCheck, and decodes what it
// accepts.
func FuzzCheckMsgpack(f *testing.F) {
	for _, tc := range everyFormat() {
		if len(tc.data) < 1000 {
			f.Add(tc.data)
		}
	}
	f.Add(bytes.Repeat([]byte{0x91}, MaxDepth))
	f.Add(bytes.Repeat([]byte{0x91}, MaxDepth+1))
	f.Add(extMap([]byte{0x91, 0x91, 0x01}))
	f.Add([]byte{0x92, 0xd7, 0xff, 0x81, 0xa1, 'k', 0x91, 0x91, 0x91, 0x91, 0xd9, 0xc4, 0x03, 0x81, 0xa1, 'k'})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckMsgpack(data)
		if len(data) <= 1<<16 {
			ref := refCheck(data)
			switch {
			case err == nil && ref != nil:
				t.Fatalf("CheckMsgpack accepts % x, msgpack does not: %v", data, ref)
			case err != nil && ref == nil && !strings.Contains(err.Error(), "ext value as a map"):
				t.Fatalf("CheckMsgpack refuses % x, msgpack accepts it: %v", data, err)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooDeep) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrTooDeep: %v", err)
			}
			return
		}
		for _, v := range []any{new(any), new(map[string]any), new([]map[string]any), new(msgpack.RawMessage)} {
			_ = Msgpack{}.Unmarshal(data, v)
		}
	})
}

// A ~100-byte struct, as task arguments usually are.
type benchArgs struct {
	To      string            `json:"to"`
	Subject string            `json:"subject"`
	Count   int               `json:"count"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	At      time.Time         `json:"at"`
}

func benchPayload(b *testing.B, at time.Time) []byte {
	data, err := Msgpack{}.Marshal(benchArgs{
		To: "ada@example.com", Subject: "Welcome to gotasks", Count: 3,
		Tags: []string{"welcome", "email"}, Meta: map[string]string{"lang": "en"},
		At: at,
	})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkMsgpackUnmarshal measures the cost of the check: compare
// "before" (Unmarshal without it) with "Unmarshal".
func BenchmarkMsgpackUnmarshal(b *testing.B) {
	data := benchPayload(b, time.Unix(1700000000, 0))
	b.Logf("payload: %d bytes", len(data))
	b.Run("check only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := CheckMsgpack(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Unmarshal as it was before the check.
	before := func(data []byte, v any) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("msgpack: decode into %T: %v", v, r)
			}
		}()
		dec := msgpack.NewDecoder(bytes.NewReader(data))
		dec.SetCustomStructTag("json")
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("msgpack: decode into %T: %w", v, err)
		}
		return nil
	}
	b.Run("before", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v benchArgs
			if err := before(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v benchArgs
			if err := (Msgpack{}).Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A time whose ext payload starts like a map: decoded through forkGuard.
	ambiguous := benchPayload(b, time.Unix(1700000000, 560_000_000))
	b.Run("Unmarshal, guarded", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(ambiguous)))
		for b.Loop() {
			var v benchArgs
			if err := (Msgpack{}).Unmarshal(ambiguous, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
