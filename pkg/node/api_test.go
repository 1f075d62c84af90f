package node

import (
	"context"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/pipeline"
)

// Observation outcomes are converted from pipeline statuses by value.
func TestOutcomeMatchesPipelineStatus(t *testing.T) {
	for status, outcome := range map[pipeline.Status]Outcome{
		pipeline.Stored: OutcomeStored, pipeline.Duplicate: OutcomeDuplicate, pipeline.Failed: OutcomeFailed,
	} {
		if Outcome(status) != outcome || status.String() != outcome.String() {
			t.Errorf("status %v (%d) maps to %v (%d)", status, status, Outcome(status), outcome)
		}
	}
}

func TestObserverSeesPublishes(t *testing.T) {
	seen := make(chan Observation, 4)
	n := newNode(t, WithObserver(func(o Observation) { seen <- o }))
	pub, _, err := n.Stream(testCtx(t), topicT)
	if err != nil {
		t.Fatal(err)
	}
	h := publish(t, pub, "observed")
	select {
	case o := <-seen:
		if o.Hash != h || o.Outcome != OutcomeStored || o.Topic != topicT || o.Source != (LocalStore{}) {
			t.Fatalf("observation %+v", o)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no observation")
	}
}

// System events and ephemeral streams come as the node's own types.
func TestSystemEventsAndEphemeralStream(t *testing.T) {
	ctx := testCtx(t)
	a := netNode(t)
	events, err := a.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := netNode(t, bootstrapTo(a))
	guard := time.After(30 * time.Second)
	for connected := false; !connected; {
		select {
		case ev := <-events:
			if e, ok := ev.(PeerConnected); ok && e.Peer == b.PeerID() {
				if e.Direction != "inbound" {
					t.Fatalf("b dialled a, but a reports direction %q", e.Direction)
				}
				connected = true
			}
		case <-guard:
			t.Fatal("a never reported b as connected")
		}
	}
	if ls := a.ListenAddrs(); len(ls) == 0 {
		t.Fatal("a has no listen addresses")
	}

	ea, err := a.EphemeralStream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	defer ea.Close()
	eb, err := b.EphemeralStream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	defer eb.Close()
	// Gossip needs a mesh first: publish until b hears a.
	testutil.Eventually(t, 30*time.Second, "ephemeral message from a", func() (bool, error) {
		if err := ea.Publish(ctx, []byte("hi")); err != nil {
			return false, err
		}
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		m, err := eb.Next(rctx)
		if err != nil {
			return false, nil
		}
		return m.Author == a.ID() && string(m.Body) == "hi" && m.Topic == topicT, nil
	})
	eb.Close()
	if _, err := eb.Next(ctx); err != ErrEphemeralClosed {
		t.Fatalf("next after close: %v", err)
	}
}

// SyncPhase is logsync.Phase itself (an alias), so the node and log sync cannot number the
// phases differently: this stops compiling if SyncPhase becomes a separate type again.
var _ = func(p logsync.Phase) SyncPhase { return p }
