package serializer_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/gotasks/gotasks/serializer"
)

type withMaps struct {
	Name  string           `json:"name"`
	Count map[int]string   `json:"count"`
	Deep  []map[string]int `json:"deep"`
	Any   any              `json:"any"`
}

// TestMsgpackEncodesMapsTheSameEveryTime: Go randomises map order, and the
// same arguments must be the same bytes (task.WithID compares them).
func TestMsgpackEncodesMapsTheSameEveryTime(t *testing.T) {
	v := withMaps{Name: "x", Count: map[int]string{}, Any: map[string]any{"z": 1, "a": []any{map[string]int{"c": 1, "a": 2, "b": 3}}}}
	for i := range 40 {
		v.Count[i] = string(rune('a' + i%26))
		v.Deep = append(v.Deep, map[string]int{"k" + string(rune('a'+i%26)): i, "b": i, "q": -i})
	}
	first, err := serializer.Msgpack{}.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		again, err := serializer.Msgpack{}.Marshal(v)
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("the same value encoded to other bytes (err %v)", err)
		}
	}
	var back withMaps
	if err := (serializer.Msgpack{}).Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Count, v.Count) || !reflect.DeepEqual(back.Deep, v.Deep) || back.Name != v.Name {
		t.Errorf("decoded %+v, want %+v", back, v)
	}
}
