package serializer

import (
	"bytes"
	"reflect"
	"slices"
	"sync"
)

// Msgpack writes a Go map's entries in the map's iteration order, which Go
// randomises (vmihailenco/msgpack sorts only map[string]string, bool and
// any). The same arguments must encode to the same bytes, so that an
// enqueue sent again under its id (task.WithID) is recognised as the same
// task. Marshal therefore rewrites, for values whose type can hold a map,
// each map's entries in the order of their encoded keys. Struct fields,
// which msgpack also writes as a map, are sorted too: decoders read a map
// in any order.

// canonical returns data (checked msgpack) with the entries of every map
// sorted by their encoded keys.
func canonical(data []byte) []byte {
	out, _ := canonicalItem(data, 0, make([]byte, 0, len(data)))
	return out
}

// canonicalItem appends the item at data[i], maps sorted, to out, and
// returns where the next item starts. data is checked (CheckMsgpack): its
// nesting is bounded by MaxDepth.
func canonicalItem(data []byte, i int, out []byte) ([]byte, int) {
	next, n, container, _ := item(data, i)
	out = append(out, data[i:next]...)
	if !container {
		return out, next
	}
	if !isMapCode(data[i]) || n < 4 { // an array, or a map of one entry
		for range n {
			out, next = canonicalItem(data, next, out)
		}
		return out, next
	}
	type entry struct {
		key, both []byte
	}
	entries := make([]entry, n/2)
	for e := range entries {
		var b []byte
		var k int
		b, next = canonicalItem(data, next, nil)
		k = len(b)
		b, next = canonicalItem(data, next, b)
		entries[e] = entry{key: b[:k], both: b}
	}
	slices.SortStableFunc(entries, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	for _, e := range entries {
		out = append(out, e.both...)
	}
	return out, next
}

var mayHoldMapCache sync.Map // reflect.Type → bool

// mayHoldMap reports whether a value of type t can encode a Go map of more
// than the types msgpack sorts itself: a map, or an interface, anywhere in
// it. Types that encode themselves are taken at their word.
func mayHoldMap(t reflect.Type) bool {
	if v, ok := mayHoldMapCache.Load(t); ok {
		return v.(bool)
	}
	r := computeMayHoldMap(t, map[reflect.Type]bool{})
	mayHoldMapCache.Store(t, r)
	return r
}

func computeMayHoldMap(t reflect.Type, seen map[reflect.Type]bool) bool {
	for _, enc := range ownEncoders {
		if t.Implements(enc) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(enc) {
			return false
		}
	}
	if seen[t] {
		return false // a recursive type: its other paths decide
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Map, reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return computeMayHoldMap(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); encodedField(f) && computeMayHoldMap(f.Type, seen) {
				return true
			}
		}
	}
	return false
}
