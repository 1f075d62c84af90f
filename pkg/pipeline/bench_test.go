package pipeline

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// BenchmarkIngest measures raw 1 KiB operations from many authors going through decode,
// strict signature verification and batched storage into a file-backed store
// (synchronous=FULL), as sync sessions would feed them: one submitter per topic.
func BenchmarkIngest(b *testing.B) {
	const topics, authorsPerTopic = 4, 16
	ctx := context.Background()
	// Pre-sign the operations outside the timer: log i of every author, round-robin.
	type input struct {
		topic operation.Topic
		op    *operation.Operation
	}
	perTopic := make([][]input, topics)
	for t := 0; t < topics; t++ {
		topic := operation.Topic(operation.HashOf([]byte{byte(t)}))
		n := b.N/topics + 1
		keys := make([]operation.PrivateKey, authorsPerTopic)
		prev := make([]*operation.Operation, authorsPerTopic)
		for i := range keys {
			keys[i] = newKey(b)
		}
		for i := 0; i < n; i++ {
			a := i % authorsPerTopic
			d := operation.Draft{LogID: operation.LogIDFromTopic(topic), Body: make([]byte, 1024)}
			d.Body[0], d.Body[1] = byte(i), byte(i>>8)
			if prev[a] != nil {
				d.SeqNum, d.Backlink = prev[a].SeqNum()+1, prev[a].Hash
			}
			op, err := operation.Sign(keys[a], d)
			if err != nil {
				b.Fatal(err)
			}
			prev[a] = op
			perTopic[t] = append(perTopic[t], input{topic, op})
		}
	}
	s, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, err := New(Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.SetBytes(1024)
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU()
	start := time.Now()
	var wg sync.WaitGroup
	var failed sync.Once
	for t := 0; t < topics; t++ {
		wg.Add(1)
		go func(in []input) {
			defer wg.Done()
			tickets := make([]*Ticket, 0, len(in))
			for _, x := range in {
				tk, err := p.Submit(ctx, Input{Topic: x.topic, Header: x.op.HeaderBytes, Body: x.op.Body})
				if err != nil {
					failed.Do(func() { b.Error(err) })
					return
				}
				tickets = append(tickets, tk)
			}
			for _, tk := range tickets {
				<-tk.Done()
				if r := tk.Result(); r.Status != Stored {
					failed.Do(func() { b.Errorf("%v: %v", r.Status, r.Err) })
				}
			}
		}(perTopic[t])
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := testutil.ProcessCPU() - cpu0
	b.StopTimer()
	total := 0
	for _, in := range perTopic {
		total += len(in)
	}
	st := p.Stats()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "ops/s")
	// CPU of the whole process per operation and the cores it kept busy: whether ingest is
	// bound by CPU (both cores busy) or by the serial writer and its fsyncs.
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-us/op")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores-busy")
	if st.Batches > 0 {
		b.ReportMetric(float64(st.BatchedOps)/float64(st.Batches), "ops/batch")
	}
}
