package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
)

// sessionStates counts the per-session check state the node's sync sink holds.
func sessionStates(n *Node) int {
	n.net.sink.mu.Lock()
	defer n.net.sink.mu.Unlock()
	return len(n.net.sink.sessions)
}

// waitSyncEnded reads sub until a sync session's catch-up completed.
func waitSyncEnded(t *testing.T, sub *Subscription) {
	t.Helper()
	guard := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatal("events channel closed")
			}
			if e, ok := ev.(SyncEnded); ok && e.Err == nil {
				return
			}
		case <-guard:
			t.Fatal("no completed sync session")
		}
	}
}

// Live sessions that carry operations both ways and then end cleanly (the subscriber
// closes its stream while the peers stay connected) must leave no per-session state on
// either side: always-on nodes keep their peers for days. Each round uses its own topic,
// which a keeps streaming, so every session is a fresh one.
func TestLiveSessionsLeaveNoState(t *testing.T) {
	ctx := testCtx(t)
	a := netNode(t)
	b := netNode(t, bootstrapTo(a))
	const rounds = 12
	for i := range rounds {
		topic := operation.Topic(operation.HashOf([]byte(fmt.Sprintf("live session %d", i))))
		pubA, subA, err := a.Stream(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		pubB, subB, err := b.Stream(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		waitSyncEnded(t, subB)
		// Both directions in the live phase, so both sinks hold state for the session.
		publish(t, pubA, fmt.Sprintf("live from a %d", i))
		for msg, op := range collect(t, subB, 1) {
			if src, ok := op.Source.(SyncSession); !ok || src.Phase != PhaseLive {
				t.Fatalf("%q arrived from %+v, want a live sync session", msg, op.Source)
			}
		}
		publish(t, pubB, fmt.Sprintf("live from b %d", i))
		collect(t, subA, 1)
		if err := subB.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.Peers()) == 0 {
		t.Fatal("the peers disconnected; the test would not show a leak")
	}
	testutil.Eventually(t, 30*time.Second, "session state released", func() (bool, error) {
		na, nb := sessionStates(a), sessionStates(b)
		if na != 0 || nb != 0 {
			return false, fmt.Errorf("%d session states on a, %d on b after %d live sessions ended", na, nb, rounds)
		}
		return true, nil
	})
}
