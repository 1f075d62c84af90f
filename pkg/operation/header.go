package operation

import (
	"bytes"
	"math"

	"github.com/fxamacker/cbor/v2"
)

// Version is the only header version p2panda defines.
const Version = 1

// MaxHeaderSize bounds an encoded header. A Node header with extensions is ~250 bytes.
const MaxHeaderSize = 1024

// Header is a p2panda-core operation header with the Node's extensions.
//
// The encoding is a definite-length CBOR array whose optional elements are skipped rather
// than encoded as null: [version, public_key, signature?, payload_size, payload_hash?,
// seq_num, backlink?, extensions?]. PayloadHash is present iff PayloadSize > 0 and Backlink
// iff SeqNum > 0, so both are plain values here. Extensions is nil for headers without an
// extensions element (p2panda-core's zero-sized extensions, as in its test fixtures).
type Header struct {
	Version     uint16
	PublicKey   PublicKey
	Signature   Signature
	PayloadSize uint64
	PayloadHash Hash
	SeqNum      uint64
	Backlink    Hash
	Extensions  *Extensions
}

// Extensions is the Node's "basic" extensions variant: [1, 0, log_id, timestamp, prune_flag].
type Extensions struct {
	LogID LogID
	// Timestamp is microseconds since the UNIX epoch, chosen by the author (not validated).
	Timestamp uint64
	// Prune marks the operation as the new start of its log: all earlier entries of this
	// (author, log) may be deleted everywhere.
	Prune bool
	// Unknown holds extension fields after prune_flag that a later version of the format
	// added, each a canonical CBOR item kept verbatim: the extensions spec says decoders
	// must not fail on them, and the header must re-encode to the bytes that were signed.
	Unknown [][]byte
}

const (
	extensionsVersion = 1
	extensionsBasic   = 0
)

var (
	encMode = CanonicalCBOR
	// decMode is strict about what untrusted peers can make us allocate.
	decMode = StrictCBOR(4, 16)
)

// Encode returns the canonical signed encoding (what is stored, sent and hashed).
func (h *Header) Encode() []byte { return h.encode(true) }

// SigningBytes returns the encoding with the signature element left out, which is what the
// author signs.
func (h *Header) SigningBytes() []byte { return h.encode(false) }

// Hash returns the operation id, BLAKE3 of the signed encoding.
func (h *Header) Hash() Hash { return HashOf(h.Encode()) }

// encode appends the header's canonical CBOR encoding (CBOR core deterministic encoding:
// shortest-form heads, definite lengths) directly: the header is a fixed shape of unsigned
// integers, byte strings, one boolean and verbatim unknown extension items, so encoding it
// needs one allocation instead of the reflection encoder's ~20. FuzzEncodeMatchesCBOR checks
// it byte for byte against the cbor library's encoding of the same fields.
func (h *Header) encode(withSignature bool) []byte {
	n, size := h.shape(withSignature)
	return h.appendEncoding(make([]byte, 0, size), n, withSignature)
}

// shape returns how many fields the header's array has and how many bytes it encodes to.
func (h *Header) shape(withSignature bool) (n uint64, size int) {
	n = uint64(4) // version, public key, payload size, seq num
	size = 1 + 3 + 2 + len(h.PublicKey) + 9 + 9
	if withSignature {
		n++
		size += 2 + len(h.Signature)
	}
	if h.PayloadSize > 0 {
		n++
		size += 2 + len(h.PayloadHash)
	}
	if h.SeqNum > 0 {
		n++
		size += 2 + len(h.Backlink)
	}
	e := h.Extensions
	if e != nil {
		n++
		size += 1 + 1 + 1 + 2 + len(e.LogID) + 9 + 1
		for _, raw := range e.Unknown {
			size += len(raw)
		}
	}
	return n, size
}

// appendEncoding appends the header's encoding, an array of n fields, to out.
func (h *Header) appendEncoding(out []byte, n uint64, withSignature bool) []byte {
	e := h.Extensions
	out = appendHead(out, cborArray, n)
	out = appendHead(out, cborUint, uint64(h.Version))
	out = appendBytes(out, h.PublicKey[:])
	if withSignature {
		out = appendBytes(out, h.Signature[:])
	}
	out = appendHead(out, cborUint, h.PayloadSize)
	if h.PayloadSize > 0 {
		out = appendBytes(out, h.PayloadHash[:])
	}
	out = appendHead(out, cborUint, h.SeqNum)
	if h.SeqNum > 0 {
		out = appendBytes(out, h.Backlink[:])
	}
	if e != nil {
		out = appendHead(out, cborArray, uint64(5+len(e.Unknown)))
		out = appendHead(out, cborUint, extensionsVersion)
		out = appendHead(out, cborUint, extensionsBasic)
		out = appendBytes(out, e.LogID[:])
		out = appendHead(out, cborUint, e.Timestamp)
		if e.Prune {
			out = append(out, cborTrue)
		} else {
			out = append(out, cborFalse)
		}
		for _, raw := range e.Unknown {
			out = append(out, raw...)
		}
	}
	return out
}

// CBOR major types (shifted into the initial byte) and simple values used by headers.
const (
	cborUint  = 0 << 5
	cborBytes = 2 << 5
	cborArray = 4 << 5
	cborFalse = 0xf4
	cborTrue  = 0xf5
)

// appendHead appends a CBOR initial byte of the major type with argument v in its shortest
// form, as deterministic encoding requires.
func appendHead(out []byte, major byte, v uint64) []byte {
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

func appendBytes(out, b []byte) []byte {
	return append(appendHead(out, cborBytes, uint64(len(b))), b...)
}

// signingBytesOfCanonical returns h.SigningBytes() for a header whose canonical encoding is
// data, without encoding it again: the canonical encoding is a one-byte array head (at most
// 8 elements), the version as a CBOR unsigned integer, the public key (2 + 32 bytes) and the
// signature (2 + 64 bytes), then the rest; the signing bytes are the same array minus the
// signature element.
func signingBytesOfCanonical(data []byte, h *Header) []byte {
	versionLen := 1
	switch {
	case h.Version >= 256:
		versionLen = 3
	case h.Version >= 24:
		versionLen = 2
	}
	sigStart := 1 + versionLen + 2 + len(h.PublicKey)
	sigEnd := sigStart + 2 + len(h.Signature)
	out := make([]byte, 0, len(data)-(sigEnd-sigStart))
	out = append(out, data[0]-1) // one element fewer; 0x80|n with n >= 4 here
	out = append(out, data[1:sigStart]...)
	return append(out, data[sigEnd:]...)
}

// DecodeHeader parses a signed header. It enforces p2panda-core's structural rules (hash iff
// payload, backlink iff seq > 0, no excess elements) and additionally requires the canonical
// encoding, so that the bytes received are exactly the bytes hashed and signed.
func DecodeHeader(data []byte) (*Header, error) {
	if len(data) > MaxHeaderSize {
		return nil, invalid(ErrTooLarge, "header is %d bytes, at most %d allowed", len(data), MaxHeaderSize)
	}
	if h, ok := decodeCanonicalHeader(data); ok {
		return h, nil
	}
	return decodeHeaderCBOR(data)
}

// decodeHeaderCBOR is DecodeHeader through the cbor library: it accepts what the fast path
// accepts and gives every rejection its precise error.
func decodeHeaderCBOR(data []byte) (*Header, error) {
	var items []cbor.RawMessage
	if err := decMode.Unmarshal(data, &items); err != nil {
		return nil, invalid(ErrMalformed, "header is not a CBOR array: %v", err)
	}
	d := fieldDecoder{items: items}
	h := &Header{}
	h.Version = uint16(d.uint("version", math.MaxUint16))
	h.PublicKey = PublicKey(d.bytes32("public_key"))
	h.Signature = d.signature()
	h.PayloadSize = d.uint("payload_size", math.MaxUint32)
	if h.PayloadSize > 0 {
		h.PayloadHash = Hash(d.bytes32("payload_hash"))
	}
	h.SeqNum = d.uint("seq_num", math.MaxUint32)
	if h.SeqNum > 0 {
		h.Backlink = Hash(d.bytes32("backlink"))
	}
	if d.err == nil && d.pos < len(d.items) {
		h.Extensions = d.extensions()
	}
	if d.err == nil && d.pos != len(d.items) {
		d.fail("header has %d elements, expected %d", len(d.items), d.pos)
	}
	if d.err != nil {
		return nil, d.err
	}
	if !bytes.Equal(h.Encode(), data) {
		return nil, invalid(ErrMalformed, "header is not canonically encoded")
	}
	return h, nil
}

// decodeCanonicalHeader reads the header the way its canonical encoding lays it out, by
// hand: the cbor library's generic decoding cost ~9 µs per header, most of a received
// operation's CPU after verification. It reports ok only if data is exactly the canonical
// encoding of the header it read (the same re-encoding check the slow path ends with), so
// whatever it accepts the slow path accepts as the same header; anything else, including
// every malformed input and headers with unknown extension fields, goes to the slow path,
// which decides and words the error. FuzzDecodeHeader compares the two.
func decodeCanonicalHeader(data []byte) (h *Header, ok bool) {
	r := headReader{data: data}
	n, isArray := r.head(cborArray)
	if !isArray || n < 4 || n > 8 {
		return nil, false
	}
	h = &Header{}
	version, _ := r.head(cborUint)
	h.Version = uint16(version)
	ok = version <= math.MaxUint16
	ok = r.bytes(h.PublicKey[:]) && ok
	ok = r.bytes(h.Signature[:]) && ok
	h.PayloadSize, _ = r.head(cborUint)
	if h.PayloadSize > 0 {
		ok = r.bytes(h.PayloadHash[:]) && ok
	}
	h.SeqNum, _ = r.head(cborUint)
	if h.SeqNum > 0 {
		ok = r.bytes(h.Backlink[:]) && ok
	}
	if h.PayloadSize > math.MaxUint32 || h.SeqNum > math.MaxUint32 || !ok || r.failed {
		return nil, false
	}
	if len(r.data) > 0 {
		if fields, _ := r.head(cborArray); fields != 5 {
			return nil, false // unknown extension fields, or no extensions array at all
		}
		e := &Extensions{}
		extVersion, _ := r.head(cborUint)
		variant, _ := r.head(cborUint)
		ok = r.bytes(e.LogID[:])
		e.Timestamp, _ = r.head(cborUint)
		if !ok || r.failed || extVersion != extensionsVersion || variant != extensionsBasic || len(r.data) != 1 {
			return nil, false
		}
		switch r.data[0] {
		case cborTrue:
			e.Prune = true
		case cborFalse:
		default:
			return nil, false
		}
		h.Extensions = e
	}
	// Re-encode into a stack buffer (a Node header is ~250 bytes): the comparison needs no
	// allocation.
	var buf [384]byte
	fields, _ := h.shape(true)
	if !bytes.Equal(h.appendEncoding(buf[:0], fields, true), data) {
		return nil, false
	}
	return h, true
}

// headReader reads CBOR heads and byte strings off the front of data; after a mismatch it
// sets failed and reads nothing more.
type headReader struct {
	data   []byte
	failed bool
}

// head reads one initial byte of the given major type and its argument.
func (r *headReader) head(major byte) (uint64, bool) {
	if r.failed || len(r.data) == 0 || r.data[0]&0xe0 != major {
		r.failed = true
		return 0, false
	}
	info := r.data[0] & 0x1f
	size := 0
	switch {
	case info < 24:
		r.data = r.data[1:]
		return uint64(info), true
	case info == 24:
		size = 1
	case info == 25:
		size = 2
	case info == 26:
		size = 4
	case info == 27:
		size = 8
	default:
		r.failed = true
		return 0, false
	}
	if len(r.data) < 1+size {
		r.failed = true
		return 0, false
	}
	var v uint64
	for _, b := range r.data[1 : 1+size] {
		v = v<<8 | uint64(b)
	}
	r.data = r.data[1+size:]
	return v, true
}

// bytes reads a byte string of exactly len(dst) bytes into dst.
func (r *headReader) bytes(dst []byte) bool {
	n, ok := r.head(cborBytes)
	if !ok || n != uint64(len(dst)) || uint64(len(r.data)) < n {
		r.failed = true
		return false
	}
	copy(dst, r.data[:n])
	r.data = r.data[n:]
	return true
}

// fieldDecoder walks the header array, remembering the first error.
type fieldDecoder struct {
	items []cbor.RawMessage
	pos   int
	err   error
}

func (d *fieldDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = invalid(ErrMalformed, format, args...)
	}
}

func (d *fieldDecoder) next(name string) cbor.RawMessage {
	if d.err != nil {
		return nil
	}
	if d.pos >= len(d.items) {
		d.fail("header ends before %s", name)
		return nil
	}
	item := d.items[d.pos]
	d.pos++
	return item
}

func (d *fieldDecoder) uint(name string, max uint64) uint64 {
	item := d.next(name)
	if item == nil {
		return 0
	}
	var v uint64
	if err := decMode.Unmarshal(item, &v); err != nil {
		d.fail("%s: %v", name, err)
		return 0
	}
	if v > max {
		d.fail("%s %d exceeds %d", name, v, max)
		return 0
	}
	return v
}

func (d *fieldDecoder) byteString(name string, size int) []byte {
	item := d.next(name)
	if item == nil {
		return nil
	}
	var b []byte
	if err := decMode.Unmarshal(item, &b); err != nil {
		d.fail("%s: %v", name, err)
		return nil
	}
	if len(b) != size {
		d.fail("%s is %d bytes, expected %d", name, len(b), size)
		return nil
	}
	return b
}

func (d *fieldDecoder) bytes32(name string) (out [32]byte) {
	copy(out[:], d.byteString(name, 32))
	return out
}

func (d *fieldDecoder) signature() (out Signature) {
	copy(out[:], d.byteString("signature", SignatureSize))
	return out
}

func (d *fieldDecoder) extensions() *Extensions {
	item := d.next("extensions")
	var parts []cbor.RawMessage
	if err := decMode.Unmarshal(item, &parts); err != nil {
		d.fail("extensions are not a CBOR array: %v", err)
		return nil
	}
	ed := fieldDecoder{items: parts}
	version := ed.uint("extensions version", math.MaxUint16)
	variant := ed.uint("extensions variant", math.MaxUint16)
	if ed.err == nil && version != extensionsVersion {
		ed.fail("extensions version %d, only %d is supported", version, extensionsVersion)
	}
	if ed.err == nil && variant != extensionsBasic {
		ed.fail("extensions variant %d is not supported", variant)
	}
	e := &Extensions{LogID: LogID(ed.bytes32("log_id")), Timestamp: ed.uint("timestamp", math.MaxUint64)}
	if raw := ed.next("prune_flag"); raw != nil {
		if err := decMode.Unmarshal(raw, &e.Prune); err != nil {
			ed.fail("prune_flag: %v", err)
		}
	}
	// Fields a later format version appends are kept, not rejected (the extensions spec:
	// decoders must not fail on them). They must be canonical like the rest of the header,
	// so that the bytes received stay the bytes hashed and signed.
	for ed.err == nil && ed.pos < len(parts) {
		raw := ed.next("unknown extension field")
		var v any
		if err := decMode.Unmarshal(raw, &v); err != nil {
			ed.fail("extension field %d: %v", ed.pos-1, err)
			break
		}
		if canon, err := encMode.Marshal(v); err != nil || !bytes.Equal(canon, raw) {
			ed.fail("extension field %d is not canonically encoded", ed.pos-1)
			break
		}
		e.Unknown = append(e.Unknown, bytes.Clone(raw))
	}
	if ed.err != nil {
		d.err = ed.err
		return nil
	}
	return e
}
