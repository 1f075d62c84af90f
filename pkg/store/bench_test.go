package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
)

// BenchmarkWrite measures the store's write path alone: 1 KiB operations of 10 authors,
// in seq order, committed in batches of 1,000 (the pipeline writer's batch size) into a
// file-backed store with synchronous=FULL. b.N is the number of operations, so allocs/op
// is the store's allocations per received operation.
func BenchmarkWrite(b *testing.B) { benchWrite(b, 1000) }

// BenchmarkWriteSmallBatches is BenchmarkWrite with batches of 100 operations, the size a
// catch-up's commits have (the writer commits whatever arrived during its last commit).
// Small batches show what each operation costs beyond its own row: the index pages it
// dirties are written whole at every commit.
func BenchmarkWriteSmallBatches(b *testing.B) { benchWrite(b, 100) }

func benchWrite(b *testing.B, batchSize int) {
	all := benchInserts(b, b.N)
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(1024)
	b.ReportAllocs()
	cpu0, written0 := testutil.ProcessCPU(), testutil.ProcessWrittenBytes()
	b.ResetTimer()
	insertInBatches(b, s, all, batchSize)
	b.StopTimer()
	cpu, written := testutil.ProcessCPU()-cpu0, testutil.ProcessWrittenBytes()-written0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	// CPU per operation moves less than the wall time on a shared machine, and the bytes
	// the process wrote to the disk (WAL frames at commit, pages again at checkpoint) are
	// what the schema decides.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(written)/float64(b.N), "written-B/op")
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

// insertInBatches writes all in transactions of batchSize operations and fails unless every
// one is inserted.
func insertInBatches(b *testing.B, s *Store, all []Insert, batchSize int) {
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
