package serializer

import (
	"errors"
	"fmt"
	"io"
)

// MaxDepth is the deepest nesting of msgpack arrays and maps that
// Msgpack.Unmarshal accepts: a scalar is at depth 0, an array or map at one
// more than its deepest element (so [] and [1] are 1 deep, [[1]] 2 deep).
// Deeper data is refused with an error wrapping ErrTooDeep, before anything
// is decoded, and Msgpack.Marshal refuses to write it.
//
// The msgpack decoder is recursive: data nested a few million levels deep
// (a few MB of 0x91 bytes, "an array of one array of one array...") would
// overflow the goroutine stack, which is a fatal error that no recover can
// catch, so one corrupt or hostile payload in Redis would kill the worker
// that claims it. Real task arguments and results are nowhere near this deep.
const MaxDepth = 512

var (
	// ErrTooDeep is wrapped by the errors of CheckMsgpack and
	// Msgpack.Unmarshal for data nested deeper than MaxDepth.
	ErrTooDeep = errors.New("msgpack data nested too deeply")
	// ErrMalformed is wrapped by the errors of CheckMsgpack and
	// Msgpack.Unmarshal for data that is not exactly one well-formed
	// msgpack value: truncated, with bytes after the value, or with a code
	// msgpack does not define.
	ErrMalformed = errors.New("malformed msgpack")
)

// CheckMsgpack checks, without decoding anything and without recursion,
// that data is exactly one well-formed msgpack value nested at most
// MaxDepth deep. Msgpack.Unmarshal runs it before decoding. Run it before
// handing bytes from outside (Redis, the network) to msgpack.Unmarshal
// yourself, even into a struct: a struct decoder recurses as well, to skip
// the value of a field it does not know.
//
// It takes one pass over data, and allocates only for data nested more
// than 16 deep (its stack of open arrays and maps). It also rejects an
// array or map that claims more elements than there are bytes left (each
// takes at least one), so that a truncated value is caught before it is
// decoded, and the decoder never preallocates more elements than the data
// could hold.
//
// One case is left to Msgpack.Unmarshal: where it expects a Go map,
// msgpack/v5 also accepts an ext header followed by a map, read from the
// ext's payload and on past its end, bytes this check took as opaque (see
// forkGuard). So decode into a type that holds maps (other than through
// interfaces) with Msgpack.Unmarshal, not msgpack.Unmarshal.
func CheckMsgpack(data []byte) error {
	_, err := scan(data, nil)
	return err
}

// scan checks data as CheckMsgpack describes. It reports whether data holds
// an ext whose payload starts with a map header, and if forks is not nil, it
// sets the bit of each such payload's first byte in it.
func scan(data []byte, forks []uint64) (ambiguous bool, err error) {
	var buf [16]int
	stack := buf[:0] // elements left in each open array and map
	i := 0
	for {
		var end int
		var n uint64
		var container bool
		// The one-byte headers, inline: most of the items of a payload.
		if i < len(data) {
			switch c := data[i]; {
			case c <= 0x7f || c >= 0xe0: // fixint
				end = i + 1
			case c <= 0x8f: // fixmap
				end, n, container = i+1, 2*uint64(c&0x0f), true
			case c <= 0x9f: // fixarray
				end, n, container = i+1, uint64(c&0x0f), true
			case c <= 0xbf && int(c&0x1f) < len(data)-i: // fixstr
				end = i + 1 + int(c&0x1f)
			}
		}
		if end == 0 {
			var err error
			if end, n, container, err = item(data, i); err != nil {
				return false, err
			}
		}
		if container && len(stack) >= MaxDepth {
			return false, fmt.Errorf("%w: more than %d levels (serializer.MaxDepth) of arrays and maps at byte %d", ErrTooDeep, MaxDepth, i)
		}
		if c := data[i]; c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8 {
			// With an empty payload, p is the first byte of the next value:
			// msgpack would read that value as the ext's map, and then read
			// on one element too many. Refused too, when that value is a
			// map: no time value is empty.
			if p := i + extHeaderLen(c); p < len(data) && isMapCode(data[p]) {
				ambiguous = true
				if forks != nil {
					forks[p>>6] |= 1 << (p & 63)
				}
			}
		}
		i = end
		if len(stack) > 0 {
			stack[len(stack)-1]--
		}
		if container && n > 0 {
			if left := uint64(len(data) - i); n > left {
				return false, fmt.Errorf("%w: truncated: %d elements at byte %d, %d bytes left", ErrMalformed, n, i, left)
			}
			stack = append(stack, int(n))
		}
		for len(stack) > 0 && stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			if i != len(data) {
				return false, fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(data)-i)
			}
			return ambiguous, nil
		}
	}
}

func isMapCode(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf }

// extHeaderLen is the length of an ext's header: code, length bytes, type.
func extHeaderLen(c byte) int {
	switch c {
	case 0xc7:
		return 3
	case 0xc8:
		return 4
	case 0xc9:
		return 6
	}
	return 2 // fixext
}

// item reads the msgpack item at data[i]: a scalar, string, binary or ext
// value in full, or the header of an array or map. It returns where the next
// item starts and, for an array or map, its number of elements (keys and
// values for a map). Lengths come from the data, so they are checked
// against what is left of it as unsigned 64-bit numbers.
func item(data []byte, i int) (next int, n uint64, container bool, err error) {
	if i >= len(data) {
		return 0, 0, false, fmt.Errorf("%w: truncated: a value is missing at byte %d", ErrMalformed, i)
	}
	c := data[i]
	var size, lenBytes int // fixed payload size; or bytes of a length that follows the code
	extra := 0             // bytes after the length not counted by it (an ext's type)
	switch {
	case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		return i + 1, 0, false, nil
	case c <= 0x8f: // fixmap
		return i + 1, 2 * uint64(c&0x0f), true, nil
	case c <= 0x9f: // fixarray
		return i + 1, uint64(c & 0x0f), true, nil
	case c <= 0xbf: // fixstr
		size = int(c & 0x1f)
	default:
		switch c {
		case 0xc0, 0xc2, 0xc3: // nil, false, true
			return i + 1, 0, false, nil
		case 0xc4, 0xd9: // bin8, str8
			lenBytes = 1
		case 0xc5, 0xda: // bin16, str16
			lenBytes = 2
		case 0xc6, 0xdb: // bin32, str32
			lenBytes = 4
		case 0xc7: // ext8
			lenBytes, extra = 1, 1
		case 0xc8: // ext16
			lenBytes, extra = 2, 1
		case 0xc9: // ext32
			lenBytes, extra = 4, 1
		case 0xcc, 0xd0: // uint8, int8
			size = 1
		case 0xcd, 0xd1: // uint16, int16
			size = 2
		case 0xca, 0xce, 0xd2: // float32, uint32, int32
			size = 4
		case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
			size = 8
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext1, 2, 4, 8, 16: type and data
			size = 1 + 1<<(c-0xd4)
		case 0xdc, 0xde: // array16, map16
			lenBytes = 2
		case 0xdd, 0xdf: // array32, map32
			lenBytes = 4
		default: // 0xc1, never used
			return 0, 0, false, fmt.Errorf("%w: invalid code 0x%x at byte %d", ErrMalformed, c, i)
		}
	}
	p := i + 1
	if lenBytes > 0 {
		if len(data)-p < lenBytes {
			return 0, 0, false, fmt.Errorf("%w: truncated: the length of the value at byte %d", ErrMalformed, i)
		}
		var l uint64
		for _, b := range data[p : p+lenBytes] {
			l = l<<8 | uint64(b)
		}
		p += lenBytes
		switch c {
		case 0xdc, 0xdd:
			return p, l, true, nil
		case 0xde, 0xdf:
			return p, 2 * l, true, nil
		}
		if l+uint64(extra) > uint64(len(data)-p) {
			return 0, 0, false, fmt.Errorf("%w: truncated: the value at byte %d needs %d bytes, %d left", ErrMalformed, i, l+uint64(extra), len(data)-p)
		}
		return p + int(l) + extra, 0, false, nil
	}
	if size > len(data)-p {
		return 0, 0, false, fmt.Errorf("%w: truncated: the value at byte %d needs %d bytes, %d left", ErrMalformed, i, size, len(data)-p)
	}
	return p + size, 0, false, nil
}

// forkGuard is the reader Msgpack.Unmarshal decodes from when the data holds
// an ext whose payload starts with a map header.
//
// Where it expects a Go map (a map-typed field, element or target, such as
// a map[string]any), msgpack/v5 also accepts an ext header followed by a
// map: it skips the header and reads a map code from the ext's payload, and
// the map's contents from there on, past the payload's end if the map is
// longer. From then on the decoder frames the bytes differently than scan
// did: what scan took as an opaque payload, or the middle of a string, is
// read as values, whose nesting and lengths scan never checked (an ext32
// wrapping a map of 10 MB of nested arrays, or a map32 header claiming 4
// billion entries, which the decoder allocates up front).
//
// Scan cannot tell where the Go type expects a map, and an ext whose
// payload merely starts with a map header is ordinary (one time.Time value
// in about 14 with a fraction of a second), so it marks their payloads; the
// guard fails the decoder's read the moment it reads a code there, which
// msgpack does only to read an ext as a map: time values and other exts
// are read as whole payloads (Read, not ReadByte). The decoder then never
// leaves the framing scan checked.
type forkGuard struct {
	data  []byte
	pos   int
	forks []uint64 // bit set at the first payload byte of those exts
	fork  int      // where the decoder read an ext as a map, or -1
}

var errExtAsMap = errors.New("an ext value read as a map")

func (g *forkGuard) ReadByte() (byte, error) {
	if g.pos >= len(g.data) {
		return 0, io.EOF
	}
	if g.forks[g.pos>>6]&(1<<(g.pos&63)) != 0 {
		g.fork = g.pos
		return 0, errExtAsMap
	}
	g.pos++
	return g.data[g.pos-1], nil
}

func (g *forkGuard) UnreadByte() error {
	if g.pos == 0 {
		return errors.New("serializer: UnreadByte at the beginning")
	}
	g.pos--
	return nil
}

func (g *forkGuard) Read(p []byte) (int, error) {
	if g.pos >= len(g.data) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, g.data[g.pos:])
	g.pos += n
	return n, nil
}
