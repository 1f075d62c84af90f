package node

import (
	"bytes"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestPublishResultCarriesSeqNum(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	pub, _, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(0); want < 3; want++ {
		p, err := pub.Publish(ctx, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.SeqNum != want {
			t.Fatalf("publish %d: result seq %d", want, res.SeqNum)
		}
	}
}

// TestHistory reads a topic's messages from two authors without acknowledging them:
// system-only operations are skipped, after skips what a caller has seen, and a replay
// afterwards still delivers everything.
func TestHistory(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, WithAckPolicy(Explicit))
	other := newNode(t)
	var want []operation.Hash
	for _, nd := range []*Node{n, other} {
		pub, sub, err := nd.Stream(ctx, topicT)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "b", "c"} {
			h := publish(t, pub, m)
			if nd == other {
				op, err := other.Store().Get(ctx, h)
				if err != nil {
					t.Fatal(err)
				}
				if err := n.ingestRemote(ctx, topicT, op.HeaderBytes, op.Body, ExternalStream{}); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, h)
		}
		if nd == n {
			pr, err := pub.Prune(ctx, nil) // system-only, never in history; prunes a, b, c
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pr.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			want = want[:0]
			h := publish(t, pub, "d")
			want = append(want, h)
		}
		sub.Close()
	}
	// History is ordered by author, then seq.
	mine, theirs := n.ID(), other.ID()
	if bytes.Compare(mine[:], theirs[:]) > 0 {
		want = append(want[1:], want[0])
	}
	var got []operation.Hash
	for op, err := range n.History(ctx, topicT, nil) {
		if err != nil {
			t.Fatal(err)
		}
		if op.Topic != topicT || op.Replayed || len(op.Message) == 0 {
			t.Fatalf("history entry %+v", op)
		}
		got = append(got, op.Hash)
	}
	if !equalHashes(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}

	// after: everything of other's log up to seq 1 was seen already.
	after := Heights{}
	after.Set(other.ID(), operation.LogIDFromTopic(topicT), 1)
	var rest []operation.Hash
	for op, err := range n.History(ctx, topicT, after) {
		if err != nil {
			t.Fatal(err)
		}
		if op.Author == other.ID() && op.SeqNum <= 1 {
			t.Fatalf("history after %v returned seq %d", after, op.SeqNum)
		}
		rest = append(rest, op.Hash)
	}
	if len(rest) != 2 {
		t.Fatalf("history after: %d entries, want 2", len(rest))
	}

	// Stopping early is fine, and nothing was acknowledged.
	for range n.History(ctx, topicT, nil) {
		break
	}
	_, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev, ok := next(t, sub).(ReplayStarted); !ok || ev.Total != int64(len(want)) {
		t.Fatalf("after History, want a replay of %d, got %+v", len(want), ev)
	}
}

func equalHashes(a, b []operation.Hash) bool {
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
