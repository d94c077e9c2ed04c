package task

import (
	"maps"
	"unicode/utf8"
)

// Metadata are string key/value pairs that travel with a task: set with
// Meta (in Define or Using) or by enqueue middleware (trace context, a
// tenant, a request id), stored with the task and returned on every
// result (Result.Metadata, RawResult.Metadata). They are not arguments:
// an enqueue sent again under its id (WithID) is the same task whatever
// its metadata.
type Metadata map[string]string

// Bounds of a task's metadata; past them Enqueue fails with ErrInvalidTask.
const (
	MaxMetadataKeys = 64
	MaxMetadataKey  = 128      // bytes of one key
	MaxMetadataSize = 16 << 10 // bytes of all keys and values together
)

// Meta sets the metadata key to value on the task (in Define or Using; a
// later Meta of the same key wins).
func Meta(key, value string) Option {
	return func(c *config) {
		m := make(Metadata, len(c.meta)+1)
		maps.Copy(m, c.meta) // Using must not change the original's map
		m[key] = value
		c.meta = m
	}
}

// Clone returns a copy of m (nil for an empty m).
func (m Metadata) Clone() Metadata {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// validateMetadata checks m against the bounds.
func validateMetadata(m Metadata) error {
	if len(m) > MaxMetadataKeys {
		return invalid("metadata has %d keys, over the limit of %d", len(m), MaxMetadataKeys)
	}
	size := 0
	for k, v := range m {
		switch {
		case k == "" || len(k) > MaxMetadataKey:
			return invalid("metadata key %q must be 1-%d bytes", k, MaxMetadataKey)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return invalid("metadata %q is not valid UTF-8", k)
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataSize {
		return invalid("metadata is %d bytes, over the limit of %d", size, MaxMetadataSize)
	}
	return nil
}
