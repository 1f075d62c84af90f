package cborhead

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Every argument size round-trips and is encoded as the cbor library encodes it; a longer
// form of the same argument, which the library would also read, is refused.
func TestHeadRoundTripsAndRefusesLongerForms(t *testing.T) {
	for _, v := range []uint64{0, 23, 24, math.MaxUint8, math.MaxUint8 + 1, math.MaxUint16, math.MaxUint16 + 1,
		math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		enc := AppendHead(nil, Uint, v)
		want, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("%d: encoded %x, the cbor library %x", v, enc, want)
		}
		r := Reader{Data: enc}
		if got, ok := r.Head(Uint); !ok || got != v || len(r.Data) != 0 {
			t.Fatalf("%d: read back %d, %v, %d bytes left", v, got, ok, len(r.Data))
		}
		wrongType := Reader{Data: enc}
		if _, ok := wrongType.Head(Bytes); ok {
			t.Fatalf("%d: read as a byte string head", v)
		}
		if v > math.MaxUint32 {
			continue
		}
		longer := binary.BigEndian.AppendUint64([]byte{Uint | 27}, v)
		r = Reader{Data: longer}
		if _, ok := r.Head(Uint); ok || !r.Failed {
			t.Fatalf("%d in 8 bytes was read", v)
		}
	}
}

// Cut returns the byte string without copying, Read copies one of exactly the given size,
// and after a failure nothing more is read.
func TestByteStrings(t *testing.T) {
	enc := AppendBytes(AppendBytes(nil, []byte("header")), bytes.Repeat([]byte{7}, 300))
	r := Reader{Data: enc}
	b, ok := r.Cut()
	if !ok || string(b) != "header" || &b[0] != &enc[1] {
		t.Fatalf("Cut gave %q, %v", b, ok)
	}
	if dst := make([]byte, 299); r.Read(dst) || !r.Failed {
		t.Fatal("Read took a 300-byte string into 299 bytes")
	}
	if _, ok := r.Cut(); ok {
		t.Fatal("a reader read on after a failure")
	}
	r = Reader{Data: enc[:5]}
	if _, ok := r.Cut(); ok {
		t.Fatal("Cut read past the end of the data")
	}
}
