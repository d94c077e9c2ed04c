package serializer

import (
	"encoding/json"
	"fmt"
)

// DisplayJSON decodes a value encoded by ser (nil: Default), a task's
// arguments or return value, into JSON without knowing its Go type, for
// tools that show tasks to people. Its error says why it cannot: the bytes
// are not the serializer's, or hold something JSON has no form for (raw
// bytes, which JSON would only show as base64). No data is (nil, nil).
func DisplayJSON(ser Serializer, data []byte) (json.RawMessage, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if ser == nil {
		ser = Default
	}
	var v any
	if err := ser.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("undecodable (%d bytes): %w", len(data), err)
	}
	v, binary := jsonable(v)
	if binary {
		return nil, fmt.Errorf("binary (%d bytes), not shown", len(data))
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON (%d bytes): %w", len(data), err)
	}
	return out, nil
}

// jsonable turns what msgpack decodes into `any` into what encoding/json
// takes: maps with non-string keys get string keys. It reports raw bytes
// anywhere in v, which JSON would only show as base64.
func jsonable(v any) (any, bool) {
	switch x := v.(type) {
	case []byte:
		return nil, true
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			e, bin := jsonable(e)
			if bin {
				return nil, true
			}
			m[fmt.Sprint(k)] = e
		}
		return m, false
	case map[string]any:
		for k, e := range x {
			e, bin := jsonable(e)
			if bin {
				return nil, true
			}
			x[k] = e
		}
	case []any:
		for i, e := range x {
			e, bin := jsonable(e)
			if bin {
				return nil, true
			}
			x[i] = e
		}
	}
	return v, false
}
