package operation

import (
	"testing"
)

// BenchmarkSign measures creating and signing a Node operation with a 1 KiB body.
func BenchmarkSign(b *testing.B) {
	key, _ := GenerateKey()
	body := make([]byte, 1024)
	logID := HashOf([]byte("bench"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(key, Draft{SeqNum: 1, Backlink: logID, LogID: logID, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeVerify measures decode + strict verify + payload hash of a 1 KiB operation,
// the CPU part of ingest.
func BenchmarkDecodeVerify(b *testing.B) {
	key, _ := GenerateKey()
	op, _ := Sign(key, Draft{LogID: HashOf([]byte("bench")), Body: make([]byte, 1024)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(op.HeaderBytes, op.Body); err != nil {
			b.Fatal(err)
		}
	}
}
