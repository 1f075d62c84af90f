package logsync

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	stdsync "sync"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/pandanet/pandanet/pkg/internal/cborhead"
	"github.com/pandanet/pandanet/pkg/operation"
)

// Kind identifies a message. The values are part of the wire format.
type Kind uint8

const (
	// KindTopic opens the handshake: the initiator names the topic it wants to sync.
	KindTopic Kind = 0
	// KindAccept is the acceptor's handshake "Done": it serves the topic, the session starts.
	KindAccept Kind = 1
	// KindReject is the acceptor refusing the session, with a reason.
	KindReject Kind = 2
	// KindHave carries the sender's log heights for the topic.
	KindHave Kind = 3
	// KindPreSync announces how many operations and bytes the sender is about to push.
	KindPreSync Kind = 4
	// KindOperation is one operation of the catch-up phase.
	KindOperation Kind = 5
	// KindDone ends the sender's catch-up phase (alone, it means "nothing to send").
	KindDone Kind = 6
	// KindLive is one operation forwarded in live mode.
	KindLive Kind = 7
	// KindClose ends the session; the peer answers with Close.
	KindClose Kind = 8
	// KindPing keeps an idle session alive (the receiver only resets its idle timer).
	KindPing Kind = 9
	// KindRefuse tells the pusher that we refuse a log (Author, Log) for a Reason: it must
	// stop pushing that log (see refusal.go). It may come at any time after Have.
	KindRefuse Kind = 10
)

var kindNames = [...]string{"Topic", "Accept", "Reject", "Have", "PreSync", "Operation", "Done", "Live", "Close", "Ping", "Refuse"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Limits bound what a peer can make us read and allocate.
type Limits struct {
	// MaxFrameSize bounds every frame except Have. An operation is at most
	// operation.DefaultMaxPayloadSize body plus operation.MaxHeaderSize header.
	MaxFrameSize int
	// MaxHaveEntries bounds the number of (author, log) heights in one Have.
	MaxHaveEntries int
}

// DefaultLimits: 2 MiB frames and 100k logs per Have.
var DefaultLimits = Limits{MaxFrameSize: 2 << 20, MaxHaveEntries: 100_000}

// haveEntryWireSize over-estimates one (author, log, height) entry: two 34-byte byte strings,
// a ≤9-byte integer and array headers.
const haveEntryWireSize = 90

// maxHaveFrame is the frame limit while a Have is expected: large enough for MaxHaveEntries
// logs with one author each (the Node's shape: one log per author and topic).
func (l Limits) maxHaveFrame() int { return l.MaxHaveEntries*haveEntryWireSize + 1024 }

// MaxReasonLength bounds a Reject reason.
const MaxReasonLength = 256

// Message is one protocol message. Which fields are meaningful depends on Kind:
// Topic (KindTopic), Reason (KindReject), Have (KindHave), Ops and Bytes (KindPreSync),
// Header and Body (KindOperation, KindLive), Author, Log and Reason (KindRefuse). Body nil
// means the operation has none.
type Message struct {
	Kind   Kind
	Topic  operation.Topic
	Reason string
	Author operation.PublicKey
	Log    operation.LogID
	Have   Heights
	Ops    uint64
	Bytes  uint64
	Header []byte
	Body   []byte
}

// wireMessage is the CBOR shape: a map with small integer keys, absent fields omitted.
type wireMessage struct {
	Kind   uint8        `cbor:"0,keyasint"`
	Topic  []byte       `cbor:"1,keyasint,omitempty"`
	Reason string       `cbor:"2,keyasint,omitempty"`
	Have   []wireAuthor `cbor:"3,keyasint,omitempty"`
	Ops    uint64       `cbor:"4,keyasint,omitempty"`
	Bytes  uint64       `cbor:"5,keyasint,omitempty"`
	Header []byte       `cbor:"6,keyasint,omitempty"`
	Body   []byte       `cbor:"7,keyasint,omitempty"`
	Author []byte       `cbor:"8,keyasint,omitempty"`
	Log    []byte       `cbor:"9,keyasint,omitempty"`
}

// wireAuthor is [author, [[log, height], ...]], mirroring p2panda's map<author, map<log, seq>>
// without relying on byte-string map keys.
type wireAuthor struct {
	_      struct{} `cbor:",toarray"`
	Author []byte
	Logs   []wireLog
}

type wireLog struct {
	_      struct{} `cbor:",toarray"`
	Log    []byte
	Height uint64
}

var (
	msgEncMode = operation.CanonicalCBOR
	// decModes caches one strict decoder per MaxHaveEntries (normally just the default).
	decModes stdsync.Map // int -> cbor.DecMode
)

// decModeFor returns a strict decoder: no indefinite lengths, tags, duplicate or unknown
// keys, and arrays capped near the Have limit, so a peer cannot make the decoder allocate a
// huge slice from a short frame (the frame size caps everything else).
func decModeFor(maxHaveEntries int) cbor.DecMode {
	if dm, ok := decModes.Load(maxHaveEntries); ok {
		return dm.(cbor.DecMode)
	}
	dm := operation.StrictCBOR(6, maxHaveEntries+16)
	decModes.Store(maxHaveEntries, dm)
	return dm
}

// EncodeMessage returns the CBOR body of m (without the length prefix).
func EncodeMessage(m *Message) ([]byte, error) {
	w, err := wireOf(m)
	if err != nil {
		return nil, err
	}
	return msgEncMode.Marshal(w)
}

// wireOf returns m as it goes on the wire.
func wireOf(m *Message) (*wireMessage, error) {
	w := &wireMessage{Kind: uint8(m.Kind)}
	switch m.Kind {
	case KindTopic:
		w.Topic = m.Topic[:]
	case KindReject:
		w.Reason = m.Reason
	case KindHave:
		w.Have = encodeHeights(m.Have)
	case KindPreSync:
		w.Ops, w.Bytes = m.Ops, m.Bytes
	case KindOperation, KindLive:
		w.Header, w.Body = m.Header, m.Body
	case KindRefuse:
		w.Author, w.Log, w.Reason = m.Author[:], m.Log[:], m.Reason
	case KindAccept, KindDone, KindClose, KindPing:
	default:
		return nil, fmt.Errorf("encode message: unknown kind %d", m.Kind)
	}
	return w, nil
}

func encodeHeights(h Heights) []wireAuthor {
	out := make([]wireAuthor, 0, len(h))
	for author, logs := range h {
		wa := wireAuthor{Author: author[:], Logs: make([]wireLog, 0, len(logs))}
		for log, height := range logs {
			wa.Logs = append(wa.Logs, wireLog{Log: log[:], Height: height})
		}
		out = append(out, wa)
	}
	return out
}

// DecodeMessage parses a frame body from an untrusted peer. Every error wraps ErrProtocol.
func DecodeMessage(data []byte, limits Limits) (*Message, error) {
	if m, ok := decodeOperationMessage(data); ok {
		return m, nil
	}
	return decodeMessageCBOR(data, limits)
}

// decodeMessageCBOR is DecodeMessage through the cbor library, for every message.
func decodeMessageCBOR(data []byte, limits Limits) (*Message, error) {
	var w wireMessage
	if err := decModeFor(limits.MaxHaveEntries).Unmarshal(data, &w); err != nil {
		return nil, protocolErr(ErrProtocol, "malformed message: %v", err)
	}
	m := &Message{Kind: Kind(w.Kind)}
	// present lists the fields set on the wire; each kind allows exactly its own.
	var present []string
	if w.Topic != nil {
		present = append(present, "topic")
	}
	if w.Reason != "" {
		present = append(present, "reason")
	}
	if w.Have != nil {
		present = append(present, "have")
	}
	if w.Ops != 0 || w.Bytes != 0 {
		present = append(present, "presync")
	}
	if w.Header != nil {
		present = append(present, "header")
	}
	if w.Body != nil {
		present = append(present, "body")
	}
	if w.Author != nil {
		present = append(present, "author")
	}
	if w.Log != nil {
		present = append(present, "log")
	}
	var allowed []string
	switch m.Kind {
	case KindTopic:
		allowed = []string{"topic"}
		if len(w.Topic) != len(m.Topic) {
			return nil, protocolErr(ErrProtocol, "topic is %d bytes, want %d", len(w.Topic), len(m.Topic))
		}
		copy(m.Topic[:], w.Topic)
	case KindReject:
		allowed = []string{"reason"}
		if len(w.Reason) > MaxReasonLength || !utf8.ValidString(w.Reason) {
			return nil, protocolErr(ErrProtocol, "reject reason too long or not UTF-8")
		}
		m.Reason = w.Reason
	case KindHave:
		allowed = []string{"have"}
		h, err := decodeHeights(w.Have, limits.MaxHaveEntries)
		if err != nil {
			return nil, err
		}
		m.Have = h
	case KindPreSync:
		allowed = []string{"presync"}
		m.Ops, m.Bytes = w.Ops, w.Bytes
	case KindOperation, KindLive:
		allowed = []string{"header", "body"}
		if len(w.Header) == 0 {
			return nil, protocolErr(ErrProtocol, "%s without header", m.Kind)
		}
		if len(w.Header) > operation.MaxHeaderSize {
			return nil, protocolErr(ErrProtocol, "header is %d bytes, at most %d allowed", len(w.Header), operation.MaxHeaderSize)
		}
		m.Header = w.Header
		if len(w.Body) > 0 {
			m.Body = w.Body
		}
	case KindRefuse:
		allowed = []string{"author", "log", "reason"}
		if len(w.Author) != operation.PublicKeySize || len(w.Log) != operation.HashSize {
			return nil, protocolErr(ErrProtocol, "Refuse: author is %d bytes, log %d", len(w.Author), len(w.Log))
		}
		if len(w.Reason) > MaxReasonLength || !utf8.ValidString(w.Reason) {
			return nil, protocolErr(ErrProtocol, "refuse reason too long or not UTF-8")
		}
		m.Author, m.Log, m.Reason = operation.PublicKey(w.Author), operation.LogID(w.Log), w.Reason
	case KindAccept, KindDone, KindClose, KindPing:
	default:
		return nil, protocolErr(ErrProtocol, "unknown message kind %d", w.Kind)
	}
	for _, f := range present {
		ok := false
		for _, a := range allowed {
			ok = ok || a == f
		}
		if !ok {
			return nil, protocolErr(ErrProtocol, "%s message carries field %q", m.Kind, f)
		}
	}
	return m, nil
}

func decodeHeights(authors []wireAuthor, maxEntries int) (Heights, error) {
	h := make(Heights, len(authors))
	seen := make(map[operation.PublicKey]struct{}, len(authors))
	entries := 0
	for _, wa := range authors {
		if len(wa.Author) != operation.PublicKeySize {
			return nil, protocolErr(ErrProtocol, "Have: author is %d bytes", len(wa.Author))
		}
		author := operation.PublicKey(wa.Author)
		if _, dup := seen[author]; dup {
			return nil, protocolErr(ErrProtocol, "Have: author %s listed twice", author.Short())
		}
		seen[author] = struct{}{}
		entries += len(wa.Logs)
		if entries > maxEntries {
			return nil, fmt.Errorf("%w: %w: more than %d entries", ErrProtocol, ErrTooManyLogs, maxEntries)
		}
		logs := make(map[operation.LogID]uint64, len(wa.Logs))
		for _, wl := range wa.Logs {
			if len(wl.Log) != operation.HashSize {
				return nil, protocolErr(ErrProtocol, "Have: log id is %d bytes", len(wl.Log))
			}
			log := operation.LogID(wl.Log)
			if _, dup := logs[log]; dup {
				return nil, protocolErr(ErrProtocol, "Have: log %s of %s listed twice", log.Short(), author.Short())
			}
			logs[log] = wl.Height
		}
		if len(logs) > 0 {
			h[author] = logs
		}
	}
	return h, nil
}

// frameHeaderSize is the big-endian uint32 length prefix.
const frameHeaderSize = 4

// Operation and Live messages are nearly all of a catch-up's frames, and their shape is
// fixed: the map {0: kind, 6: header, 7: body}, body left out when there is none. They are
// written and read here by hand, without the cbor library's reflection and its separate
// copies of header and body. appendOperationMessage writes exactly what the library writes
// (core deterministic encoding); decodeOperationMessage accepts only that canonical form
// and leaves everything else, malformed input included, to the library path, which decides
// and words the error. FuzzDecodeMessage holds both paths to the same answers.

// The operation message's map keys, and its smallest body: an empty body is left out, like
// a missing one.
const (
	keyKind      = 0
	keyHeader    = 6
	keyBody      = 7
	minBodyField = 1
)

func isOperationMessage(m *Message) bool {
	return (m.Kind == KindOperation || m.Kind == KindLive) && len(m.Header) > 0
}

// appendOperationMessage appends m's encoding; m must satisfy isOperationMessage.
func appendOperationMessage(out []byte, m *Message) []byte {
	fields := uint64(2)
	if len(m.Body) >= minBodyField {
		fields++
	}
	out = cborhead.AppendHead(out, cborhead.Map, fields)
	out = cborhead.AppendHead(out, cborhead.Uint, keyKind)
	out = cborhead.AppendHead(out, cborhead.Uint, uint64(m.Kind))
	out = cborhead.AppendHead(out, cborhead.Uint, keyHeader)
	out = cborhead.AppendBytes(out, m.Header)
	if len(m.Body) >= minBodyField {
		out = cborhead.AppendHead(out, cborhead.Uint, keyBody)
		out = cborhead.AppendBytes(out, m.Body)
	}
	return out
}

// decodeOperationMessage decodes data if it is an Operation or Live message in canonical
// form with a header of allowed size; header and body share one new allocation.
func decodeOperationMessage(data []byte) (*Message, bool) {
	r := cborhead.Reader{Data: data}
	fields, _ := r.Head(cborhead.Map)
	k0, _ := r.Head(cborhead.Uint)
	kind, _ := r.Head(cborhead.Uint)
	k6, _ := r.Head(cborhead.Uint)
	header, _ := r.Cut()
	var body []byte
	if fields == 3 {
		k7, _ := r.Head(cborhead.Uint)
		body, _ = r.Cut()
		if k7 != keyBody || len(body) < minBodyField {
			return nil, false
		}
	}
	if r.Failed || len(r.Data) != 0 || (fields != 2 && fields != 3) || k0 != keyKind || k6 != keyHeader ||
		(kind != uint64(KindOperation) && kind != uint64(KindLive)) ||
		len(header) == 0 || len(header) > operation.MaxHeaderSize {
		return nil, false
	}
	buf := make([]byte, len(header)+len(body))
	copy(buf, header)
	copy(buf[len(header):], body)
	m := &Message{Kind: Kind(kind), Header: buf[:len(header):len(header)]}
	if body != nil {
		m.Body = buf[len(header):]
	}
	return m, true
}

// frameBuffers hold frames while writeFrame builds them. A catch-up sends one frame per
// operation, and a fresh encoding plus a fresh frame for each was a fifth of the bytes a
// sender allocated. Buffers that grew past maxPooledFrame (a large operation) are dropped
// instead of kept.
var frameBuffers = stdsync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledFrame = 64 << 10

// msgBufEncMode is msgEncMode encoding into a caller's buffer.
var msgBufEncMode = msgEncMode.(cbor.UserBufferEncMode)

// writeFrame encodes m and writes it with its length prefix in one Write, so an unbuffered
// stream sends it as one transport frame. It returns the bytes written.
func writeFrame(w io.Writer, m *Message) (int, error) {
	buf := frameBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledFrame {
			frameBuffers.Put(buf)
		}
	}()
	buf.Reset()
	var length [frameHeaderSize]byte
	buf.Write(length[:]) // filled in below
	if isOperationMessage(m) {
		buf.Write(appendOperationMessage(buf.AvailableBuffer(), m))
	} else {
		wire, err := wireOf(m)
		if err != nil {
			return 0, err
		}
		if err := msgBufEncMode.MarshalToBuffer(wire, buf); err != nil {
			return 0, err
		}
	}
	frame := buf.Bytes()
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-frameHeaderSize))
	return w.Write(frame)
}

// readFrame reads one frame of at most maxSize body bytes into buf (grown as needed) and
// decodes it. The decoded message does not alias buf.
func readFrame(r io.Reader, maxSize int, buf *[]byte, limits Limits) (*Message, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxSize) {
		return nil, protocolErr(ErrFrameTooLarge, "%d bytes, at most %d allowed", n, maxSize)
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	body := (*buf)[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return DecodeMessage(body, limits)
}
