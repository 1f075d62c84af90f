package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	topicA = operation.Topic(operation.HashOf([]byte("topic a")))
	topicB = operation.Topic(operation.HashOf([]byte("topic b")))
)

// chain signs n consecutive operations of key's log for topic, starting after prev.
func chain(t testing.TB, key operation.PrivateKey, topic operation.Topic, prev *operation.Operation, n int, body func(i int) []byte) []*operation.Operation {
	t.Helper()
	var out []*operation.Operation
	for i := 0; i < n; i++ {
		d := operation.Draft{LogID: operation.LogIDFromTopic(topic), Timestamp: uint64(1000 + i)}
		if body != nil {
			d.Body = body(i)
		}
		if prev != nil {
			d.SeqNum, d.Backlink = prev.SeqNum()+1, prev.Hash
		}
		op, err := operation.Sign(key, d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, op)
		prev = op
	}
	return out
}

func signPrune(t testing.TB, key operation.PrivateKey, topic operation.Topic, prev *operation.Operation, body []byte) *operation.Operation {
	t.Helper()
	op, err := operation.Sign(key, operation.Draft{LogID: operation.LogIDFromTopic(topic), SeqNum: prev.SeqNum() + 1,
		Backlink: prev.Hash, Prune: true, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func newKey(t testing.TB) operation.PrivateKey {
	k, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStores(t *testing.T) map[string]*Store {
	t.Helper()
	out := map[string]*Store{}
	mem, err := Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	file, err := Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	out["memory"], out["file"] = mem, file
	t.Cleanup(func() { mem.Close(); file.Close() })
	return out
}

// openFile opens the file store at path and fails the test if it cannot. The test closes
// it (some close and open the same file again).
func openFile(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// emptyStore deletes every operation and topic association for the next fuzz input. The
// delete goes behind the store's back on its own connection, which changes no
// data_version, so the store is told to forget the log heads it cached.
func emptyStore(t *testing.T, s *Store) {
	t.Helper()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.w.ExecContext(context.Background(), "DELETE FROM operations; DELETE FROM topic_logs"); err != nil {
		t.Fatal(err)
	}
	s.heads.forget()
}

func inserts(topic operation.Topic, ops ...*operation.Operation) []Insert {
	var out []Insert
	for _, op := range ops {
		out = append(out, Insert{Topic: topic, Op: op})
	}
	return out
}

func outcomes(res []InsertResult) []Outcome {
	var out []Outcome
	for _, r := range res {
		out = append(out, r.Outcome)
	}
	return out
}

func equalOutcomes(a, b []Outcome) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestInsertBatchOutcomes(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			key := newKey(t)
			ops := chain(t, key, topicA, nil, 4, func(i int) []byte { return []byte{byte(i)} })
			// seq 0, 1, then 3 (gap), 1 again (duplicate within the batch), a fork of seq 1.
			fork := chain(t, key, topicA, ops[0], 1, func(int) []byte { return []byte("fork") })[0]
			res, err := s.InsertBatch(ctx, inserts(topicA, ops[0], ops[1], ops[3], ops[1], fork))
			if err != nil {
				t.Fatal(err)
			}
			want := []Outcome{Inserted, Inserted, MissingBacklink, AlreadyExists, Rejected}
			if got := outcomes(res); !equalOutcomes(got, want) {
				t.Fatalf("outcomes %v, want %v", got, want)
			}
			if !errors.Is(res[2].Err, operation.ErrSeqNum) {
				t.Errorf("gap error %v, want ErrSeqNum", res[2].Err)
			}
			if !errors.Is(res[4].Err, operation.ErrFork) {
				t.Errorf("fork error %v, want ErrFork", res[4].Err)
			}
			// Items of the same batch see each other: 2 then 3 in one batch.
			res, err = s.InsertBatch(ctx, inserts(topicA, ops[2], ops[3]))
			if err != nil {
				t.Fatal(err)
			}
			if got := outcomes(res); !equalOutcomes(got, []Outcome{Inserted, Inserted}) {
				t.Fatalf("outcomes %v", got)
			}
			latest, err := s.Latest(ctx, key.PublicKey(), operation.LogIDFromTopic(topicA))
			if err != nil || latest == nil || latest.Hash != ops[3].Hash {
				t.Fatalf("latest = %v, %v; want %s", latest, err, ops[3].Hash.Short())
			}
			got, err := s.Get(ctx, ops[2].Hash)
			if err != nil || got.Hash != ops[2].Hash || string(got.Body) != "\x02" || got.SeqNum() != 2 {
				t.Fatalf("get = %+v, %v", got, err)
			}
			if _, err := s.Get(ctx, fork.Hash); !errors.Is(err, ErrNotFound) {
				t.Fatalf("forked op stored: %v", err)
			}
			// A wrong backlink at the next seq is a fork too.
			bad, err := operation.Sign(key, operation.Draft{LogID: operation.LogIDFromTopic(topicA), SeqNum: 4, Backlink: ops[1].Hash})
			if err != nil {
				t.Fatal(err)
			}
			res, err = s.InsertBatch(ctx, inserts(topicA, bad))
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Outcome != Rejected || !errors.Is(res[0].Err, operation.ErrFork) {
				t.Fatalf("bad backlink: %+v", res[0])
			}
		})
	}
}

func TestPruneAndRanges(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			key := newKey(t)
			author, log := key.PublicKey(), operation.LogIDFromTopic(topicA)
			// Distinct bodies, so a row read into memory another row still used would show.
			ops := chain(t, key, topicA, nil, 600, func(i int) []byte { return fmt.Appendf(nil, "message %d", i) })
			if _, err := s.InsertBatch(ctx, inserts(topicA, ops...)); err != nil {
				t.Fatal(err)
			}
			var seen []uint64
			if err := s.LogRange(ctx, author, log, 10, 530, func(op *operation.Operation) error {
				seen = append(seen, op.SeqNum())
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(seen) != 521 || seen[0] != 10 || seen[520] != 530 {
				t.Fatalf("range returned %d entries, first %v", len(seen), seen[:1])
			}
			for i := 1; i < len(seen); i++ {
				if seen[i] != seen[i-1]+1 {
					t.Fatalf("range not ascending at %d: %d after %d", i, seen[i], seen[i-1])
				}
			}
			// LogRangeRaw hands out the stored bytes of the same entries, undecoded, across
			// three chunks that share one buffer.
			raw := 0
			if err := s.LogRangeRaw(ctx, author, log, 10, 530, func(header, body []byte) error {
				op := ops[10+raw]
				if !bytes.Equal(header, op.HeaderBytes) || !bytes.Equal(body, op.Body) {
					t.Fatalf("raw entry %d differs from what was stored", 10+raw)
				}
				raw++
				return nil
			}); err != nil || raw != 521 {
				t.Fatalf("raw range: %d entries, %v", raw, err)
			}
			stop := errors.New("stop")
			n := 0
			if err := s.LogRange(ctx, author, log, 0, 1000, func(*operation.Operation) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
				t.Fatalf("stop: err %v after %d", err, n)
			}
			size, err := s.LogSize(ctx, author, log, 0, 1<<40)
			if err != nil || size.Ops != 600 || size.PayloadOps != 600 {
				t.Fatalf("size %+v %v", size, err)
			}
			pr := signPrune(t, key, topicA, ops[599], nil)
			res, err := s.InsertBatch(ctx, inserts(topicA, pr))
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Outcome != Inserted || res[0].Pruned != 600 {
				t.Fatalf("prune result %+v", res[0])
			}
			size, err = s.LogSize(ctx, author, log, 0, 1<<40)
			if err != nil || size.Ops != 1 || size.PayloadOps != 0 {
				t.Fatalf("size after prune %+v %v", size, err)
			}
			// An old entry that arrives after the prune is rejected and not re-stored.
			res, err = s.InsertBatch(ctx, inserts(topicA, ops[5]))
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Outcome != Rejected || !errors.Is(res[0].Err, operation.ErrSeqNum) {
				t.Fatalf("stale entry: %+v", res[0])
			}
			// A fresh store accepts the pruned log starting at the prune op.
			heights, err := s.LogHeights(ctx, topicA)
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := heights.Get(author, log); !ok || h != 600 {
				t.Fatalf("heights %v", heights)
			}
		})
	}
}

func TestPrunedLogStartsAtPruneOp(t *testing.T) {
	ctx := context.Background()
	s := openStores(t)["memory"]
	key := newKey(t)
	ops := chain(t, key, topicA, nil, 3, nil)
	pr := signPrune(t, key, topicA, ops[2], []byte("new start"))
	next := chain(t, key, topicA, pr, 1, nil)[0]
	res, err := s.InsertBatch(ctx, inserts(topicA, pr, next, ops[1]))
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(res); !equalOutcomes(got, []Outcome{Inserted, Inserted, Rejected}) {
		t.Fatalf("outcomes %v", got)
	}
}

func TestCursorsAndStats(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			k1, k2 := newKey(t), newKey(t)
			logA, logB := operation.LogIDFromTopic(topicA), operation.LogIDFromTopic(topicB)
			var all []Insert
			all = append(all, inserts(topicA, chain(t, k1, topicA, nil, 3, nil)...)...)
			all = append(all, inserts(topicA, chain(t, k2, topicA, nil, 2, func(int) []byte { return []byte("xy") })...)...)
			all = append(all, inserts(topicB, chain(t, k1, topicB, nil, 5, nil)...)...)
			if _, err := s.InsertBatch(ctx, all); err != nil {
				t.Fatal(err)
			}
			if err := s.Ack(ctx, topicA, k1.PublicKey(), logA, 1); err != nil {
				t.Fatal(err)
			}
			if err := s.Ack(ctx, topicA, k1.PublicKey(), logA, 0); err != nil { // never backwards
				t.Fatal(err)
			}
			if _, err := s.Write(ctx, nil, []Ack{{topicA, k2.PublicKey(), logA, 1}, {topicA, k1.PublicKey(), logA, 2}}); err != nil {
				t.Fatal(err)
			}
			c, err := s.Cursor(ctx, topicA)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := c.Get(k1.PublicKey(), logA); v != 2 || len(c) != 2 {
				t.Fatalf("cursor %v", c)
			}
			reset := Heights{}
			reset.Set(k1.PublicKey(), logA, 0)
			if err := s.ResetCursor(ctx, topicA, reset); err != nil {
				t.Fatal(err)
			}
			if c, _ = s.Cursor(ctx, topicA); len(c) != 1 || c[k1.PublicKey()][logA] != 0 {
				t.Fatalf("cursor after reset %v", c)
			}
			if c, _ = s.Cursor(ctx, topicB); len(c) != 0 {
				t.Fatalf("topic B cursor %v", c)
			}
			topics, err := s.Topics(ctx)
			if err != nil || len(topics) != 2 {
				t.Fatalf("topics %v %v", topics, err)
			}
			stats, err := s.TopicStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			byTopic := map[operation.Topic]TopicStat{}
			for _, st := range stats {
				byTopic[st.Topic] = st
			}
			if st := byTopic[topicA]; st.Ops != 5 || st.Authors != 2 || len(st.Logs) != 2 {
				t.Fatalf("topic A stats %+v", st)
			}
			if st := byTopic[topicB]; st.Ops != 5 || st.Authors != 1 || st.Logs[0].Height != 4 || st.Logs[0].Log != logB {
				t.Fatalf("topic B stats %+v", st)
			}
			if size, err := s.Size(ctx); err != nil || size <= 0 {
				t.Fatalf("size %d %v", size, err)
			}
		})
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := openFile(t, path)
	key := newKey(t)
	ops := chain(t, key, topicA, nil, 3, nil)
	if _, err := s.InsertBatch(ctx, inserts(topicA, ops...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, topicA, key.PublicKey(), operation.LogIDFromTopic(topicA), 2); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openFile(t, path)
	defer s.Close()
	var version int
	if err := s.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != SchemaVersion {
		t.Fatalf("user_version %d %v", version, err)
	}
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q %v", mode, err)
	}
	if h, _ := s.LogHeights(ctx, topicA); h[key.PublicKey()][operation.LogIDFromTopic(topicA)] != 2 {
		t.Fatalf("heights after reopen %v", h)
	}
	if c, _ := s.Cursor(ctx, topicA); c[key.PublicKey()][operation.LogIDFromTopic(topicA)] != 2 {
		t.Fatalf("cursor after reopen %v", c)
	}
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	// A readers-only handle cannot write.
	if _, err := s.r.ExecContext(ctx, "DELETE FROM operations"); err == nil {
		t.Fatal("reader pool accepted a write")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := openFile(t, path)
	if _, err := s.w.ExecContext(ctx, "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

// Readers run while the writer commits batches; every read sees a consistent prefix of
// each log (heights only grow, ranges are gap-free).
func TestConcurrentReadersDuringWrites(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			keys := []operation.PrivateKey{newKey(t), newKey(t), newKey(t)}
			var batches [][]Insert
			prev := make([]*operation.Operation, len(keys))
			for b := 0; b < 20; b++ {
				var batch []Insert
				for i, k := range keys {
					ops := chain(t, k, topicA, prev[i], 10, func(int) []byte { return make([]byte, 100) })
					prev[i] = ops[len(ops)-1]
					batch = append(batch, inserts(topicA, ops...)...)
				}
				batches = append(batches, batch)
			}
			done := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for r := 0; r < 3; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					last := map[operation.PublicKey]uint64{}
					for {
						select {
						case <-done:
							return
						default:
						}
						h, err := s.LogHeights(ctx, topicA)
						if err != nil {
							errs <- err
							return
						}
						for a, logs := range h {
							for l, seq := range logs {
								if seq < last[a] {
									errs <- errors.New("height went backwards")
									return
								}
								last[a] = seq
								var n uint64
								if err := s.LogRange(ctx, a, l, 0, seq, func(op *operation.Operation) error {
									if op.SeqNum() != n {
										return errors.New("gap in range")
									}
									n++
									return nil
								}); err != nil {
									errs <- err
									return
								}
							}
						}
					}
				}()
			}
			for _, b := range batches {
				res, err := s.InsertBatch(ctx, b)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range res {
					if r.Outcome != Inserted {
						t.Fatalf("outcome %v %v", r.Outcome, r.Err)
					}
				}
			}
			close(done)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

// FuzzInsertBatch feeds arbitrary sequences of valid, duplicated, reordered and forked
// operations and checks the store's invariants: no two entries at one seq, and every log is
// gap-free from its first retained entry.
func FuzzInsertBatch(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5})
	f.Add([]byte{3, 1, 0, 0, 2, 9, 8, 7})
	f.Add([]byte{5, 0, 1, 130, 2, 3})
	key, _ := operation.PrivateKeyFromSeed(make([]byte, 32))
	ops := chain(f, key, topicA, nil, 8, func(i int) []byte { return []byte{byte(i)} })
	forks := chain(f, key, topicA, ops[1], 3, func(i int) []byte { return []byte("fork") })
	prune := signPrune(f, key, topicA, ops[4], nil)
	pool := append(append(append([]*operation.Operation{}, ops...), forks...), prune)
	s, err := Open(context.Background(), "")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		emptyStore(t, s)
		var batch []Insert
		for _, b := range data {
			batch = append(batch, Insert{Topic: topicA, Op: pool[int(b&0x7f)%len(pool)]})
			if b&0x80 != 0 {
				if _, err := s.InsertBatch(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = nil
			}
		}
		if _, err := s.InsertBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		var prev *operation.Operation
		if err := s.LogRange(ctx, key.PublicKey(), operation.LogIDFromTopic(topicA), 0, 1<<32, func(op *operation.Operation) error {
			if prev == nil {
				if op.SeqNum() != 0 && !op.Prune() {
					t.Fatalf("log starts at seq %d without prune flag", op.SeqNum())
				}
			} else if op.SeqNum() != prev.SeqNum()+1 || op.Header.Backlink != prev.Hash {
				t.Fatalf("log broken after seq %d", prev.SeqNum())
			}
			prev = op
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLogRangeChunksAreByteBounded checks that a range of large payloads is read a few
// megabytes at a time, not rangeChunk (256) operations at a time, and still completely.
func TestLogRangeChunksAreByteBounded(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := newKey(t)
	author, log := key.PublicKey(), operation.LogIDFromTopic(topicA)
	const bodySize, count = 64 << 10, 300 // 300 × 64 KiB ≈ 19 MiB
	ops := chain(t, key, topicA, nil, count, func(int) []byte { return make([]byte, bodySize) })
	if _, err := s.InsertBatch(ctx, inserts(topicA, ops...)); err != nil {
		t.Fatal(err)
	}
	chunk, last, more, err := s.readRangeChunk(ctx, author, log, 0, count, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, r := range chunk {
		held += len(r.header) + len(r.body)
	}
	if held > rangeChunkBytes+bodySize+1024 || !more || last != uint64(len(chunk)-1) {
		t.Fatalf("first chunk: %d rows, %d bytes (bound %d), last seq %d, more %v", len(chunk), held, rangeChunkBytes, last, more)
	}
	var seen uint64
	if err := s.LogRange(ctx, author, log, 0, count, func(op *operation.Operation) error {
		if op.SeqNum() != seen || len(op.Body) != bodySize {
			return fmt.Errorf("got seq %d (%d bytes), want seq %d", op.SeqNum(), len(op.Body), seen)
		}
		seen++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != count {
		t.Fatalf("range returned %d of %d operations", seen, count)
	}
}

// FuzzWriteBatchMatchesSequential checks that a batch gives every operation the outcome it
// gets when each operation is written in its own transaction, and leaves the same log.
// The batch keeps the logs' latest entries in memory and defers its inserts into
// multi-row statements; this is what keeps that invisible.
func FuzzWriteBatchMatchesSequential(f *testing.F) {
	var inOrder []byte
	for i := 0; i < 150; i++ { // more than two multi-row chunks
		inOrder = append(inOrder, byte(i))
	}
	f.Add(inOrder)
	f.Add(append(append([]byte{}, inOrder[:70]...), 5, 69, 160, 161, 70, 71, 200)) // duplicates, forks, then on
	f.Add(append(append([]byte{}, inOrder[:80]...), 170, 3, 81, 79))               // prune at seq 80 mid-batch
	f.Add([]byte{1, 0, 2, 1, 160, 3, 170, 0})
	// Low thresholds, so that the store written one operation at a time merges its hash
	// tables into the middle and the large one, and checkHashTables sees both.
	mergeHashesAt(f, 16, 48)
	key, _ := operation.PrivateKeyFromSeed(make([]byte, 32))
	other, _ := operation.PrivateKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	ops := chain(f, key, topicA, nil, 160, func(i int) []byte { return []byte{byte(i)} })
	forks := chain(f, key, topicA, ops[1], 5, func(i int) []byte { return []byte("fork") }) // 160..164
	prune := signPrune(f, key, topicA, ops[79], nil)                                        // 165
	second := chain(f, other, topicB, nil, 4, nil)                                          // 166..169
	pool := append(append(append(append([]*operation.Operation{}, ops...), forks...), prune), second...)
	pool = append(pool, prune) // 170: the prune again (duplicate once stored)
	open := func() *Store {
		s, err := Open(context.Background(), "")
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { s.Close() })
		return s
	}
	batched, single := open(), open()
	dump := func(t *testing.T, s *Store) []string {
		rows, err := s.r.QueryContext(context.Background(), "SELECT hex(hash), seq FROM operations ORDER BY author, log_id, seq")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var h string
			var seq int64
			if err := rows.Scan(&h, &seq); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d:%s", seq, h))
		}
		return out
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 300 { // the one-by-one side costs a transaction per byte
			data = data[:300]
		}
		ctx := context.Background()
		for _, s := range []*Store{batched, single} {
			emptyStore(t, s)
		}
		var batch []Insert
		for _, b := range data {
			op := pool[int(b)%len(pool)]
			topic := topicA
			if op.Author() == other.PublicKey() {
				topic = topicB
			}
			batch = append(batch, Insert{Topic: topic, Op: op})
		}
		got, err := batched.InsertBatch(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, in := range batch {
			want, err := single.InsertBatch(ctx, []Insert{in})
			if err != nil {
				t.Fatal(err)
			}
			if got[i].Outcome != want[0].Outcome || got[i].Pruned != want[0].Pruned ||
				fmt.Sprint(got[i].Err) != fmt.Sprint(want[0].Err) {
				t.Fatalf("op %d (seq %d): batch gave %v/%d/%v, alone %v/%d/%v", i, in.Op.SeqNum(),
					got[i].Outcome, got[i].Pruned, got[i].Err, want[0].Outcome, want[0].Pruned, want[0].Err)
			}
		}
		if a, b := dump(t, batched), dump(t, single); !slices.Equal(a, b) {
			t.Fatalf("stored logs differ:\nbatch %v\nalone %v", a, b)
		}
		checkHashTables(t, batched.r)
		checkHashTables(t, single.r)
	})
}

// mergeHashesAt lowers hashMergeAt for the rest of the test, so that a few operations
// merge the small hash table into the middle one and the middle one into the large one.
func mergeHashesAt(t testing.TB, small, middle int64) {
	saved := hashMergeAt
	hashMergeAt = [len(hashMergeAt)]int64{small, middle}
	t.Cleanup(func() { hashMergeAt = saved })
}

// New operations' hashes go to the small hash table, move to the middle one once the
// small one holds hashMergeAt[0] of them, and to the large one once the middle one holds
// hashMergeAt[1]; every operation stays findable by hash through the moves, a prune, a
// retired log and a reopen (which has to count the tables again).
func TestHashTablesMergeAndFollowDeletes(t *testing.T) {
	mergeHashesAt(t, 7, 14)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := openFile(t, path)
	defer func() { s.Close() }()
	// sizes returns how many hashes the small, middle and large table hold, and fails the
	// test if one that merges holds as many as it merges at.
	sizes := func() (n [len(hashTables)]int) {
		t.Helper()
		for i, table := range hashTables {
			if err := s.r.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n[i]); err != nil {
				t.Fatal(err)
			}
			if i < len(hashMergeAt) && n[i] >= int(hashMergeAt[i]) {
				t.Fatalf("%s holds %d hashes, want fewer than %d", table, n[i], hashMergeAt[i])
			}
		}
		return n
	}
	mustFind := func(ops []*operation.Operation, want bool) {
		t.Helper()
		for _, op := range ops {
			got, err := s.Get(ctx, op.Hash)
			has, herr := s.Has(ctx, op.Hash)
			switch {
			case herr != nil:
				t.Fatal(herr)
			case want && (err != nil || got.Hash != op.Hash || !has):
				t.Fatalf("get %s: %v, %v (has %v)", op.Hash.Short(), got, err, has)
			case !want && (!errors.Is(err, ErrNotFound) || has):
				t.Fatalf("get %s after it was deleted: %v (has %v), want ErrNotFound", op.Hash.Short(), err, has)
			}
		}
	}
	keep, gone := newKey(t), newKey(t)
	logA := chain(t, keep, topicA, nil, 30, nil)
	logB := chain(t, gone, topicA, nil, 5, nil)
	var merges [len(hashMergeAt)]int
	for i := 0; i < len(logA); i += 4 {
		before := sizes()
		if _, err := s.InsertBatch(ctx, inserts(topicA, logA[i:min(i+4, len(logA))]...)); err != nil {
			t.Fatal(err)
		}
		after := sizes()
		for level := range merges { // a batch only adds, so a table that shrank merged
			if after[level] < before[level] {
				merges[level]++
			}
		}
		checkHashTables(t, s.r)
		mustFind(logA[:min(i+4, len(logA))], true)
	}
	// 30 operations in batches of 4: the small table merged at 8, 16 and 24, the middle one
	// (8, then 16 hashes) at 16.
	if want := [len(hashMergeAt)]int{3, 1}; merges != want {
		t.Fatalf("merges into the middle and the large table: %d, want %d", merges, want)
	}

	prune := signPrune(t, keep, topicA, logA[len(logA)-1], nil)
	if _, err := s.InsertBatch(ctx, inserts(topicA, append([]*operation.Operation{prune}, logB...)...)); err != nil {
		t.Fatal(err)
	}
	checkHashTables(t, s.r)
	mustFind(logA, false)
	mustFind([]*operation.Operation{prune}, true)
	if err := s.RetireLogs(ctx, topicA, []RetiredLog{{Author: gone.PublicKey(), Log: operation.LogIDFromTopic(topicA), Seq: 4}}); err != nil {
		t.Fatal(err)
	}
	checkHashTables(t, s.r)
	mustFind(logB, false)

	// A reopened store does not know the tables' sizes until it counts them.
	s.Close()
	s = openFile(t, path)
	more := chain(t, keep, topicA, prune, 12, nil)
	for i := 0; i < len(more); i += 3 {
		if _, err := s.InsertBatch(ctx, inserts(topicA, more[i:i+3]...)); err != nil {
			t.Fatal(err)
		}
		sizes()
	}
	checkHashTables(t, s.r)
	mustFind(append([]*operation.Operation{prune}, more...), true)
}

// A store written by schema 6 (a small and a large hash table) is upgraded to the middle
// table in place: its hashes stay where they are and are found, and prunes and merges after
// the upgrade cover all three tables.
func TestUpgradeFromSchema6(t *testing.T) {
	mergeHashesAt(t, 4, 8)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := openFile(t, path)
	key := newKey(t)
	log := chain(t, key, topicA, nil, 20, nil)
	for _, batch := range [][]*operation.Operation{log[:5], log[5:7]} { // 5 merged, 2 not
		if _, err := s.InsertBatch(ctx, inserts(topicA, batch...)); err != nil {
			t.Fatal(err)
		}
	}
	// Turn the file back into a schema-6 database: what the middle table holds, schema 6
	// kept in the large one.
	if _, err := s.w.ExecContext(ctx, `INSERT INTO operation_hashes SELECT prefix, op FROM operation_hashes_mid;
		DROP TABLE operation_hashes_mid;
		DROP TRIGGER operations_drop_hash;
		CREATE TRIGGER operations_drop_hash AFTER DELETE ON operations BEGIN
			DELETE FROM operation_hashes WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
			DELETE FROM operation_hashes_recent WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
		END;
		PRAGMA user_version = 6`); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openFile(t, path)
	defer s.Close()
	var version, large, recent int
	if err := s.r.QueryRow(`SELECT (SELECT user_version FROM pragma_user_version),
		(SELECT count(*) FROM operation_hashes), (SELECT count(*) FROM operation_hashes_recent)`).
		Scan(&version, &large, &recent); err != nil {
		t.Fatal(err)
	}
	if version != SchemaVersion || large != 5 || recent != 2 {
		t.Fatalf("after the upgrade: schema %d, %d hashes in the large and %d in the small table; want %d, 5 and 2",
			version, large, recent, SchemaVersion)
	}
	checkHashTables(t, s.r)
	for _, op := range log[:7] {
		if got, err := s.Get(ctx, op.Hash); err != nil || got.Hash != op.Hash {
			t.Fatalf("get seq %d after the upgrade: %v, %v", op.SeqNum(), got, err)
		}
	}
	// Enough operations for merges into the middle and the large table, then a prune that
	// deletes hashes from all three.
	for i := 7; i < len(log); i += 3 {
		if _, err := s.InsertBatch(ctx, inserts(topicA, log[i:min(i+3, len(log))]...)); err != nil {
			t.Fatal(err)
		}
		checkHashTables(t, s.r)
	}
	prune := signPrune(t, key, topicA, log[len(log)-1], nil)
	if res, err := s.InsertBatch(ctx, inserts(topicA, prune)); err != nil || res[0].Outcome != Inserted {
		t.Fatalf("prune: %v %v", res, err)
	}
	checkHashTables(t, s.r)
	for _, op := range log {
		if _, err := s.Get(ctx, op.Hash); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get seq %d after the prune: %v, want ErrNotFound", op.SeqNum(), err)
		}
	}
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
}

// The writer remembers log heads across batches, but never past a change it did not make:
// a log deleted by RetireLogs, or by another connection to the same file (here a second
// Store, as another process would be), starts again at seq 0.
func TestCachedHeadsFollowDeletes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := openFile(t, path)
	defer s.Close()
	other := openFile(t, path)
	defer other.Close()
	for name, retire := range map[string]*Store{"own": s, "other connection": other} {
		t.Run(name, func(t *testing.T) {
			key := newKey(t)
			log := chain(t, key, topicA, nil, 3, nil)
			for _, op := range log { // one batch each: the later ones find the head cached
				if res, err := s.InsertBatch(ctx, inserts(topicA, op)); err != nil || res[0].Outcome != Inserted {
					t.Fatalf("insert seq %d: %v %v", op.SeqNum(), res, err)
				}
			}
			if err := retire.RetireLogs(ctx, topicA, []RetiredLog{{Author: key.PublicKey(), Log: operation.LogIDFromTopic(topicA), Seq: 2}}); err != nil {
				t.Fatal(err)
			}
			again := chain(t, key, topicA, nil, 2, func(i int) []byte { return []byte{'n', byte(i)} })
			res, err := s.InsertBatch(ctx, inserts(topicA, again...))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := outcomes(res), []Outcome{Inserted, Inserted}; !equalOutcomes(got, want) {
				t.Fatalf("a new log at seq 0 after the old one was deleted: %v (%v), want %v", got, res[0].Err, want)
			}
		})
	}
}
