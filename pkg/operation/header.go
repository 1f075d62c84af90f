package operation

import (
	"bytes"
	"math"

	"github.com/fxamacker/cbor/v2"

	"github.com/pandanet/pandanet/pkg/internal/cborhead"
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
	out = cborhead.AppendHead(out, cborhead.Array, n)
	out = cborhead.AppendHead(out, cborhead.Uint, uint64(h.Version))
	out = cborhead.AppendBytes(out, h.PublicKey[:])
	if withSignature {
		out = cborhead.AppendBytes(out, h.Signature[:])
	}
	out = cborhead.AppendHead(out, cborhead.Uint, h.PayloadSize)
	if h.PayloadSize > 0 {
		out = cborhead.AppendBytes(out, h.PayloadHash[:])
	}
	out = cborhead.AppendHead(out, cborhead.Uint, h.SeqNum)
	if h.SeqNum > 0 {
		out = cborhead.AppendBytes(out, h.Backlink[:])
	}
	if e != nil {
		out = cborhead.AppendHead(out, cborhead.Array, uint64(5+len(e.Unknown)))
		out = cborhead.AppendHead(out, cborhead.Uint, extensionsVersion)
		out = cborhead.AppendHead(out, cborhead.Uint, extensionsBasic)
		out = cborhead.AppendBytes(out, e.LogID[:])
		out = cborhead.AppendHead(out, cborhead.Uint, e.Timestamp)
		if e.Prune {
			out = append(out, cborhead.True)
		} else {
			out = append(out, cborhead.False)
		}
		for _, raw := range e.Unknown {
			out = append(out, raw...)
		}
	}
	return out
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
	r := cborhead.Reader{Data: data}
	n, isArray := r.Head(cborhead.Array)
	if !isArray || n < 4 || n > 8 {
		return nil, false
	}
	h = &Header{}
	version, _ := r.Head(cborhead.Uint)
	h.Version = uint16(version)
	ok = version <= math.MaxUint16
	ok = r.Read(h.PublicKey[:]) && ok
	ok = r.Read(h.Signature[:]) && ok
	h.PayloadSize, _ = r.Head(cborhead.Uint)
	if h.PayloadSize > 0 {
		ok = r.Read(h.PayloadHash[:]) && ok
	}
	h.SeqNum, _ = r.Head(cborhead.Uint)
	if h.SeqNum > 0 {
		ok = r.Read(h.Backlink[:]) && ok
	}
	if h.PayloadSize > math.MaxUint32 || h.SeqNum > math.MaxUint32 || !ok || r.Failed {
		return nil, false
	}
	if len(r.Data) > 0 {
		if fields, _ := r.Head(cborhead.Array); fields != 5 {
			return nil, false // unknown extension fields, or no extensions array at all
		}
		e := &Extensions{}
		extVersion, _ := r.Head(cborhead.Uint)
		variant, _ := r.Head(cborhead.Uint)
		ok = r.Read(e.LogID[:])
		e.Timestamp, _ = r.Head(cborhead.Uint)
		if !ok || r.Failed || extVersion != extensionsVersion || variant != extensionsBasic || len(r.Data) != 1 {
			return nil, false
		}
		switch r.Data[0] {
		case cborhead.True:
			e.Prune = true
		case cborhead.False:
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
