package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

// BenchmarkWrite measures the store's write path alone: 1 KiB operations of 10 authors,
// in seq order, committed in batches of 1,000 (the pipeline writer's batch size) into a
// file-backed store with synchronous=FULL. b.N is the number of operations, so allocs/op
// is the store's allocations per received operation.
func BenchmarkWrite(b *testing.B) {
	const authors, batchSize = 10, 1000
	ctx := context.Background()
	topic := operation.Topic(operation.HashOf([]byte("bench")))
	body := func(i int) []byte { return make([]byte, 1024) }
	per := b.N/authors + 1
	var all []Insert
	logs := make([][]*operation.Operation, authors)
	for a := range logs {
		logs[a] = chain(b, newKey(b), topic, nil, per, body)
	}
	for i := 0; i < per; i++ { // interleave the authors, as the pipeline's batches do
		for a := range logs {
			all = append(all, Insert{Topic: topic, Op: logs[a][i]})
		}
	}
	all = all[:b.N]
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for len(all) > 0 {
		n := min(batchSize, len(all))
		res, err := s.InsertBatch(ctx, all[:n])
		if err != nil {
			b.Fatal(err)
		}
		for i, r := range res {
			if r.Outcome != Inserted {
				b.Fatalf("op %d: %v %v", i, r.Outcome, r.Err)
			}
		}
		all = all[n:]
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
