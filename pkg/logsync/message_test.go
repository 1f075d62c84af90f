package logsync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/pandanet/pandanet/pkg/operation"
)

func sampleMessages() []*Message {
	return []*Message{
		{Kind: KindTopic, Topic: testTopic},
		{Kind: KindAccept},
		{Kind: KindReject, Reason: ReasonNotSubscribed},
		{Kind: KindHave, Have: Heights{}},
		{Kind: KindHave, Have: Heights{{1}: {{2}: 3, {4}: 0}, {5}: {{6}: 1 << 40}}},
		{Kind: KindPreSync, Ops: 3, Bytes: 300},
		{Kind: KindPreSync},
		{Kind: KindOperation, Header: []byte{0x88, 1}, Body: []byte("body")},
		{Kind: KindOperation, Header: []byte{0x88, 1}},
		{Kind: KindDone},
		{Kind: KindLive, Header: []byte{0x88, 2}, Body: []byte("live")},
		{Kind: KindClose},
		{Kind: KindPing},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	// A frame larger than the pooled buffers keep, between small ones that reuse them.
	large := &Message{Kind: KindOperation, Header: []byte{0x88, 3}, Body: bytes.Repeat([]byte("x"), 2*maxPooledFrame)}
	for _, m := range append(sampleMessages(), large, sampleMessages()[0]) {
		var buf bytes.Buffer
		if _, err := writeFrame(&buf, m); err != nil {
			t.Fatalf("%s: %v", m.Kind, err)
		}
		// The frame is the length prefix and EncodeMessage's bytes, whichever buffer it
		// was built in (Have lists its logs in map order, so only its length is fixed).
		enc, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		want := binary.BigEndian.AppendUint32(nil, uint32(len(enc)))
		if m.Kind == KindHave {
			want, enc = want[:frameHeaderSize], buf.Bytes()[frameHeaderSize:]
		}
		if !bytes.Equal(buf.Bytes(), append(want, enc...)) {
			t.Fatalf("%s: frame is %x, want the prefix %x and the encoding", m.Kind, buf.Bytes()[:min(buf.Len(), 16)], want)
		}
		var scratch []byte
		got, err := readFrame(&buf, DefaultLimits.MaxFrameSize, &scratch, DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", m.Kind, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%s: round trip gave %+v, want %+v", m.Kind, got, m)
		}
	}
}

// Decoded messages must not alias the frame buffer, which is reused for the next frame while
// the sink may still hold the previous operation.
func TestDecodedMessageDoesNotAliasBuffer(t *testing.T) {
	body, err := EncodeMessage(&Message{Kind: KindOperation, Header: []byte("header"), Body: []byte("body")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMessage(body, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 0
	}
	if string(m.Header) != "header" || string(m.Body) != "body" {
		t.Fatalf("decoded message changed with its buffer: %q %q", m.Header, m.Body)
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		"not cbor":              {0xff},
		"not a map":             enc([]int{1, 2}),
		"unknown kind":          enc(map[int]any{0: 42}),
		"unknown field":         enc(map[int]any{0: int(KindDone), 9: 1}),
		"field of another kind": enc(map[int]any{0: int(KindDone), 6: []byte{1}}),
		"short topic":           enc(map[int]any{0: int(KindTopic), 1: []byte{1, 2}}),
		"operation no header":   enc(map[int]any{0: int(KindOperation), 7: []byte{1}}),
		"oversized header":      enc(map[int]any{0: int(KindOperation), 6: make([]byte, operation.MaxHeaderSize+1)}),
		"short author":          enc(map[int]any{0: int(KindHave), 3: []any{[]any{[]byte{1}, []any{}}}}),
		"duplicate author": enc(map[int]any{0: int(KindHave), 3: []any{
			[]any{make([]byte, 32), []any{}}, []any{make([]byte, 32), []any{}}}}),
		"duplicate log": enc(map[int]any{0: int(KindHave), 3: []any{
			[]any{make([]byte, 32), []any{[]any{make([]byte, 32), 1}, []any{make([]byte, 32), 2}}}}}),
		"long reason":       enc(map[int]any{0: int(KindReject), 2: string(make([]byte, MaxReasonLength+1))}),
		"indefinite length": {0xbf, 0x00, 0x06, 0xff},
		"tagged":            {0xa1, 0x00, 0xc1, 0x06},
		"duplicate key":     {0xa2, 0x00, 0x06, 0x00, 0x06},
	}
	for name, data := range cases {
		if _, err := DecodeMessage(data, DefaultLimits); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: got %v, want ErrProtocol", name, err)
		}
	}
}

func TestHaveLimit(t *testing.T) {
	h := Heights{}
	for i := range 5 {
		h[operation.PublicKey{byte(i)}] = map[operation.LogID]uint64{{1}: 1}
	}
	body, err := EncodeMessage(&Message{Kind: KindHave, Have: h})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeMessage(body, Limits{MaxFrameSize: 1 << 20, MaxHaveEntries: 5}); err != nil {
		t.Fatalf("5 entries at limit 5: %v", err)
	}
	_, err = DecodeMessage(body, Limits{MaxFrameSize: 1 << 20, MaxHaveEntries: 4})
	if !errors.Is(err, ErrTooManyLogs) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("5 entries at limit 4: %v", err)
	}
	// The Have frame limit fits MaxHaveEntries logs with one author each.
	big := Heights{}
	for i := range DefaultLimits.MaxHaveEntries {
		big[operation.PublicKey{byte(i), byte(i >> 8), byte(i >> 16)}] = map[operation.LogID]uint64{{0xff}: 1 << 32}
	}
	body, err = EncodeMessage(&Message{Kind: KindHave, Have: big})
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > DefaultLimits.maxHaveFrame() {
		t.Fatalf("a full Have is %d bytes, frame limit %d", len(body), DefaultLimits.maxHaveFrame())
	}
}

func TestRemoteNeeds(t *testing.T) {
	a, b, c := operation.PublicKey{1}, operation.PublicKey{2}, operation.PublicKey{3}
	l := operation.LogID{7}
	local := Heights{a: {l: 10}, b: {l: 5}, c: {l: 3}}
	remote := Heights{a: {l: 4}, b: {l: 9}, c: {{8}: 100}, {9}: {l: 1}}
	got := remoteNeeds(local, remote)
	want := []logRange{{Author: a, Log: l, From: 5, To: 10}, {Author: c, Log: l, From: 0, To: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// FuzzDecodeMessage: the decoder must never panic, and what it accepts must re-encode to a
// message that decodes to the same value.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := EncodeMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x00, 0x06})
	for _, m := range operationMessages() {
		f.Add(appendOperationMessage(nil, m))
	}
	f.Add([]byte{0xa2, 0x00, 0x05, 0x06, 0x58, 0x01, 0x88})       // header length not in shortest form
	f.Add([]byte{0xa3, 0x00, 0x07, 0x06, 0x41, 0x88, 0x07, 0x40}) // empty body present
	f.Add([]byte{0xa2, 0x00, 0x19, 0x01, 0x05, 0x06, 0x41, 0x88}) // kind 261, which is 5 as a byte
	f.Add([]byte{0xa2, 0x00, 0x18, 0x05, 0x06, 0x41, 0x88})       // kind not in shortest form
	f.Fuzz(func(t *testing.T, data []byte) {
		limits := Limits{MaxFrameSize: 1 << 20, MaxHaveEntries: 64}
		// The hand-written path for Operation and Live messages accepts only what the
		// library path accepts too, and decodes it to the same message.
		if fast, ok := decodeOperationMessage(data); ok {
			slow, err := decodeMessageCBOR(data, limits)
			if err != nil {
				t.Fatalf("fast path accepted %x, the library path says %v", data, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast path decoded %+v, the library path %+v", fast, slow)
			}
			if again := appendOperationMessage(nil, fast); !bytes.Equal(again, data) {
				t.Fatalf("fast path accepted %x, which re-encodes to %x", data, again)
			}
		}
		m, err := DecodeMessage(data, limits)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decode error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		again, err := EncodeMessage(m)
		if err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
		m2, err := DecodeMessage(again, limits)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decoded %+v, want %+v", m2, m)
		}
	})
}

// operationMessages covers every length form of the header and body byte strings.
func operationMessages() []*Message {
	var ms []*Message
	for _, kind := range []Kind{KindOperation, KindLive} {
		for _, h := range []int{1, 23, 24, 255, 256, operation.MaxHeaderSize} {
			for _, b := range []int{-1, 0, 1, 23, 24, 255, 256, 65535, 65536, 70000} {
				m := &Message{Kind: kind, Header: bytes.Repeat([]byte{0x88}, h)}
				if b >= 0 {
					m.Body = bytes.Repeat([]byte{byte(b)}, b)
				}
				ms = append(ms, m)
			}
		}
	}
	return ms
}

// The hand-written encoding of Operation and Live messages is byte for byte the cbor
// library's, and decodes to the same message on both paths.
func TestOperationMessageMatchesTheLibrary(t *testing.T) {
	for _, m := range operationMessages() {
		name := fmt.Sprintf("%s header %d body %d", m.Kind, len(m.Header), len(m.Body))
		if !isOperationMessage(m) {
			t.Fatalf("%s: not taken by the fast path", name)
		}
		want, err := EncodeMessage(m) // the library
		if err != nil {
			t.Fatal(err)
		}
		got := appendOperationMessage(nil, m)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: encoded %x..., the library %x...", name, got[:min(len(got), 12)], want[:min(len(want), 12)])
		}
		fast, ok := decodeOperationMessage(got)
		if !ok {
			t.Fatalf("%s: the fast path does not decode its own encoding", name)
		}
		slow, err := decodeMessageCBOR(got, DefaultLimits)
		if err != nil {
			t.Fatalf("%s: the library path: %v", name, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%s: fast path %+v, library path %+v", name, fast, slow)
		}
	}
}
