package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCreateSign measures operations created, signed and queued per second through
// Publisher.Publish (file store, synchronous=FULL); the timer includes waiting until every
// published operation is stored.
func BenchmarkCreateSign(b *testing.B) {
	ctx := context.Background()
	n, err := New(ctx, WithDatabase(filepath.Join(b.TempDir(), "bench.sqlite")))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range sub.Events() {
		}
	}()
	msg := make([]byte, 1024)
	pending := make([]*Pending, 0, b.N)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		msg[0], msg[1] = byte(i), byte(i>>8)
		p, err := pub.Publish(ctx, msg)
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}
