package operation

import (
	"bytes"
	"time"
)

// DefaultMaxPayloadSize bounds a body the Node accepts. p2panda sets no limit; an unbounded
// body lets any peer make us allocate and hash arbitrary amounts of data.
const DefaultMaxPayloadSize = 1 << 20

// Operation is a signed header, its canonical encoding, id and optional body.
type Operation struct {
	Hash        Hash
	Header      Header
	HeaderBytes []byte
	// Body is nil when the operation has none, or when the payload was deleted
	// ("off-chain" payloads are allowed to be missing).
	Body []byte
}

// Author returns the author's public key.
func (o *Operation) Author() PublicKey { return o.Header.PublicKey }

// SeqNum returns the operation's position in its log.
func (o *Operation) SeqNum() uint64 { return o.Header.SeqNum }

// LogID returns the extensions' log id, or the zero hash without extensions.
func (o *Operation) LogID() LogID {
	if o.Header.Extensions == nil {
		return LogID{}
	}
	return o.Header.Extensions.LogID
}

// Timestamp returns the author's timestamp (µs since the epoch), or 0 without extensions.
func (o *Operation) Timestamp() uint64 {
	if o.Header.Extensions == nil {
		return 0
	}
	return o.Header.Extensions.Timestamp
}

// Prune reports whether the prune flag is set.
func (o *Operation) Prune() bool { return o.Header.Extensions != nil && o.Header.Extensions.Prune }

// Size is header plus body length, what sync counts as bytes on the wire.
func (o *Operation) Size() int { return len(o.HeaderBytes) + len(o.Body) }

// Limits bound what Decode accepts from untrusted sources.
type Limits struct {
	MaxPayloadSize uint64
}

// DefaultLimits are the limits Decode uses.
var DefaultLimits = Limits{MaxPayloadSize: DefaultMaxPayloadSize}

// Decode parses a raw operation (header bytes plus optional body) and validates it on its
// own: canonical encoding, version, strict Ed25519 signature and payload hash/size. It does
// not check the operation against its log (see CheckSequence).
func Decode(headerBytes, body []byte) (*Operation, error) {
	return DefaultLimits.Decode(headerBytes, body)
}

// Decode is Decode with these limits. The operation gets its own copies of headerBytes and
// body.
func (l Limits) Decode(headerBytes, body []byte) (*Operation, error) {
	return l.decode(headerBytes, body, true)
}

// DecodeOwned is Decode for a caller that hands its buffers over: the operation keeps
// headerBytes and body instead of copying them, so nothing may change them afterwards. A
// node receiving a catch-up decodes every frame into fresh slices of its own, and copying
// them once more was a tenth of the bytes it allocated per operation.
func (l Limits) DecodeOwned(headerBytes, body []byte) (*Operation, error) {
	return l.decode(headerBytes, body, false)
}

func (l Limits) decode(headerBytes, body []byte, copyBuffers bool) (*Operation, error) {
	op, signingBytes, err := l.decodeUnverified(headerBytes, body, copyBuffers)
	if err != nil {
		return nil, err
	}
	if !op.Header.PublicKey.Verify(signingBytes, op.Header.Signature) {
		return nil, op.signatureError()
	}
	return op, nil
}

// Encoded is one operation for DecodeBatch, and what became of it.
type Encoded struct {
	Header, Body []byte
	// Owned decodes it as DecodeOwned does, keeping Header and Body; otherwise as Decode,
	// which copies them.
	Owned bool
	Op    *Operation // the decoded operation, if it is valid
	Err   error      // why it is not
}

// DecodeBatch decodes every item as Decode (or DecodeOwned) would, with the same results,
// and verifies the signatures of authors that have key tables together: a verification's
// last step, one field inversion, is then shared by the batch (keytable.VerifyBatch). A
// node verifying a stream of operations saves ~15 % of each verification with it.
func (l Limits) DecodeBatch(items []Encoded) {
	// On the stack for the batches the pipeline makes (at most 8 operations).
	var opsBuf [16]*Operation
	var atBuf [16]int
	var checksBuf [16]signatureCheck
	ops, at, checks := opsBuf[:0], atBuf[:0], checksBuf[:0]
	for i := range items {
		e := &items[i]
		op, signingBytes, err := l.decodeUnverified(e.Header, e.Body, !e.Owned)
		e.Op, e.Err = nil, err
		if err != nil {
			continue
		}
		ops, at = append(ops, op), append(at, i)
		checks = append(checks, signatureCheck{key: op.Header.PublicKey, msg: signingBytes, sig: &op.Header.Signature})
	}
	verifyBatch(checks)
	for j, op := range ops {
		if checks[j].ok {
			items[at[j]].Op = op
		} else {
			items[at[j]].Err = op.signatureError()
		}
	}
}

// decodeUnverified is decode up to the signature, which it returns the signed bytes for.
func (l Limits) decodeUnverified(headerBytes, body []byte, copyBuffers bool) (op *Operation, signingBytes []byte, err error) {
	if uint64(len(body)) > l.MaxPayloadSize {
		return nil, nil, invalid(ErrTooLarge, "body is %d bytes, at most %d allowed", len(body), l.MaxPayloadSize)
	}
	h, err := DecodeHeader(headerBytes)
	if err != nil {
		return nil, nil, err
	}
	if h.PayloadSize > l.MaxPayloadSize {
		return nil, nil, invalid(ErrTooLarge, "payload_size %d exceeds %d", h.PayloadSize, l.MaxPayloadSize)
	}
	if body != nil && len(body) == 0 {
		// A present body must match the header's size and hash, as in p2panda-core: with
		// payload_size 0 there is no hash to match, otherwise the size differs. No body at
		// all is nil (the payload is absent, e.g. deleted off-chain).
		return nil, nil, invalid(ErrPayloadMismatch, "an empty body is present; a missing body must be absent (nil)")
	}
	if copyBuffers {
		headerBytes, body = bytes.Clone(headerBytes), bytes.Clone(body)
	}
	op = &Operation{Hash: HashOf(headerBytes), Header: *h, HeaderBytes: headerBytes, Body: body}
	if err := op.validateUnsigned(); err != nil {
		return nil, nil, err
	}
	// DecodeHeader checked that headerBytes is the canonical encoding, so the signed bytes
	// can be cut out of it instead of encoding the header a second time.
	return op, signingBytesOfCanonical(headerBytes, h), nil
}

// Validate applies p2panda-core's validate_operation: version, the header's internal
// consistency, the signature and, if the body is present, its size and hash.
func (o *Operation) Validate() error {
	if err := o.validateUnsigned(); err != nil {
		return err
	}
	if !o.Header.PublicKey.Verify(o.Header.SigningBytes(), o.Header.Signature) {
		return o.signatureError()
	}
	return nil
}

func (o *Operation) signatureError() error {
	h := &o.Header
	return invalid(ErrSignature, "operation %s (author %s, seq %d)", o.Hash.Short(), h.PublicKey.Short(), h.SeqNum)
}

// validateUnsigned is Validate without the signature: version and body.
func (o *Operation) validateUnsigned() error {
	h := &o.Header
	if h.Version != Version {
		return invalid(ErrUnsupportedVersion, "version %d", h.Version)
	}
	if o.Body != nil {
		if uint64(len(o.Body)) != h.PayloadSize {
			return invalid(ErrPayloadMismatch, "body is %d bytes, header says %d", len(o.Body), h.PayloadSize)
		}
		if HashOf(o.Body) != h.PayloadHash {
			return invalid(ErrPayloadMismatch, "body hash %s, header says %s", HashOf(o.Body).Short(), h.PayloadHash.Short())
		}
	}
	return nil
}

// Draft holds what an author chooses for a new operation; Sign fills in the rest.
type Draft struct {
	SeqNum    uint64
	Backlink  Hash // required iff SeqNum > 0
	LogID     LogID
	Timestamp uint64 // µs since the epoch; zero means now
	Prune     bool
	Body      []byte // nil for none
	// NoExtensions leaves the extensions element out (p2panda-core style plain header).
	NoExtensions bool
}

// Sign creates, signs and encodes an operation.
func Sign(key PrivateKey, d Draft) (*Operation, error) {
	h := Header{Version: Version, PublicKey: key.PublicKey(), SeqNum: d.SeqNum, Backlink: d.Backlink}
	if d.SeqNum == 0 && !d.Backlink.IsZero() {
		return nil, invalid(ErrSeqNum, "backlink set at seq 0")
	}
	if d.SeqNum > 0 && d.Backlink.IsZero() {
		return nil, invalid(ErrBacklinkMissing, "seq %d", d.SeqNum)
	}
	if d.SeqNum > 0xffffffff {
		return nil, invalid(ErrSeqNum, "seq %d exceeds u32", d.SeqNum)
	}
	body := d.Body
	if len(body) == 0 {
		body = nil
	}
	if body != nil {
		h.PayloadSize = uint64(len(body))
		h.PayloadHash = HashOf(body)
	}
	if !d.NoExtensions {
		ts := d.Timestamp
		if ts == 0 {
			ts = uint64(time.Now().UnixMicro())
		}
		h.Extensions = &Extensions{LogID: d.LogID, Timestamp: ts, Prune: d.Prune}
	}
	h.Signature = key.Sign(h.SigningBytes())
	enc := h.Encode()
	return &Operation{Hash: HashOf(enc), Header: h, HeaderBytes: enc, Body: body}, nil
}
