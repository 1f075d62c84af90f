// Package cborhead writes and reads the few CBOR items that pandanet's hot paths encode by
// hand instead of through the cbor library's reflection: heads (an initial byte and its
// argument) in shortest form, and byte strings. The operation header and the log-sync
// Operation frame use it; each accepts only the canonical form on its fast path and leaves
// every other input, malformed ones included, to the cbor library, which decides and words
// the error.
package cborhead

import "math"

// Major types, shifted into the initial byte, and the two simple values pandanet writes.
const (
	Uint  = 0 << 5
	Bytes = 2 << 5
	Array = 4 << 5
	Map   = 5 << 5
	False = 0xf4
	True  = 0xf5
)

// AppendHead appends an initial byte of the major type with argument v in its shortest form.
func AppendHead(out []byte, major byte, v uint64) []byte {
	switch {
	case v < 24:
		return append(out, major|byte(v))
	case v <= math.MaxUint8:
		return append(out, major|24, byte(v))
	case v <= math.MaxUint16:
		return append(out, major|25, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(out, major|26, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(out, major|27, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// AppendBytes appends b as a byte string.
func AppendBytes(out, b []byte) []byte {
	return append(AppendHead(out, Bytes, uint64(len(b))), b...)
}

// Reader reads heads and byte strings off the front of Data. After the first mismatch (a
// different major type, an argument not in shortest form, too few bytes) it sets Failed and
// reads nothing more, so a caller may read a whole item and check Failed once.
type Reader struct {
	Data   []byte
	Failed bool
}

// Head reads one initial byte of the given major type and its argument, which must be in
// its shortest form.
func (r *Reader) Head(major byte) (uint64, bool) {
	if r.Failed || len(r.Data) == 0 || r.Data[0]&0xe0 != major {
		r.Failed = true
		return 0, false
	}
	info := r.Data[0] & 0x1f
	var size int
	var least uint64 // the smallest argument this size may carry: smaller ones fit a shorter form
	switch {
	case info < 24:
		r.Data = r.Data[1:]
		return uint64(info), true
	case info == 24:
		size, least = 1, 24
	case info == 25:
		size, least = 2, math.MaxUint8+1
	case info == 26:
		size, least = 4, math.MaxUint16+1
	case info == 27:
		size, least = 8, math.MaxUint32+1
	default:
		r.Failed = true
		return 0, false
	}
	if len(r.Data) < 1+size {
		r.Failed = true
		return 0, false
	}
	var v uint64
	for _, b := range r.Data[1 : 1+size] {
		v = v<<8 | uint64(b)
	}
	if v < least {
		r.Failed = true
		return 0, false
	}
	r.Data = r.Data[1+size:]
	return v, true
}

// Cut reads a byte string and returns it without copying: it aliases Data.
func (r *Reader) Cut() ([]byte, bool) {
	n, ok := r.Head(Bytes)
	if !ok || uint64(len(r.Data)) < n {
		r.Failed = true
		return nil, false
	}
	b := r.Data[:n:n]
	r.Data = r.Data[n:]
	return b, true
}

// Read reads a byte string of exactly len(dst) bytes into dst.
func (r *Reader) Read(dst []byte) bool {
	b, ok := r.Cut()
	if !ok || len(b) != len(dst) {
		r.Failed = true
		return false
	}
	copy(dst, b)
	return true
}
