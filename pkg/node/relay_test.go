package node

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/operation"
)

// behindNAT makes a node unreachable except through a relay: no listen address at all,
// explicit reservations on its bootstrap peers (the relays).
func behindNAT(c *NetworkConfig) {
	c.NoListen = true
	c.RelayReservations = true
}

func relayNode(c *NetworkConfig) {
	c.Public = true
	c.RelayService = true
}

// Two peers without any listen address (so neither can dial the other) find each other
// through a relay that does not stream the topic, and replicate in both directions over
// relayed connections. The relay forwards bytes only: it stores nothing of the topic.
func TestRelayedPeersExchangeOperations(t *testing.T) {
	ctx := testCtx(t)
	relay := netNode(t, relayNode)
	a := netNode(t, behindNAT, bootstrapTo(relay))
	b := netNode(t, behindNAT, bootstrapTo(relay))
	pubA, subA, err := a.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	pubB, subB, err := b.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, pubA, fmt.Sprintf("a %d", i))
		publish(t, pubB, fmt.Sprintf("b %d", i))
	}
	for _, c := range []struct {
		sub  *Subscription
		from *Node
	}{{subA, b}, {subB, a}} {
		n := 0
		for msg, op := range collect(t, c.sub, 6) {
			if op.Author != c.from.ID() {
				continue
			}
			n++
			if _, ok := op.Source.(SyncSession); !ok {
				t.Errorf("%q came from %T, want SyncSession", msg, op.Source)
			}
		}
		if n != 3 {
			t.Errorf("received %d operations of %s, want 3", n, c.from.ID().Short())
		}
	}
	// Live phase, after the catch-up: still through the relay.
	publish(t, pubA, "live from a")
	waitStored(t, b, topicT, 7)

	found := false
	for _, p := range a.Peers() {
		if p.ID != b.PeerID() {
			continue
		}
		found = true
		if !p.Relayed {
			t.Errorf("a reaches b directly (%v), want only relayed connections", p.Addrs)
		}
	}
	if !found {
		t.Error("a has no connection to b, yet they synced")
	}
	for _, n := range []*Node{a, b} {
		for _, addr := range n.Addrs() {
			if _, err := addr.ValueForProtocol(ma.P_CIRCUIT); err != nil {
				t.Errorf("%s advertises a direct address %s", n.ID().Short(), addr)
			}
		}
	}
	stats, err := relay.Store().TopicStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Ops > 0 {
			t.Errorf("relay stored %d operations of topic %s", s.Ops, s.Topic)
		}
	}
}

// A partition heals. The partition is simulated by taking node c off the network (Close)
// while a and b keep publishing; c published before and right at the split. When c comes
// back on the same file store (same key, same operations) all four nodes converge on the
// union, and c's app is handed what it had not acknowledged, including everything
// published during the partition.
func TestPartitionHeals(t *testing.T) {
	ctx := testCtx(t)
	hub := netNode(t, relayNode)
	a := netNode(t, bootstrapTo(hub))
	b := netNode(t, bootstrapTo(hub))
	nodes := []*Node{hub, a, b}
	pubs := map[*Node]*Publisher{}
	for _, n := range nodes {
		pub, sub, err := n.Stream(ctx, topicT)
		if err != nil {
			t.Fatal(err)
		}
		pubs[n] = pub
		drain(t, sub)
	}

	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dbC := filepath.Join(t.TempDir(), "c.sqlite")
	startC := func() (*Node, *Publisher, *Subscription) {
		c := newNode(t, WithPrivateKey(key), WithDatabase(dbC), WithNetwork(loopbackNetwork(bootstrapTo(hub))))
		pub, sub, err := c.Stream(ctx, topicT)
		if err != nil {
			t.Fatal(err)
		}
		return c, pub, sub
	}
	c, pubC, subC := startC()
	publish(t, pubC, "c before the partition")
	publish(t, pubs[a], "a before the partition")
	for _, n := range []*Node{hub, a, b, c} {
		waitStored(t, n, topicT, 2)
	}
	collect(t, subC, 2)
	// Published right before c goes away: it may or may not leave c before the split;
	// either way it must end up everywhere.
	publish(t, pubC, "c at the partition")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 5 {
		publish(t, pubs[a], fmt.Sprintf("a during the partition %d", i))
		publish(t, pubs[b], fmt.Sprintf("b during the partition %d", i))
	}
	// 12 or 13, depending on "c at the partition".
	for _, n := range nodes {
		waitStoredAtLeast(t, n, topicT, 12)
	}

	c, pubC, subC = startC()
	publish(t, pubC, "c after the partition")
	for _, n := range []*Node{hub, a, b, c} {
		waitStored(t, n, topicT, 14)
	}
	// With automatic acks c's app had acknowledged the first two (and possibly "c at the
	// partition"); the 10 operations of the partition and c's new one arrive, and nothing
	// it had acknowledged is repeated (a repeat would come with the replay, before these).
	wantMsgs := []string{"c after the partition"}
	for i := range 5 {
		wantMsgs = append(wantMsgs, fmt.Sprintf("a during the partition %d", i), fmt.Sprintf("b during the partition %d", i))
	}
	got := collectMessages(t, subC, wantMsgs)
	for _, msg := range []string{"c before the partition", "a before the partition"} {
		if _, ok := got[msg]; ok {
			t.Errorf("acknowledged %q delivered again after restart", msg)
		}
	}
	// The same operations everywhere: identical per-log heights.
	want, err := hub.Store().LogHeights(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b, c} {
		h, err := n.Store().LogHeights(ctx, topicT)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, want) {
			t.Errorf("node %s heights %v, hub %v", n.ID().Short(), h, want)
		}
	}
}

// collectMessages reads Processed events until every message in want was seen and
// returns all messages seen; it fails after a guard timeout.
func collectMessages(t *testing.T, sub *Subscription, want []string) map[string]ProcessedOperation {
	t.Helper()
	got := map[string]ProcessedOperation{}
	missing := func() []string {
		var out []string
		for _, m := range want {
			if _, ok := got[m]; !ok {
				out = append(out, m)
			}
		}
		return out
	}
	guard := time.After(60 * time.Second)
	for len(missing()) > 0 {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatal("events channel closed")
			}
			if p, ok := ev.(Processed); ok {
				got[string(p.Operation.Message)] = p.Operation
			}
		case <-guard:
			t.Fatalf("never received %v", missing())
		}
	}
	return got
}

// drain consumes a subscription's events for the rest of the test (automatic acks).
func drain(t *testing.T, sub *Subscription) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sub.Events() {
		}
	}()
	t.Cleanup(func() {
		sub.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("subscription did not close")
		}
	})
}
