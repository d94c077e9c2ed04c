package gotasksotel

import (
	"maps"
	"sync"
	"sync/atomic"
)

// maxCached bounds each cache: past it, values are made again on each
// use (queue and task names are few, but nothing enforces it).
const maxCached = 4096

// cache maps keys to values made once: reads are an atomic load and a
// map lookup, and a miss copies the map (misses are rare: one per queue,
// task name or error type).
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

// get returns the value of k, made by make on a miss.
func (c *cache[K, V]) get(k K, make func(K) V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if m := c.m.Load(); m != nil {
		old = *m
		if v, ok := old[k]; ok {
			return v
		}
	}
	v := make(k)
	if len(old) < maxCached {
		m := maps.Clone(old)
		if m == nil {
			m = map[K]V{}
		}
		m[k] = v
		c.m.Store(&m)
	}
	return v
}
