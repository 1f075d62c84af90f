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

// BenchmarkDecodeVerify decodes and verifies one 1 KiB operation over and over: an author
// the node already knows, so after the first keyTableAfter checks the key table does the
// verification; verifying without it pays one full verification every time (the
// make bench bound, BenchmarkVerifyStandard). ops/s is per core.
func BenchmarkDecodeVerify(b *testing.B) {
	key, _ := GenerateKey()
	op, _ := Sign(key, Draft{LogID: HashOf([]byte("bench")), Body: make([]byte, 1024)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(op.HeaderBytes, op.Body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkVerifyStandard(b *testing.B) {
	key, _ := GenerateKey()
	op, _ := Sign(key, Draft{LogID: HashOf([]byte("bench")), Body: make([]byte, 1024)})
	signingBytes := op.Header.SigningBytes()
	for b.Loop() {
		if !op.Author().VerifyStandard(signingBytes, op.Header.Signature) {
			b.Fatal("rejected")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
