package store

import (
	"context"
	"testing"
)

// database/sql discards a connection whose transaction's context is cancelled (go-sqlite3
// cannot reset a session), and an in-memory database dies with its last connection: a
// cancelled write (a node closing, an admin request given up) must not take every stored
// operation with it.
func TestMemoryStoreSurvivesCancelledTransaction(t *testing.T) {
	s, err := Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	key := newKey(t)
	ops := chain(t, key, topicA, nil, 3, func(i int) []byte { return []byte{byte(i)} })
	if _, err := s.InsertBatch(ctx, inserts(topicA, ops...)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		txCtx, cancel := context.WithCancel(ctx)
		tx, err := s.w.BeginTx(txCtx, nil)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		// Commit after the cancellation: database/sql has rolled back (and discarded the
		// connection) by the time it answers ErrTxDone, or the commit sees the
		// cancellation itself.
		if err := tx.Commit(); err == nil {
			t.Fatal("commit after cancel succeeded")
		}
	}
	// The store keeps working: the next operation of the log extends it.
	next := chain(t, key, topicA, ops[2], 1, nil)
	res, err := s.InsertBatch(ctx, inserts(topicA, next...))
	if err != nil || res[0].Outcome != Inserted {
		t.Fatalf("insert after cancelled transactions: %v %+v", err, res)
	}
	for _, op := range append(ops, next...) {
		got, err := s.Get(ctx, op.Hash)
		if err != nil {
			t.Fatalf("get %s after cancelled transactions: %v", op.Hash, err)
		}
		if got.Hash != op.Hash {
			t.Fatalf("got %s, want %s", got.Hash, op.Hash)
		}
	}
}
