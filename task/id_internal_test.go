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

// newIDs, which EnqueueMany uses, reads the random bits of many ids at
// once: every id is valid, of the given time, and distinct, across the
// chunks it reads in.
func TestNewIDsInChunks(t *testing.T) {
	now := time.UnixMilli(1764000000123)
	ids := make([]string, 1000)
	newIDs(ids, now)
	seen := map[string]bool{}
	randoms := map[string]bool{}
	for _, id := range ids {
		if !ValidID(id) || seen[id] {
			t.Fatalf("id %q: valid %v, seen before %v", id, ValidID(id), seen[id])
		}
		seen[id] = true
		if want := idPrefix(now); id[:10] != want {
			t.Fatalf("id %s: timestamp %s, want %s", id, id[:10], want)
		}
		randoms[id[10:]] = true
	}
	if len(randoms) != len(ids) {
		t.Fatalf("%d distinct random parts for %d ids", len(randoms), len(ids))
	}
}

// idPrefix is the first 10 characters of an id made at t.
func idPrefix(t time.Time) string { return ulidAt(uint64(t.UnixMilli()), 0)[:10] }
