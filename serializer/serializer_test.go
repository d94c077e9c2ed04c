package serializer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/vmihailenco/msgpack/v5"
)

// both returns the serializers every round-trip test runs against.
func both() []serializer.Serializer {
	return []serializer.Serializer{serializer.Msgpack{}, serializer.JSON{}}
}

// roundTrip encodes in, decodes into a new value of out's type and returns it.
func roundTrip[T any](t *testing.T, s serializer.Serializer, in T) T {
	t.Helper()
	data, err := s.Marshal(in)
	if err != nil {
		t.Fatalf("%s: Marshal(%T): %v", s.Name(), in, err)
	}
	var out T
	if err := s.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: Unmarshal into %T: %v", s.Name(), &out, err)
	}
	return out
}

type Address struct {
	Street string `json:"street"`
	City   string `json:"city"`
}

type Person struct {
	Name    string            `json:"name"`
	Age     int               `json:"age"`
	Email   *string           `json:"email"`
	Home    *Address          `json:"home"`
	Work    *Address          `json:"work"` // left nil
	Tags    []string          `json:"tags"`
	NoTags  []string          `json:"no_tags"` // left nil
	Empty   []int             `json:"empty"`   // empty, not nil
	Scores  map[string]int    `json:"scores"`
	NilMap  map[string]string `json:"nil_map"` // left nil
	Raw     []byte            `json:"raw"`
	Nested  map[string]map[string][]int
	Grid    [2][3]int
	Ratio   float64
	Active  bool
	Unicode string
}

func samplePerson() Person {
	email := "ada@example.com"
	return Person{
		Name:    "Ada",
		Age:     36,
		Email:   &email,
		Home:    &Address{Street: "1 Analytical Way", City: "London"},
		Tags:    []string{"math", "engines"},
		Empty:   []int{},
		Scores:  map[string]int{"a": 1, "b": -2, "c": 1 << 40},
		Raw:     []byte{0, 1, 2, 0xff},
		Nested:  map[string]map[string][]int{"x": {"y": {1, 2, 3}, "z": nil}, "w": {}},
		Grid:    [2][3]int{{1, 2, 3}, {4, 5, 6}},
		Ratio:   0.1 + 0.2,
		Active:  true,
		Unicode: "héllo, 世界, 🎉",
	}
}

func TestRoundTripStruct(t *testing.T) {
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			in := samplePerson()
			out := roundTrip(t, s, in)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip changed the value:\n in: %#v\nout: %#v", in, out)
			}
			if out.Work != nil || out.NoTags != nil || out.NilMap != nil {
				t.Errorf("nil pointer/slice/map did not stay nil: %#v %#v %#v", out.Work, out.NoTags, out.NilMap)
			}
			if out.Email == in.Email {
				t.Errorf("decoded pointer aliases the input")
			}
		})
	}
}

func TestRoundTripPointerToStruct(t *testing.T) {
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			in := &Address{Street: "s", City: "c"}
			out := roundTrip(t, s, in)
			if out == nil || *out != *in {
				t.Fatalf("got %#v, want %#v", out, in)
			}
			var nilPtr *Address
			if out := roundTrip(t, s, nilPtr); out != nil {
				t.Fatalf("nil pointer decoded as %#v", out)
			}
			var nilSlice []int
			if out := roundTrip(t, s, nilSlice); out != nil {
				t.Fatalf("nil slice decoded as %#v", out)
			}
		})
	}
}

// TestMsgpackUsesJSONTags checks the documented fallback: a struct tagged
// only for JSON keeps its field names in msgpack, and a msgpack tag wins.
func TestMsgpackUsesJSONTags(t *testing.T) {
	type tagged struct {
		FullName string `json:"full_name"`
		Both     int    `msgpack:"mp_name" json:"json_name"`
		Skipped  string `json:"-"`
		Plain    bool
	}
	data, err := serializer.Msgpack{}.Marshal(tagged{FullName: "Ada", Both: 7, Skipped: "secret", Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(data, &m); err != nil {
		t.Fatalf("decode as a plain map: %v", err)
	}
	if m["full_name"] != "Ada" {
		t.Errorf("json tag not used as the msgpack key: %v", m)
	}
	if _, ok := m["mp_name"]; !ok {
		t.Errorf("msgpack tag should win over the json tag: %v", m)
	}
	if _, ok := m["json_name"]; ok {
		t.Errorf("json tag used although a msgpack tag exists: %v", m)
	}
	if _, ok := m["Skipped"]; ok {
		t.Errorf(`json:"-" field encoded: %v`, m)
	}
	if _, ok := m["-"]; ok {
		t.Errorf(`json:"-" field encoded under the name "-": %v`, m)
	}
	if m["Plain"] != true {
		t.Errorf("untagged field not encoded under its Go name: %v", m)
	}

	// And the other way: a payload keyed by the JSON names decodes.
	in, err := msgpack.Marshal(map[string]any{"full_name": "Grace", "mp_name": 3})
	if err != nil {
		t.Fatal(err)
	}
	var out tagged
	if err := (serializer.Msgpack{}).Unmarshal(in, &out); err != nil {
		t.Fatal(err)
	}
	if out.FullName != "Grace" || out.Both != 3 {
		t.Errorf("decode by json tag: got %+v", out)
	}
}

func TestRoundTripMaps(t *testing.T) {
	// Only strings, bools, nil and containers inside `any`: the formats
	// legitimately differ in which Go number type they pick for an any.
	in := map[string]any{
		"s":     "text",
		"b":     false,
		"nil":   nil,
		"list":  []any{"a", true, nil, map[string]any{"deep": "er"}},
		"inner": map[string]any{"k": map[string]any{"kk": "v"}},
	}
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			out := roundTrip(t, s, in)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("got %#v, want %#v", out, in)
			}
			intKeys := map[int]string{-1: "minus", 0: "zero", 1 << 33: "big"}
			if out := roundTrip(t, s, intKeys); !reflect.DeepEqual(out, intKeys) {
				t.Fatalf("got %#v, want %#v", out, intKeys)
			}
		})
	}
}

func TestRoundTripTime(t *testing.T) {
	times := []time.Time{
		time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("CET", 3600)),
		time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC),
		time.Now(), // carries a monotonic reading, which must not matter
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	type event struct {
		At    time.Time  `json:"at"`
		Until *time.Time `json:"until"`
		Never *time.Time `json:"never"`
	}
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			for _, tm := range times {
				if out := roundTrip(t, s, tm); !out.Equal(tm) {
					t.Errorf("time %v came back as %v", tm, out)
				}
				out := roundTrip(t, s, event{At: tm, Until: &tm})
				if !out.At.Equal(tm) || out.Until == nil || !out.Until.Equal(tm) || out.Never != nil {
					t.Errorf("event with %v came back as %+v", tm, out)
				}
			}
			var zero time.Time
			if out := roundTrip(t, s, zero); !out.IsZero() {
				t.Errorf("zero time came back as %v", out)
			}
		})
	}
}

func TestRoundTripIntegers(t *testing.T) {
	type ints struct {
		I8  []int8
		I16 []int16
		I32 []int32
		I64 []int64
		I   []int
		U8  []uint8 // []byte: msgpack bin, JSON base64
		U16 []uint16
		U32 []uint32
		U64 []uint64
		F32 float32
		F64 float64
	}
	in := ints{
		I8:  []int8{math.MinInt8, -1, 0, 1, math.MaxInt8},
		I16: []int16{math.MinInt16, -129, 128, math.MaxInt16},
		I32: []int32{math.MinInt32, -32769, 32768, math.MaxInt32},
		I64: []int64{math.MinInt64, math.MinInt32 - 1, math.MaxInt32 + 1, math.MaxInt64},
		I:   []int{math.MinInt, -33, -32, 127, 128, 255, 256, math.MaxInt},
		U8:  []uint8{0, 127, 128, math.MaxUint8},
		U16: []uint16{256, math.MaxUint16},
		U32: []uint32{65536, math.MaxUint32},
		U64: []uint64{0, math.MaxUint32 + 1, math.MaxUint64},
		F32: math.MaxFloat32,
		F64: math.SmallestNonzeroFloat64,
	}
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			if out := roundTrip(t, s, in); !reflect.DeepEqual(in, out) {
				t.Fatalf("got %+v, want %+v", out, in)
			}
			// A bare integer decodes into a wider type.
			if out := roundTrip(t, s, int8(-5)); out != -5 {
				t.Fatalf("int8: got %d", out)
			}
			data, err := s.Marshal(int8(-5))
			if err != nil {
				t.Fatal(err)
			}
			var wide int64
			if err := s.Unmarshal(data, &wide); err != nil || wide != -5 {
				t.Fatalf("int8 into int64: %d, %v", wide, err)
			}
		})
	}
}

func TestLargePayloads(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := make([]byte, 5<<20)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	nums := make([]int64, 100_000)
	for i := range nums {
		nums[i] = rng.Int64() - math.MaxInt64/2
	}
	type item struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	items := make([]item, 100_000)
	for i := range items {
		items[i] = item{ID: i, Name: fmt.Sprint("item-", i)}
	}
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			if out := roundTrip(t, s, blob); !bytes.Equal(out, blob) {
				t.Fatalf("5 MiB []byte changed (len %d)", len(out))
			}
			if out := roundTrip(t, s, nums); !slices64Equal(out, nums) {
				t.Fatalf("100k []int64 changed (len %d)", len(out))
			}
			if out := roundTrip(t, s, items); !reflect.DeepEqual(out, items) {
				t.Fatalf("100k structs changed (len %d)", len(out))
			}
			// A large value followed by a small one: the pooled encoder must
			// not leak bytes of the first into the second.
			small := roundTrip(t, s, "small")
			if small != "small" {
				t.Fatalf("after a large payload: %q", small)
			}
		})
	}
}

func slices64Equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMarshalUnsupportedValuesIsAnError(t *testing.T) {
	type withChan struct{ C chan int }
	type withFunc struct {
		Name string
		F    func() error
	}
	cases := []struct {
		name string
		v    any
		want string // in the error message
	}{
		{"chan", make(chan int), "chan"},
		{"nil chan field", withChan{}, "chan"},
		{"chan field", withChan{C: make(chan int)}, "chan"},
		{"func", func() {}, "func"},
		{"func field", withFunc{Name: "x", F: func() error { return nil }}, "func"},
		{"func in map", map[string]any{"f": func() {}}, "func"},
		{"chan in slice", []any{1, make(chan struct{})}, "chan"},
	}
	for _, s := range both() {
		for _, c := range cases {
			t.Run(s.Name()+"/"+c.name, func(t *testing.T) {
				var data []byte
				var err error
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("Marshal panicked: %v", p)
						}
					}()
					data, err = s.Marshal(c.v)
				}()
				if err == nil {
					t.Fatalf("Marshal(%T) = %x, want an error", c.v, data)
				}
				if data != nil {
					t.Errorf("Marshal returned data with the error: %x", data)
				}
				msg := err.Error()
				if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, s.Name()+":") {
					t.Errorf("error %q should start with %q and mention %q", msg, s.Name()+":", c.want)
				}
			})
		}
	}
}

// node, cyclic maps and slices: msgpack itself would overflow the stack on
// these (a fatal error, not a panic); Marshal must refuse them instead.
type node struct {
	Name string `json:"name"`
	Next *node  `json:"next"`
}

func TestMarshalCyclicValueIsAnError(t *testing.T) {
	self := &node{Name: "self"}
	self.Next = self
	a, b := &node{Name: "a"}, &node{Name: "b"}
	a.Next, b.Next = b, a
	m := map[string]any{"k": "v"}
	m["self"] = m
	s := []any{"x", nil}
	s[1] = s
	p := new(any)
	*p = p
	cases := map[string]any{
		"pointer":          self,
		"two pointers":     a,
		"struct value":     *a,
		"map":              m,
		"slice":            s,
		"pointer to any":   p,
		"inside a wrapper": struct{ Payload any }{Payload: []any{m}},
	}
	for _, ser := range both() {
		for name, v := range cases {
			t.Run(ser.Name()+"/"+name, func(t *testing.T) {
				data, err := ser.Marshal(v)
				if err == nil {
					t.Fatalf("Marshal of a cyclic %T = %d bytes, want an error", v, len(data))
				}
				if !strings.Contains(err.Error(), "cycle") {
					t.Errorf("error %q does not say it is a cycle", err)
				}
			})
		}
	}
}

// Values that share pointers without a cycle, or are deeply nested but
// finite, are fine.
func TestMarshalSharedAndDeepValues(t *testing.T) {
	shared := &Address{City: "Paris"}
	type two struct{ A, B *Address }
	var deep *node
	for i := 0; i < 500; i++ {
		deep = &node{Name: fmt.Sprint(i), Next: deep}
	}
	nested := any("leaf")
	for i := 0; i < 300; i++ {
		nested = []any{nested}
	}
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			out := roundTrip(t, s, two{shared, shared})
			if out.A == nil || out.B == nil || *out.A != *shared || *out.B != *shared {
				t.Errorf("shared pointers: got %+v", out)
			}
			gotDeep := roundTrip(t, s, deep)
			n := 0
			for p := gotDeep; p != nil; p = p.Next {
				n++
			}
			if n != 500 || gotDeep.Name != "499" {
				t.Errorf("500-node list came back with %d nodes", n)
			}
			if out := roundTrip(t, s, nested); !reflect.DeepEqual(out, nested) {
				t.Errorf("300-level nested slices changed")
			}
		})
	}
}

// A back-pointer the format skips ("-" tag) does not make a value cyclic.
func TestMarshalSkippedBackPointer(t *testing.T) {
	type jsonTree struct {
		Name     string      `json:"name"`
		Parent   *jsonTree   `json:"-"`
		Children []*jsonTree `json:"children"`
	}
	root := &jsonTree{Name: "root"}
	root.Children = []*jsonTree{{Name: "kid", Parent: root}}
	for _, s := range both() {
		out := roundTrip(t, s, root)
		if len(out.Children) != 1 || out.Children[0].Name != "kid" || out.Children[0].Parent != nil {
			t.Errorf("%s: got %+v", s.Name(), out)
		}
	}

	type mpTree struct {
		Name   string
		Parent *mpTree `msgpack:"-" json:"parent"`
		Kids   []*mpTree
	}
	r := &mpTree{Name: "root"}
	r.Kids = []*mpTree{{Name: "kid", Parent: r}}
	out := roundTrip(t, serializer.Msgpack{}, r)
	if len(out.Kids) != 1 || out.Kids[0].Name != "kid" || out.Kids[0].Parent != nil {
		t.Errorf("msgpack: got %+v", out)
	}
	// JSON does encode the parent, so for JSON it is a cycle.
	if _, err := (serializer.JSON{}).Marshal(r); err == nil {
		t.Errorf("json: a cyclic value marshalled")
	}
}

func TestUnmarshalGarbageIsAnError(t *testing.T) {
	valid := func(s serializer.Serializer) []byte {
		b, err := s.Marshal(samplePerson())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, s := range both() {
		good := valid(s)
		inputs := map[string][]byte{
			"empty":     {},
			"nil":       nil,
			"truncated": good[:len(good)/2],
			"noise":     []byte("\xc1\xff\x00garbage\x93"),
			"text":      []byte("{not json"),
		}
		for name, data := range inputs {
			t.Run(s.Name()+"/"+name, func(t *testing.T) {
				var p Person
				err := s.Unmarshal(data, &p)
				if err == nil {
					t.Fatalf("Unmarshal(%q) succeeded: %+v", data, p)
				}
				if !strings.HasPrefix(err.Error(), s.Name()+":") {
					t.Errorf("error %q does not name the format", err)
				}
			})
		}
		t.Run(s.Name()+"/wrong type", func(t *testing.T) {
			data, err := s.Marshal("a string")
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := s.Unmarshal(data, &n); err == nil {
				t.Fatalf("a string decoded into an int: %d", n)
			}
		})
		t.Run(s.Name()+"/not a pointer", func(t *testing.T) {
			var n int
			if err := s.Unmarshal([]byte("1"), n); err == nil {
				t.Fatal("Unmarshal into a non-pointer succeeded")
			}
			if err := s.Unmarshal([]byte("1"), nil); err == nil {
				t.Fatal("Unmarshal into nil succeeded")
			}
		})
	}
	// Every single byte of msgpack's reserved code.
	var n int
	if err := (serializer.Msgpack{}).Unmarshal([]byte{0xc1}, &n); err == nil {
		t.Fatal("msgpack: reserved code 0xc1 decoded")
	}
}

func TestJSONIsPlainJSON(t *testing.T) {
	data, err := serializer.JSON{}.Marshal(Address{Street: "s", City: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"street":"s","city":"c"}` {
		t.Fatalf("got %s", data)
	}
	if !json.Valid(data) {
		t.Fatal("not valid JSON")
	}
}

func TestNamesAndByName(t *testing.T) {
	if got := (serializer.Msgpack{}).Name(); got != "msgpack" {
		t.Errorf("Msgpack.Name() = %q", got)
	}
	if got := (serializer.JSON{}).Name(); got != "json" {
		t.Errorf("JSON.Name() = %q", got)
	}
	if serializer.Default.Name() != "msgpack" {
		t.Errorf("Default is %q, want msgpack", serializer.Default.Name())
	}
	for name, want := range map[string]string{"": "msgpack", "msgpack": "msgpack", "json": "json"} {
		s, err := serializer.ByName(name)
		if err != nil {
			t.Fatalf("ByName(%q): %v", name, err)
		}
		if s.Name() != want {
			t.Errorf("ByName(%q).Name() = %q, want %q", name, s.Name(), want)
		}
		if out := roundTrip(t, s, "ok"); out != "ok" {
			t.Errorf("ByName(%q) does not round-trip: %q", name, out)
		}
	}
	for _, name := range []string{"xml", "JSON", "gob", " msgpack"} {
		s, err := serializer.ByName(name)
		if err == nil {
			t.Errorf("ByName(%q) = %v, want an error", name, s)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("ByName(%q) error %q does not name the format", name, err)
		}
	}
}

// TestConcurrentUse marshals and unmarshals from many goroutines at once:
// the msgpack encoder pool must never hand one goroutine's bytes to another.
// Run with -race.
func TestConcurrentUse(t *testing.T) {
	type payload struct {
		G, I int
		Text string
		Blob []byte
		When time.Time
		Meta map[string]any // makes Msgpack walk the value for cycles
	}
	const goroutines, iterations = 32, 100
	for _, s := range both() {
		t.Run(s.Name(), func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < iterations; i++ {
						in := payload{G: g, I: i, Text: strings.Repeat(fmt.Sprint(g), i%7), When: time.Unix(int64(g*1000+i), 0),
							Meta: map[string]any{"g": fmt.Sprint(g), "list": []any{"x", map[string]any{"i": fmt.Sprint(i)}}}}
						if i%25 == 0 { // now and then, larger than the pooled-buffer limit
							in.Blob = bytes.Repeat([]byte{byte(g)}, 100<<10)
						}
						if i%10 == 0 { // and now and then an error
							if _, err := s.Marshal(struct{ C chan int }{}); err == nil {
								errs <- fmt.Errorf("chan marshalled without error")
								return
							}
						}
						data, err := s.Marshal(in)
						if err != nil {
							errs <- err
							return
						}
						var out payload
						if err := s.Unmarshal(data, &out); err != nil {
							errs <- err
							return
						}
						if out.G != in.G || out.I != in.I || out.Text != in.Text || !bytes.Equal(out.Blob, in.Blob) || !out.When.Equal(in.When) || !reflect.DeepEqual(out.Meta, in.Meta) {
							errs <- fmt.Errorf("goroutine %d iteration %d got %+v", g, i, out)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// Marshal must not return a slice that a later Marshal overwrites.
func TestMarshalResultIsNotReused(t *testing.T) {
	for _, s := range both() {
		first, err := s.Marshal("first value")
		if err != nil {
			t.Fatal(err)
		}
		keep := bytes.Clone(first)
		for i := 0; i < 10; i++ {
			if _, err := s.Marshal(fmt.Sprint("other ", i)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(first, keep) {
			t.Fatalf("%s: an earlier result was overwritten: %q", s.Name(), first)
		}
	}
}

// rot is a serializer of the test's own: JSON, named otherwise.
type rot struct{ serializer.JSON }

func (rot) Name() string { return "serializertest.rot" }

func TestRegisterMakesASerializerKnownByName(t *testing.T) {
	if _, err := serializer.ByName("serializertest.rot"); err == nil {
		t.Fatal("ByName knows a serializer before it is registered")
	}
	serializer.Register(rot{})
	s, err := serializer.ByName("serializertest.rot")
	if err != nil || s.Name() != "serializertest.rot" {
		t.Fatalf("ByName after Register = %v, %v", s, err)
	}
	for _, taken := range []serializer.Serializer{serializer.Msgpack{}, serializer.JSON{}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("serializer.Register(%s) did not panic: the name is a built-in's", taken.Name())
				}
			}()
			serializer.Register(taken)
		}()
	}
}
