package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// loopbackNetwork is the network config of tests and benchmarks: loopback TCP, no mDNS,
// quick walks, logs only with PANDA_TEST_LOG.
func loopbackNetwork(opts ...netOpt) NetworkConfig {
	cfg := NetworkConfig{
		NetworkID:       testNetwork,
		ListenAddrs:     []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		WalkInterval:    100 * time.Millisecond,
		MaxWalkInterval: time.Second,
		Logger:          testLogger(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// fillTopic writes ops operations with bodySize-byte bodies, spread over authors logs, into
// the SQLite file at path through the store's batch writer (the path the pipeline's writer
// takes, minus verification: the operations are signed right here). The topic's cursor is
// set to the end, so a node streaming the topic replays nothing. Signing runs on every
// core, one goroutine per author.
func fillTopic(b *testing.B, path string, topic operation.Topic, ops, authors, bodySize int) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const batch = 2000
	batches := make(chan []store.Insert, 2*authors)
	var signers sync.WaitGroup
	var signErr atomic.Pointer[error]
	heads := make([]store.Ack, authors)
	for a := range authors {
		signers.Go(func() {
			key, err := operation.GenerateKey()
			if err != nil {
				signErr.Store(&err)
				return
			}
			logID := operation.LogIDFromTopic(topic)
			var prev *operation.Operation
			buf := make([]store.Insert, 0, batch)
			n := ops / authors
			if a < ops%authors {
				n++
			}
			for i := range n {
				d := operation.Draft{LogID: logID, Body: make([]byte, bodySize)}
				copy(d.Body, fmt.Sprintf("author %d op %d", a, i))
				if prev != nil {
					d.SeqNum, d.Backlink = prev.SeqNum()+1, prev.Hash
				}
				op, err := operation.Sign(key, d)
				if err != nil {
					signErr.Store(&err)
					return
				}
				prev = op
				buf = append(buf, store.Insert{Topic: topic, Op: op})
				if len(buf) == batch {
					batches <- buf
					buf = make([]store.Insert, 0, batch)
				}
			}
			if len(buf) > 0 {
				batches <- buf
			}
			if prev != nil {
				heads[a] = store.Ack{Topic: topic, Author: key.PublicKey(), Log: logID, Seq: prev.SeqNum()}
			}
		})
	}
	go func() {
		signers.Wait()
		close(batches)
	}()
	stored := 0
	var writeErr error
	for in := range batches {
		if writeErr != nil {
			continue // drain so the signers finish
		}
		res, err := st.InsertBatch(ctx, in)
		if err != nil {
			writeErr = err
			continue
		}
		for i, r := range res {
			if r.Outcome != store.Inserted {
				writeErr = fmt.Errorf("fill %s: op %d: %v %v", topic, i, r.Outcome, r.Err)
				break
			}
		}
		stored += len(in)
	}
	if p := signErr.Load(); p != nil {
		b.Fatal(*p)
	}
	if writeErr != nil {
		b.Fatal(writeErr)
	}
	if _, err := st.Write(ctx, nil, heads); err != nil {
		b.Fatal(err)
	}
	if stored != ops {
		b.Fatalf("stored %d of %d operations", stored, ops)
	}
}

// BenchmarkCatchUp100k: an always-on node (file store) holds a 100,000-operation topic
// (1 KiB bodies, 4 authors). A fresh edge node with an empty file store is created,
// bootstrapped to it, streams the topic and catches up over log sync. The figure is the
// wall time from creating the edge node until its store holds all 100,000 operations, so
// it includes the libp2p dial, discovery of the topic peer, the sync handshake, strict
// verification of every operation and durable (synchronous=FULL) storage — and the edge
// app consuming the Processed events with automatic acks, as a real subscriber would.
func BenchmarkCatchUp100k(b *testing.B) { benchCatchUp(b, 100_000) }

// BenchmarkCatchUpGrowth is BenchmarkCatchUp100k at several log sizes, to show how the cost
// grows: 10k and 100k operations, plus the sizes in PANDANET_BENCH_LARGE (comma-separated,
// e.g. "1000000"; opt-in because filling and syncing a million operations takes a long
// time). Besides the time it reports the peak resident memory of the process, which holds
// both nodes, during the catch-up.
func BenchmarkCatchUpGrowth(b *testing.B) {
	sizes := []int{10_000, 100_000}
	if extra := os.Getenv("PANDANET_BENCH_LARGE"); extra != "" {
		for _, f := range strings.Split(extra, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("PANDANET_BENCH_LARGE: %q is not a positive number", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("ops=%d", n), func(b *testing.B) { benchCatchUp(b, n) })
	}
}

// profileTimedPart profiles the catch-up itself, without the fill that `go test
// -cpuprofile` would also see, when PANDANET_BENCH_PROFILE names a file prefix:
// <prefix>.cpu (CPU profile), <prefix>.trace (execution trace) and <prefix>.allocs with
// <prefix>.allocs-before (read the catch-up's allocations with `go tool pprof
// -sample_index=alloc_space -base <prefix>.allocs-before <prefix>.allocs`). The trace
// shows what the goroutines wait on (fsync and other syscalls, the network, each other),
// which a CPU profile cannot. The returned func stops them; the last iteration's files
// are kept.
func profileTimedPart(b *testing.B) (stop func()) {
	prefix := os.Getenv("PANDANET_BENCH_PROFILE")
	if prefix == "" {
		return func() {}
	}
	cpuFile, err := os.Create(prefix + ".cpu")
	if err != nil {
		b.Fatal(err)
	}
	traceFile, err := os.Create(prefix + ".trace")
	if err != nil {
		b.Fatal(err)
	}
	writeHeap := func(name string) {
		runtime.GC() // the profile shows allocations up to the last collection
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
	writeHeap(prefix + ".allocs-before")
	if err := pprof.StartCPUProfile(cpuFile); err != nil {
		b.Fatal(err)
	}
	if err := trace.Start(traceFile); err != nil {
		b.Fatal(err)
	}
	return func() {
		trace.Stop()
		pprof.StopCPUProfile()
		writeHeap(prefix + ".allocs")
		for _, f := range []*os.File{cpuFile, traceFile} {
			if err := f.Close(); err != nil {
				b.Error(err)
			}
		}
	}
}

// catchUpDeadline gives a catch-up 10 minutes per 100,000 operations (at least 10).
func catchUpDeadline(ops int) time.Duration {
	return time.Duration(max(1, ops/100_000)) * 10 * time.Minute
}

func benchCatchUp(b *testing.B, ops int) {
	const authors, body = 4, 1024
	ctx := context.Background()
	topic := operation.Topic(operation.HashOf([]byte("catch-up benchmark")))
	path := filepath.Join(b.TempDir(), "always-on.sqlite")
	fillTopic(b, path, topic, ops, authors, body)

	always, err := New(ctx, WithDatabase(path), WithNetwork(loopbackNetwork(func(c *NetworkConfig) {
		c.Public, c.RelayService = true, true
	})))
	if err != nil {
		b.Fatal(err)
	}
	defer always.Close()
	if _, _, err := always.Stream(ctx, topic); err != nil {
		b.Fatal(err)
	}

	var total, first, cpu time.Duration
	var peakRSS int64
	var batches, batchedOps, allocs, allocBytes uint64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		resetPeakRSS(b)
		edgePath := filepath.Join(b.TempDir(), fmt.Sprintf("edge-%d.sqlite", i))
		var stored atomic.Int64
		var firstAt atomic.Int64
		done := make(chan struct{})
		var start time.Time
		observe := WithObserver(func(r Observation) {
			if r.Outcome != OutcomeStored || r.Topic != topic {
				return
			}
			switch stored.Add(1) {
			case 1:
				firstAt.Store(int64(time.Since(start)))
			case int64(ops):
				close(done)
			}
		})
		stopProfiles := profileTimedPart(b)
		var mem0 runtime.MemStats
		runtime.ReadMemStats(&mem0)
		cpu0 := testutil.ProcessCPU()
		b.StartTimer()
		start = time.Now()
		edge, err := New(ctx, WithDatabase(edgePath), observe, WithNetwork(loopbackNetwork(bootstrapTo(always))))
		if err != nil {
			b.Fatal(err)
		}
		_, sub, err := edge.Stream(ctx, topic)
		if err != nil {
			b.Fatal(err)
		}
		consumed := make(chan struct{})
		go func() {
			defer close(consumed)
			for range sub.Events() {
			}
		}()
		select {
		case <-done:
		case <-time.After(catchUpDeadline(ops)):
			b.Fatalf("edge stored %d of %d operations after %v", stored.Load(), ops, catchUpDeadline(ops))
		}
		elapsed := time.Since(start)
		cpu += testutil.ProcessCPU() - cpu0
		b.StopTimer()
		var mem1 runtime.MemStats
		runtime.ReadMemStats(&mem1)
		allocs += mem1.Mallocs - mem0.Mallocs
		allocBytes += mem1.TotalAlloc - mem0.TotalAlloc
		stopProfiles()
		ps := edge.pipe.Stats()
		batches += ps.Batches
		batchedOps += ps.BatchedOps
		peakRSS = max(peakRSS, peakResidentBytes(b))
		total += elapsed
		first += time.Duration(firstAt.Load())
		if err := edge.Close(); err != nil {
			b.Fatal(err)
		}
		<-consumed
		// Stored means committed: the file on disk holds every operation.
		st, err := store.Open(ctx, edgePath)
		if err != nil {
			b.Fatal(err)
		}
		h, err := st.LogHeights(ctx, topic)
		st.Close()
		if err != nil {
			b.Fatal(err)
		}
		if len(h) != authors {
			b.Fatalf("edge store has %d logs, want %d", len(h), authors)
		}
		b.StartTimer()
	}
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(secs, "s")
	b.ReportMetric(float64(ops)/secs, "ops/s")
	b.ReportMetric(first.Seconds()/float64(b.N), "s-to-first-op")
	// CPU time of the whole process (both nodes) per received operation, and how many of
	// the cores it kept busy: on a shared machine these move less than the wall time.
	b.ReportMetric(float64(cpu.Microseconds())/float64(ops)/float64(b.N), "cpu-us/op")
	b.ReportMetric(cpu.Seconds()/total.Seconds(), "cores-busy")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
	// The edge's mean write transaction: every one ends with an fsync.
	b.ReportMetric(float64(batchedOps)/float64(max(batches, 1)), "ops/commit")
	// Heap allocations of both nodes per operation received (issue 12's goal 5), counted
	// over the catch-up only, without the fill.
	b.ReportMetric(float64(allocs)/float64(ops)/float64(b.N), "allocs/received-op")
	b.ReportMetric(float64(allocBytes)/float64(ops)/float64(b.N), "B/received-op")
}

// BenchmarkTopicMemory: one networked node opens streams on 1,000 topics (each one is
// subscribed to log sync, announced to discovery and gets a live forwarder). The figure is
// the growth of the process's resident memory per 1,000 topics (after a full GC and
// returning freed pages to the OS, before and after), once every topic is registered with
// the network layer: it counts goroutine stacks and SQLite's C allocations, which the Go
// heap does not. Live-heap growth is reported too. No operations flow: this is the fixed
// cost of following a topic.
func BenchmarkTopicMemory(b *testing.B) {
	const topics = 1000
	ctx := context.Background()
	var rssMiB, heapMiB, goroutines float64
	for i := range b.N {
		b.StopTimer()
		n, err := New(ctx, WithDatabase(filepath.Join(b.TempDir(), fmt.Sprintf("mem-%d.sqlite", i))), WithNetwork(loopbackNetwork()))
		if err != nil {
			b.Fatal(err)
		}
		// Let the host settle (listeners, walkers) before the baseline.
		time.Sleep(200 * time.Millisecond)
		before := liveHeap()
		rss0 := residentBytes(b)
		g0 := runtime.NumGoroutine()
		b.StartTimer()
		subs := make([]*Subscription, 0, topics)
		for t := range topics {
			topic := operation.Topic(operation.HashOf(fmt.Appendf(nil, "memory topic %d", t)))
			_, sub, err := n.Stream(ctx, topic)
			if err != nil {
				b.Fatal(err)
			}
			subs = append(subs, sub)
		}
		waitForwarders(b, n, topics)
		b.StopTimer()
		after := liveHeap()
		rss1 := residentBytes(b)
		heapMiB += float64(after-before) / (1 << 20) * (1000.0 / topics)
		rssMiB += float64(rss1-rss0) / (1 << 20) * (1000.0 / topics)
		goroutines += float64(runtime.NumGoroutine()-g0) / topics
		runtime.KeepAlive(subs)
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(rssMiB/float64(b.N), "MiB/1000topics")
	b.ReportMetric(heapMiB/float64(b.N), "heap-MiB/1000topics")
	b.ReportMetric(goroutines/float64(b.N), "goroutines/topic")
}

// liveHeap returns the bytes of live heap objects after two full collections (the second
// one frees what finalizers of the first released).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// residentBytes returns the process's resident set size after a full GC that returned
// freed pages to the OS, so it measures what the process holds (Go heap, goroutine
// stacks, SQLite's C memory), not what the Go runtime happens to keep mapped.
func residentBytes(b *testing.B) int64 {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("resident memory needs /proc: %v", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		b.Fatalf("unexpected /proc/self/statm: %q", data)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		b.Fatalf("parse /proc/self/statm: %v", err)
	}
	return pages * int64(os.Getpagesize())
}

// resetPeakRSS frees what the setup left behind and resets the kernel's peak-RSS counter
// (VmHWM) to the current resident size, so peakResidentBytes measures what follows.
func resetPeakRSS(b *testing.B) {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("peak RSS needs /proc/self/clear_refs: %v", err)
	}
}

// peakResidentBytes returns VmHWM, the process's peak resident set size since the last
// resetPeakRSS.
func peakResidentBytes(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("peak RSS needs /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("parse VmHWM %q: %v", line, err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// waitForwarders waits until the network layer has picked up want streamed topics.
func waitForwarders(b testing.TB, n *Node, want int) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n.net.mu.Lock()
		have := len(n.net.forwarders)
		n.net.mu.Unlock()
		if have >= want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("network layer follows %d of %d topics", have, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkTopicMemoryGrowth: how the resident memory of one always-on node (networked,
// file store) grows with the topics it follows, each holding a few operations: 1k and 10k
// topics by default, plus the sizes in PANDANET_BENCH_LARGE_TOPICS (comma-separated, e.g.
// "100000"; opt-in because it takes long). The store is filled (and acknowledged, so
// nothing is replayed) before the node starts; the node then opens Stream on every topic
// and the figure is taken once the network layer follows all of them. It reports the
// process's resident set (`rss-MiB`: the whole test process, so it over-counts the node by
// the test binary's own few MiB), its growth over the node's idle baseline
// (`rss-growth-MiB`), and goroutines per topic.
func BenchmarkTopicMemoryGrowth(b *testing.B) {
	sizes := []int{1_000, 10_000}
	if extra := os.Getenv("PANDANET_BENCH_LARGE_TOPICS"); extra != "" {
		for _, f := range strings.Split(extra, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("PANDANET_BENCH_LARGE_TOPICS: %q is not a positive number", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) { benchTopicMemory(b, n, 3) })
	}
}

func benchTopicMemory(b *testing.B, topics, opsPerTopic int) {
	ctx := context.Background()
	var rss, growth, goroutines float64
	for i := range b.N {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), fmt.Sprintf("topics-%d.sqlite", i))
		names := fillTopics(b, path, topics, opsPerTopic)
		n, err := New(ctx, WithDatabase(path), WithNetwork(loopbackNetwork()))
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let the host settle (listeners, walkers)
		rss0 := residentBytes(b)
		g0 := runtime.NumGoroutine()
		b.StartTimer()
		subs := make([]*Subscription, 0, topics)
		for _, topic := range names {
			_, sub, err := n.Stream(ctx, topic)
			if err != nil {
				b.Fatal(err)
			}
			subs = append(subs, sub)
		}
		waitForwarders(b, n, topics)
		b.StopTimer()
		rss1 := residentBytes(b)
		rss += float64(rss1) / (1 << 20)
		growth += float64(rss1-rss0) / (1 << 20)
		goroutines += float64(runtime.NumGoroutine()-g0) / float64(topics)
		runtime.KeepAlive(subs)
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(rss/float64(b.N), "rss-MiB")
	b.ReportMetric(growth/float64(b.N), "rss-growth-MiB")
	b.ReportMetric(goroutines/float64(b.N), "goroutines/topic")
}

// fillTopics writes opsPerTopic small operations of one author into each of topics topics
// and acknowledges them, so a node streaming the topics replays nothing.
func fillTopics(b testing.TB, path string, topics, opsPerTopic int) []operation.Topic {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	key, err := operation.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	names := make([]operation.Topic, topics)
	var inserts []store.Insert
	var acks []store.Ack
	flush := func() {
		if _, err := st.Write(ctx, inserts, acks); err != nil {
			b.Fatal(err)
		}
		inserts, acks = inserts[:0], acks[:0]
	}
	for t := range names {
		topic := operation.Topic(operation.HashOf(fmt.Appendf(nil, "growth topic %d", t)))
		names[t] = topic
		logID := operation.LogIDFromTopic(topic)
		var prev *operation.Operation
		for i := range opsPerTopic {
			d := operation.Draft{LogID: logID, Body: fmt.Appendf(nil, "topic %d op %d", t, i)}
			if prev != nil {
				d.SeqNum, d.Backlink = prev.SeqNum()+1, prev.Hash
			}
			op, err := operation.Sign(key, d)
			if err != nil {
				b.Fatal(err)
			}
			inserts = append(inserts, store.Insert{Topic: topic, Op: op})
			prev = op
		}
		acks = append(acks, store.Ack{Topic: topic, Author: key.PublicKey(), Log: logID, Seq: prev.SeqNum()})
		if len(inserts) >= 2000 {
			flush()
		}
	}
	flush()
	return names
}

// BenchmarkSyncManyTopics: a fresh edge node syncs many small topics (10 operations each)
// from one always-on node: many short sync sessions instead of one long one. Timed from
// creating the edge until its pipeline stored every operation of every topic; also reports
// the process's peak RSS (both nodes). 100 and 1,000 topics by default; more (the issue 12
// figure is 10k) with PANDANET_BENCH_LARGE_SYNC_TOPICS, e.g. "10000". Every followed topic
// keeps its own live sync stream to the peer, so this row also exercises the per-peer
// stream and session limits (p2p.MaxTopicStreamsPerPeer, logsync's MaxInboundPerPeer):
// before they were fixed, an edge stalled at 64 topics.
func BenchmarkSyncManyTopics(b *testing.B) {
	for _, n := range sizesWithEnv(b, []int{100, 1000}, "PANDANET_BENCH_LARGE_SYNC_TOPICS") {
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) { benchSyncManyTopics(b, n, 10) })
	}
}

func benchSyncManyTopics(b *testing.B, topics, opsPerTopic int) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "always-on.sqlite")
	names := fillTopics(b, path, topics, opsPerTopic)
	always, err := New(ctx, WithDatabase(path), WithNetwork(loopbackNetwork(func(c *NetworkConfig) {
		c.Public, c.RelayService = true, true
	})))
	if err != nil {
		b.Fatal(err)
	}
	defer always.Close()
	for _, topic := range names {
		if _, _, err := always.Stream(ctx, topic); err != nil {
			b.Fatal(err)
		}
	}
	waitForwarders(b, always, topics)
	want := int64(topics * opsPerTopic)
	deadline := time.Duration(max(1, topics/1000)) * 5 * time.Minute
	var total time.Duration
	var peakRSS int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		resetPeakRSS(b)
		stored, done, observe := countStored(want)
		b.StartTimer()
		start := time.Now()
		edge, err := New(ctx, WithDatabase(filepath.Join(b.TempDir(), fmt.Sprintf("edge-%d.sqlite", i))), observe,
			WithNetwork(loopbackNetwork(bootstrapTo(always))))
		if err != nil {
			b.Fatal(err)
		}
		var drains sync.WaitGroup
		for _, topic := range names {
			followDrained(b, ctx, edge, topic, &drains)
		}
		tick := time.NewTicker(time.Second)
		last, lastAt := int64(-1), time.Now()
	wait:
		for {
			select {
			case <-done:
				break wait
			case now := <-tick.C:
				if n := stored.Load(); n != last {
					last, lastAt = n, now
				}
				if now.Sub(lastAt) > time.Minute || now.Sub(start) > deadline {
					tick.Stop()
					b.Fatalf("edge stored %d of %d operations after %v (no progress for %v)",
						stored.Load(), want, now.Sub(start).Round(time.Second), now.Sub(lastAt).Round(time.Second))
				}
			}
		}
		tick.Stop()
		elapsed := time.Since(start)
		b.StopTimer()
		peakRSS = max(peakRSS, peakResidentBytes(b))
		total += elapsed
		if err := edge.Close(); err != nil {
			b.Fatal(err)
		}
		drains.Wait()
		b.StartTimer()
	}
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(secs, "s")
	b.ReportMetric(float64(want)/secs, "ops/s")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
}

// countStored counts the operations a node's pipeline stores (pass observe to New): stored
// is the count so far, done closes when it reaches want.
func countStored(want int64) (stored *atomic.Int64, done <-chan struct{}, observe Option) {
	stored = new(atomic.Int64)
	reached := make(chan struct{})
	observe = WithObserver(func(r Observation) {
		if r.Outcome == OutcomeStored && stored.Add(1) == want {
			close(reached)
		}
	})
	return stored, reached, observe
}

// followDrained opens topic on n and reads its subscription on drains until it closes, so
// the benchmark's edges follow topics without an app consuming them.
func followDrained(b *testing.B, ctx context.Context, n *Node, topic operation.Topic, drains *sync.WaitGroup) {
	b.Helper()
	_, sub, err := n.Stream(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	drains.Go(func() {
		for range sub.Events() {
		}
	})
}
