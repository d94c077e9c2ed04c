package gotasksotel

import (
	"maps"
	"slices"

	"go.opentelemetry.io/otel/propagation"

	"github.com/gotasks/gotasks/task"
)

// MetadataCarrier lets a propagator read and write a task's metadata
// (propagation.TextMapCarrier). Set on a nil MetadataCarrier panics: make
// the map first.
type MetadataCarrier task.Metadata

var _ propagation.TextMapCarrier = MetadataCarrier(nil)

// Get returns the value of key, or the empty string.
func (c MetadataCarrier) Get(key string) string { return c[key] }

// Set sets key to value.
func (c MetadataCarrier) Set(key, value string) { c[key] = value }

// Keys returns the keys, sorted.
func (c MetadataCarrier) Keys() []string { return slices.Sorted(maps.Keys(c)) }

// messageCarrier is MetadataCarrier over a message, whose metadata it
// makes on the first Set (a propagator with nothing to write leaves it
// nil).
type messageCarrier task.Message

func (c *messageCarrier) Get(key string) string { return c.Metadata[key] }

func (c *messageCarrier) Set(key, value string) {
	if c.Metadata == nil {
		c.Metadata = make(task.Metadata, 2)
	}
	c.Metadata[key] = value
}

func (c *messageCarrier) Keys() []string { return MetadataCarrier(c.Metadata).Keys() }
