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
	all := benchInserts(b, b.N)
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	insertInBatches(b, s, all)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// benchInserts signs n 1 KiB operations of 10 authors in one topic, in seq order, with the
// authors interleaved as the pipeline's batches interleave them.
func benchInserts(b *testing.B, n int) []Insert {
	const authors = 10
	topic := operation.Topic(operation.HashOf([]byte("bench")))
	per := n/authors + 1
	logs := make([][]*operation.Operation, authors)
	for a := range logs {
		logs[a] = chain(b, newKey(b), topic, nil, per, func(int) []byte { return make([]byte, 1024) })
	}
	var all []Insert
	for i := 0; i < per; i++ {
		for a := range logs {
			all = append(all, Insert{Topic: topic, Op: logs[a][i]})
		}
	}
	return all[:n]
}

// insertInBatches writes all in transactions of 1,000 operations (the pipeline writer's
// batch size) and fails unless every one is inserted.
func insertInBatches(b *testing.B, s *Store, all []Insert) {
	const batchSize = 1000
	for len(all) > 0 {
		n := min(batchSize, len(all))
		res, err := s.InsertBatch(context.Background(), all[:n])
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
}
