package operation

import (
	"bytes"
	"testing"
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
// and that the signing bytes Decode cuts out of an accepted header are exactly the ones
// encoding it without the signature gives.
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
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHeader(data)
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
