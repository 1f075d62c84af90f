package operation

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// FuzzDecode feeds arbitrary header and body bytes to the decoder: it must never panic, and
// whatever it accepts must re-encode to exactly the input and verify again.
func FuzzDecode(f *testing.F) {
	for _, c := range coreFixtures {
		f.Add(mustHex(f, c.header), []byte(c.body))
	}
	key, _ := GenerateKey()
	op, _ := Sign(key, Draft{LogID: HashOf([]byte("seed")), Body: []byte("seed body"), Prune: true})
	f.Add(op.HeaderBytes, op.Body)
	f.Add([]byte{0x80}, []byte(nil))
	f.Fuzz(func(t *testing.T, header, body []byte) {
		op, err := Decode(header, body)
		if err != nil {
			return
		}
		if !bytes.Equal(op.Header.Encode(), header) {
			t.Fatalf("accepted header does not re-encode to input")
		}
		if op.Hash != HashOf(header) {
			t.Fatalf("hash mismatch")
		}
		if err := op.Validate(); err != nil {
			t.Fatalf("accepted operation fails validation: %v", err)
		}
	})
}

// FuzzDecodeHeader checks the header decoder alone against panics and round-trip errors,
// that the signing bytes Decode cuts out of an accepted header are exactly the ones
// encoding it without the signature gives, and that the hand-written fast path and the
// cbor library's decoding agree: the same header or the same error for every input.
func FuzzDecodeHeader(f *testing.F) {
	for _, c := range coreFixtures {
		f.Add(mustHex(f, c.header))
	}
	key, _ := GenerateKey()
	first, _ := Sign(key, Draft{LogID: HashOf([]byte("seed"))})
	second, _ := Sign(key, Draft{SeqNum: 1, Backlink: first.Hash, Body: bytes.Repeat([]byte{7}, 300), NoExtensions: true})
	third, _ := Sign(key, Draft{SeqNum: 70000, Backlink: second.Hash, Prune: true, Timestamp: 1 << 40, Body: []byte("x")})
	for _, op := range []*Operation{first, second, third} {
		f.Add(op.HeaderBytes)
	}
	// Near misses of the fast path's shape: an unknown extension field, a bad prune
	// value, a non-shortest integer, a wrong extensions version.
	f.Add(append(append([]byte{}, first.HeaderBytes[:len(first.HeaderBytes)-1]...), 0xf6))
	f.Add(mustHex(f, "8401582000000000000000000000000000000000000000000000000000000000000000005840"+strings.Repeat("00", 64)+"1800"))
	withUnknown := *first.Header.Extensions
	withUnknown.Unknown = [][]byte{{0x01}}
	unknownHeader := first.Header
	unknownHeader.Extensions = &withUnknown
	f.Add(unknownHeader.Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHeader(data)
		if len(data) <= MaxHeaderSize {
			slow, slowErr := decodeHeaderCBOR(data)
			switch {
			case (err == nil) != (slowErr == nil):
				t.Fatalf("DecodeHeader error %v, through the cbor library %v", err, slowErr)
			case err != nil && err.Error() != slowErr.Error():
				t.Fatalf("DecodeHeader error %q, through the cbor library %q", err, slowErr)
			case err == nil && !reflect.DeepEqual(h, slow):
				t.Fatalf("DecodeHeader read %+v, the cbor library %+v", h, slow)
			}
		}
		if err != nil {
			return
		}
		if !bytes.Equal(h.Encode(), data) {
			t.Fatalf("round trip differs")
		}
		if got, want := signingBytesOfCanonical(data, h), h.SigningBytes(); !bytes.Equal(got, want) {
			t.Fatalf("signing bytes cut from the header %x, encoded %x", got, want)
		}
	})
}

// encodeReflect is the header encoding as the cbor library produces it from the fields
// (what Header.encode did before it appended the bytes itself): the reference for
// FuzzEncodeMatchesCBOR.
func encodeReflect(h *Header, withSignature bool) []byte {
	fields := make([]any, 0, 8)
	fields = append(fields, uint64(h.Version), h.PublicKey[:])
	if withSignature {
		fields = append(fields, h.Signature[:])
	}
	fields = append(fields, h.PayloadSize)
	if h.PayloadSize > 0 {
		fields = append(fields, h.PayloadHash[:])
	}
	fields = append(fields, h.SeqNum)
	if h.SeqNum > 0 {
		fields = append(fields, h.Backlink[:])
	}
	if e := h.Extensions; e != nil {
		ext := []any{uint64(extensionsVersion), uint64(extensionsBasic), e.LogID[:], e.Timestamp, e.Prune}
		for _, raw := range e.Unknown {
			ext = append(ext, cbor.RawMessage(raw))
		}
		fields = append(fields, ext)
	}
	out, err := encMode.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return out
}

// FuzzEncodeMatchesCBOR: the hand-written header encoder gives exactly the cbor library's
// canonical encoding of the same fields, with and without the signature, for every integer
// width (the seeds cover each boundary of CBOR's shortest-form heads).
func FuzzEncodeMatchesCBOR(f *testing.F) {
	for _, v := range []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		f.Add(uint16(v), v, v, v, true, true, false, byte(7))
		f.Add(uint16(v>>1), v/3, v, v^1, false, false, true, byte(0))
	}
	f.Fuzz(func(t *testing.T, version uint16, payloadSize, seq, ts uint64, ext, prune, unknown bool, fill byte) {
		h := Header{Version: version, PayloadSize: payloadSize, SeqNum: seq}
		for i := range h.PublicKey {
			h.PublicKey[i] = fill + byte(i)
		}
		for i := range h.Signature {
			h.Signature[i] = fill ^ byte(i)
		}
		h.PayloadHash, h.Backlink = HashOf([]byte{fill}), HashOf([]byte{fill, 1})
		if ext {
			h.Extensions = &Extensions{LogID: HashOf([]byte{fill, 2}), Timestamp: ts, Prune: prune}
			if unknown {
				h.Extensions.Unknown = [][]byte{{0x18, fill | 24}, {0x41, fill}}
			}
		}
		for _, sig := range []bool{true, false} {
			if got, want := h.encode(sig), encodeReflect(&h, sig); !bytes.Equal(got, want) {
				t.Fatalf("encode(signature=%v) = %x, cbor library %x", sig, got, want)
			}
		}
	})
}
