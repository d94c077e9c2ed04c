package task

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// crockford is the ULID alphabet: URL-safe, no ambiguous letters, and in
// ASCII order so that the text sorts like the bytes.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns a new result id: a ULID (48-bit millisecond timestamp, 80
// random bits, 26 Crockford base32 characters). Ids sort by creation time,
// are URL-safe and are unique without coordination.
func NewID() string {
	var ids [1]string
	newIDs(ids[:], time.Now())
	return ids[0]
}

// newIDs fills ids with new ids of time now, with one read of crypto/rand
// for all of them (a read per id was a tenth of EnqueueMany's client time).
func newIDs(ids []string, now time.Time) {
	const randBytes = 10
	var buf [64 * randBytes]byte
	ms := uint64(now.UnixMilli()) << 16
	for len(ids) > 0 {
		n := min(len(ids), len(buf)/randBytes)
		if _, err := rand.Read(buf[:n*randBytes]); err != nil {
			panic("gotasks: crypto/rand failed: " + err.Error()) // the runtime treats this as fatal anyway
		}
		for i := range n {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:8], ms)
			copy(b[6:], buf[i*randBytes:(i+1)*randBytes])
			ids[i] = encodeULID(b)
		}
		ids = ids[n:]
	}
}

func encodeULID(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	// 128 bits in 26 groups of 5 bits; the first character carries 3 bits.
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
