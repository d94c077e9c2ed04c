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
