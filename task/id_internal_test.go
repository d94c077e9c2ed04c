package task

import (
	"encoding/binary"
	"sort"
	"strings"
	"testing"
	"time"
)

// ulidAt builds a ULID for the millisecond ms with the given random bits.
func ulidAt(ms uint64, random byte) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	for i := 6; i < 16; i++ {
		b[i] = random
	}
	return encodeULID(b)
}

func TestEncodeULIDKnownValues(t *testing.T) {
	if got := ulidAt(0, 0); got != strings.Repeat("0", 26) {
		t.Errorf("zero ULID = %q", got)
	}
	if got := ulidAt(1<<48-1, 0xff); got != "7"+strings.Repeat("Z", 25) {
		t.Errorf("max ULID = %q", got)
	}
	// The timestamp occupies the first 10 characters: 1 ms is ...01.
	if got := ulidAt(1, 0); got != "0000000001"+strings.Repeat("0", 16) {
		t.Errorf("ULID at 1ms = %q", got)
	}
}

// Ids sort by their millisecond regardless of the random part.
func TestEncodeULIDSortsByTime(t *testing.T) {
	now := uint64(time.Now().UnixMilli())
	var ids []string
	for i, ms := range []uint64{0, 1, 2, 31, 32, 1023, 1024, now - 1, now, now + 1, 1<<48 - 1} {
		random := byte(0xff)
		if i%2 == 1 {
			random = 0 // a later id with smaller random bits still sorts later
		}
		ids = append(ids, ulidAt(ms, random))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("ids do not sort by time: %q", ids)
	}
	for _, id := range ids {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
}

// NewID puts the current time in the id.
func TestNewIDTimestamp(t *testing.T) {
	before := time.Now().UnixMilli()
	id := NewID()
	after := time.Now().UnixMilli()
	var ms int64
	for _, c := range id[:10] {
		ms = ms<<5 | int64(strings.IndexRune(crockford, c))
	}
	if ms < before || ms > after {
		t.Fatalf("id %s has timestamp %d, want within [%d, %d]", id, ms, before, after)
	}
}
