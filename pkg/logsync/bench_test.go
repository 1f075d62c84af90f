package logsync

import (
	stdsync "sync"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
)

const (
	benchOps     = 100_000
	benchAuthors = 10
	benchBody    = 1024
)

var (
	benchOnce   stdsync.Once
	benchSource *memStore
)

// benchStore signs the benchmark's operations once per process (it takes a few seconds).
func benchStore(b *testing.B) *memStore {
	benchOnce.Do(func() {
		s := newMemStore()
		for range benchAuthors {
			fill(s, testTopic, makeLog(b, mustKey(b), testTopic, 0, benchOps/benchAuthors, benchBody))
		}
		benchSource = s
	})
	return benchSource
}

// BenchmarkSync100k syncs 100,000 operations with 1 KiB bodies from one manager to a fresh one
// over libp2p on loopback. The receiving sink verifies every operation with operation.Decode
// (signature, payload hash) and its sequence before storing it in memory, so the figure
// includes verification.
func BenchmarkSync100k(b *testing.B) {
	src := benchStore(b)
	b.ResetTimer()
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		a := newTestNode(b, nil, Config{CatchUpOnly: true})
		a.store = src
		a.m.cfg.Store = src
		fresh := newTestNode(b, nil, Config{CatchUpOnly: true})
		for _, n := range []*testNode{a, fresh} {
			n.mustSubscribe(b, testTopic)
		}
		know(a, fresh)
		// Connect first so the measurement covers sync, not the TCP/noise/yamux handshake.
		if err := a.h.Connect(b.Context(), fresh.h.Peerstore().PeerInfo(fresh.h.ID())); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		a.mustAddPeer(b, testTopic, fresh.h.ID())
		for fresh.store.count() < benchOps {
			time.Sleep(time.Millisecond)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		if f := findEvent[SessionFailed](fresh.events.all()); len(f) > 0 {
			b.Fatalf("session failed: %v", f[0].Err)
		}
		a.close()
		fresh.close()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchOps*b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(benchOps*b.N*(benchBody+operation.MaxHeaderSize/4))/elapsed.Seconds()/(1<<20), "approx-MiB/s")
}
