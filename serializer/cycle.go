package serializer

import (
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// checkCycles returns an error if v refers to itself. Unlike encoding/json,
// msgpack follows a cyclic value until the goroutine stack overflows, which
// is a fatal error that kills the process, not a panic Marshal could recover.
//
// Like encoding/json it only starts tracking the path once the value is
// nested deeper than cycleCheckDepth, so ordinary values cost one reflective
// walk without bookkeeping; types that cannot hold a cycle (no interface,
// no recursive type) are not walked at all, so []byte payloads cost nothing.
func checkCycles(v any) error {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || !mayCycle(rv.Type()) {
		return nil
	}
	w := cycleWalker{}
	return w.walk(rv)
}

const cycleCheckDepth = 100

type cycleKey struct {
	typ reflect.Type
	ptr uintptr
	len int
}

type cycleWalker struct {
	depth  int
	onPath map[cycleKey]struct{}
}

func (w *cycleWalker) walk(v reflect.Value) error {
	if !v.IsValid() || !mayCycle(v.Type()) {
		return nil
	}
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return w.walk(v.Elem())
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if v.IsNil() {
			return nil
		}
		w.depth++
		defer func() { w.depth-- }()
		if w.depth > cycleCheckDepth {
			k := cycleKey{typ: v.Type(), ptr: v.Pointer()}
			if v.Kind() == reflect.Slice {
				k.len = v.Len()
			}
			if _, seen := w.onPath[k]; seen {
				return fmt.Errorf("encountered a cycle via %s", v.Type())
			}
			if w.onPath == nil {
				w.onPath = map[cycleKey]struct{}{}
			}
			w.onPath[k] = struct{}{}
			defer delete(w.onPath, k)
		}
		switch v.Kind() {
		case reflect.Pointer:
			return w.walk(v.Elem())
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				if err := w.walk(it.Key()); err != nil {
					return err
				}
				if err := w.walk(it.Value()); err != nil {
					return err
				}
			}
			return nil
		}
		return w.elems(v)
	case reflect.Array:
		return w.elems(v)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if encodedField(t.Field(i)) {
				if err := w.walk(v.Field(i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (w *cycleWalker) elems(v reflect.Value) error {
	for i := 0; i < v.Len(); i++ {
		if err := w.walk(v.Index(i)); err != nil {
			return err
		}
	}
	return nil
}

var (
	mayCycleCache sync.Map // reflect.Type → bool
	errorIface    = reflect.TypeFor[error]()
	ownEncoders   = []reflect.Type{
		reflect.TypeFor[msgpack.CustomEncoder](),
		reflect.TypeFor[msgpack.Marshaler](),
		reflect.TypeFor[encoding.BinaryMarshaler](),
		reflect.TypeFor[encoding.TextMarshaler](),
	}
)

// mayCycle reports whether a value of type t can refer to itself as msgpack
// walks it: only through an interface or a recursive type. Types that encode
// themselves (and error, which msgpack encodes as its text) are not walked.
func mayCycle(t reflect.Type) bool {
	if v, ok := mayCycleCache.Load(t); ok {
		return v.(bool)
	}
	r := computeMayCycle(t, map[reflect.Type]bool{})
	mayCycleCache.Store(t, r)
	return r
}

func computeMayCycle(t reflect.Type, inProgress map[reflect.Type]bool) bool {
	if t == errorIface {
		return false
	}
	for _, enc := range ownEncoders {
		if t.Implements(enc) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(enc) {
			return false
		}
	}
	if inProgress[t] {
		return true // a recursive type
	}
	inProgress[t] = true
	defer delete(inProgress, t)
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return computeMayCycle(t.Elem(), inProgress)
	case reflect.Map:
		return computeMayCycle(t.Key(), inProgress) || computeMayCycle(t.Elem(), inProgress)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); encodedField(f) && computeMayCycle(f.Type, inProgress) {
				return true
			}
		}
	}
	return false
}

// encodedField reports whether msgpack encodes the struct field f, as its
// getFields does: exported or embedded, and not tagged "-" (in the msgpack
// tag, or else the json tag). A back-pointer tagged "-" is not a cycle.
func encodedField(f reflect.StructField) bool {
	if !f.IsExported() && !f.Anonymous {
		return false
	}
	tag := f.Tag.Get("msgpack")
	if tag == "" {
		tag = f.Tag.Get("json")
	}
	name, _, _ := strings.Cut(tag, ",")
	return name != "-"
}
