package logsync

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/pipeline"
	"github.com/pandanet/pandanet/pkg/store"
)

const (
	benchOps     = 100_000
	benchAuthors = 10
	benchBody    = 1024
	// benchDeadline bounds the wait for the receiver: a stalled session fails the
	// benchmark instead of hanging it until the test binary's timeout.
	benchDeadline = 10 * time.Minute
)

// sqliteStore adapts *store.Store to Store, as pkg/node does.
type sqliteStore struct{ s *store.Store }

func (a sqliteStore) LogHeights(ctx context.Context, topic operation.Topic) (Heights, error) {
	h, err := a.s.LogHeights(ctx, topic)
	return Heights(h), err
}

func (a sqliteStore) LogRange(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64, fn func(header, body []byte) error) error {
	return a.s.LogRangeRaw(ctx, author, log, from, to, fn)
}

func (a sqliteStore) LogSize(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64) (uint64, uint64, error) {
	sz, err := a.s.LogSize(ctx, author, log, from, to)
	return uint64(sz.Ops), uint64(sz.Bytes), err
}

// pipelineSink hands every received operation to the real pipeline without waiting for it
// (as pkg/node's sink does); the pipeline's Observe hook counts what got stored.
type pipelineSink struct {
	p *pipeline.Pipeline
}

func (k pipelineSink) Receive(ctx context.Context, topic operation.Topic, header, body []byte, _ Source) error {
	_, err := k.p.Submit(ctx, pipeline.Input{Topic: topic, Header: header, Body: body})
	return err
}

// sourceSink is the sending side's sink: in this benchmark it must never receive anything.
type sourceSink struct{}

func (sourceSink) Receive(context.Context, operation.Topic, []byte, []byte, Source) error {
	return errors.New("the benchmark's source received an operation")
}

// benchSQLiteSource writes the benchmark's 100,000 operations of benchAuthors logs into a
// file-backed store (untimed; signing takes a while).
func benchSQLiteSource(b *testing.B, path string) *store.Store {
	s, err := store.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	for range benchAuthors {
		ops := makeLog(b, mustKey(b), testTopic, 0, benchOps/benchAuthors, benchBody)
		for len(ops) > 0 {
			n := min(1000, len(ops))
			batch := make([]store.Insert, n)
			for i, op := range ops[:n] {
				batch[i] = store.Insert{Topic: testTopic, Op: op}
			}
			if _, err := s.InsertBatch(b.Context(), batch); err != nil {
				b.Fatal(err)
			}
			ops = ops[n:]
		}
	}
	return s
}

// BenchmarkSync100k syncs 100,000 operations with 1 KiB bodies from one sync manager to a
// fresh one over libp2p on loopback. Both sides use file-backed SQLite stores
// (synchronous=FULL); the receiver feeds every operation through the real pipeline
// (parallel strict verification, sequencing, batched durable writes). Timed from adding the
// peer (the connection is established before) until the receiver's pipeline stored the
// 100,000th operation.
func BenchmarkSync100k(b *testing.B) {
	src := benchSQLiteSource(b, filepath.Join(b.TempDir(), "source.sqlite"))
	defer src.Close()
	b.ResetTimer()
	var elapsed time.Duration
	for i := range b.N {
		b.StopTimer()
		dst, err := store.Open(b.Context(), filepath.Join(b.TempDir(), fmt.Sprintf("fresh-%d.sqlite", i)))
		if err != nil {
			b.Fatal(err)
		}
		var stored atomic.Int64
		var failed atomic.Pointer[pipeline.Result]
		p, err := pipeline.New(pipeline.Config{Store: dst, Observe: func(r pipeline.Result) {
			if r.Status == pipeline.Stored {
				stored.Add(1)
			} else {
				failed.CompareAndSwap(nil, &r)
			}
		}})
		if err != nil {
			b.Fatal(err)
		}
		var events eventLog
		newManager := func(s *store.Store, sink Sink) (host.Host, *Manager) {
			h := newHost(b, nil)
			m, err := NewManager(h, Config{Protocol: testProto, Store: sqliteStore{s}, Sink: sink, OnEvent: events.add, CatchUpOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Subscribe(testTopic); err != nil {
				b.Fatal(err)
			}
			return h, m
		}
		ha, ma := newManager(src, sourceSink{})
		hb, mb := newManager(dst, pipelineSink{p})
		ha.Peerstore().AddAddrs(hb.ID(), hb.Addrs(), peerstore.PermanentAddrTTL)
		// Connect first so the measurement covers sync, not the TCP/noise/yamux handshake.
		if err := ha.Connect(b.Context(), hb.Peerstore().PeerInfo(hb.ID())); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := ma.AddPeer(testTopic, hb.ID()); err != nil {
			b.Fatal(err)
		}
		deadline := time.NewTimer(benchDeadline)
		tick := time.NewTicker(time.Millisecond)
		for stored.Load() < benchOps {
			select {
			case <-deadline.C:
				b.Fatalf("receiver stored %d of %d operations after %v", stored.Load(), benchOps, benchDeadline)
			case <-tick.C:
			}
			if r := failed.Load(); r != nil {
				b.Fatalf("operation %s: %v at %v: %v", r.Hash.Short(), r.Status, r.Stage, r.Err)
			}
			if f := findEvent[SessionFailed](events.all()); len(f) > 0 {
				b.Fatalf("session failed: %v", f[0].Err)
			}
		}
		deadline.Stop()
		tick.Stop()
		elapsed += time.Since(start)
		b.StopTimer()
		for _, c := range []interface{ Close() error }{ma, mb, ha, hb, p, dst} {
			if err := c.Close(); err != nil && !errors.Is(err, context.Canceled) {
				b.Error(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(benchOps*b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(benchOps*b.N*(benchBody+operation.MaxHeaderSize/4))/elapsed.Seconds()/(1<<20), "approx-MiB/s")
}
