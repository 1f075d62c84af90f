package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
)

var testNetwork = operation.NetworkID(operation.HashOf([]byte("pandanet node tests")))

type netOpt func(*NetworkConfig)

// testLogger discards logs unless PANDA_TEST_LOG is set (then debug logs go to stderr).
func testLogger() *slog.Logger {
	if os.Getenv("PANDA_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func withNetworkID(id operation.NetworkID) netOpt {
	return func(c *NetworkConfig) { c.NetworkID = id }
}

func bootstrapTo(peers ...*Node) netOpt {
	return func(c *NetworkConfig) {
		for _, p := range peers {
			c.BootstrapPeers = append(c.BootstrapPeers, p.Addrs()[0])
		}
	}
}

// netNode starts a networked node on 127.0.0.1 (TCP only, mDNS off, fast walks).
func netNode(t *testing.T, opts ...netOpt) *Node {
	t.Helper()
	return newNode(t, WithNetwork(loopbackNetwork(opts...)))
}

// collect reads events until it saw want distinct Processed messages, failing after a guard
// timeout. Sync and replay events are skipped.
func collect(t *testing.T, sub *Subscription, want int) map[string]ProcessedOperation {
	t.Helper()
	got := map[string]ProcessedOperation{}
	guard := time.After(60 * time.Second)
	for len(got) < want {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatal("events channel closed")
			}
			if p, ok := ev.(Processed); ok {
				got[string(p.Operation.Message)] = p.Operation
			}
		case <-guard:
			t.Fatalf("received %d of %d messages: %v", len(got), want, keys(got))
		}
	}
	return got
}

func keys(m map[string]ProcessedOperation) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// waitStored polls the store until topic holds exactly want operations.
func waitStored(t *testing.T, n *Node, topic operation.Topic, want int64) {
	t.Helper()
	pollStored(t, n, topic, func(have int64) bool { return have == want }, fmt.Sprintf("%d", want))
}

// waitStoredAtLeast polls the store until topic holds at least want operations.
func waitStoredAtLeast(t *testing.T, n *Node, topic operation.Topic, want int64) {
	t.Helper()
	pollStored(t, n, topic, func(have int64) bool { return have >= want }, fmt.Sprintf("at least %d", want))
}

// pollStored polls the topic's operation count until done accepts it, failing after a
// generous guard timeout.
func pollStored(t *testing.T, n *Node, topic operation.Topic, done func(int64) bool, want string) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("node %s to hold %s operations", n.ID().Short(), want), func() (bool, error) {
		stats, err := n.Store().TopicStats(context.Background())
		if err != nil {
			return false, err
		}
		var have int64
		for _, s := range stats {
			if s.Topic == topic {
				have = s.Ops
			}
		}
		return done(have), fmt.Errorf("holds %d", have)
	})
}

// p2panda's eventually_consistent_stream: A publishes before B even exists; B still gets it.
func TestEventuallyConsistentStream(t *testing.T) {
	ctx := testCtx(t)
	a := netNode(t)
	pubA, _, err := a.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, pubA, fmt.Sprintf("from A %d", i))
	}
	b := netNode(t, bootstrapTo(a))
	_, subB, err := b.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, subB, 3)
	for msg, op := range got {
		if op.Author != a.ID() {
			t.Errorf("%q authored by %s, want %s", msg, op.Author.Short(), a.ID().Short())
		}
		if _, ok := op.Source.(SyncSession); !ok {
			t.Errorf("%q came from %T, want SyncSession", msg, op.Source)
		}
	}
}

// Three nodes, each publishing, all converge on the same set of operations; new operations
// published while sessions are live reach everyone too.
func TestThreeNodesConverge(t *testing.T) {
	ctx := testCtx(t)
	hub := netNode(t)
	b := netNode(t, bootstrapTo(hub))
	c := netNode(t, bootstrapTo(hub))
	nodes := []*Node{hub, b, c}
	pubs := make([]*Publisher, len(nodes))
	subs := make([]*Subscription, len(nodes))
	for i, n := range nodes {
		var err error
		pubs[i], subs[i], err = n.Stream(ctx, topicT)
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, pub := range pubs {
		for j := range 5 {
			publish(t, pub, fmt.Sprintf("node %d msg %d", i, j))
		}
	}
	for _, n := range nodes {
		waitStored(t, n, topicT, 15)
	}
	// Live phase: one more from c reaches b (possibly through the hub).
	publish(t, pubs[2], "live from c")
	for _, n := range nodes {
		waitStored(t, n, topicT, 16)
	}
	collect(t, subs[1], 16)
}

// A node whose app never reads its subscription still serves its peers' catch-up and
// stores their live operations: the sync status events (SyncStarted, SyncEnded) queued for
// that subscription must not hold up the sessions that report them. (Before, a session
// blocked on the full event channel: its sender stopped, pings included, or its reader
// stopped taking live operations, and neither came back until the app read.)
func TestUnreadSubscriptionDoesNotStallSync(t *testing.T) {
	ctx := testCtx(t)
	// Unbuffered and never read: the first event for a's subscription cannot be handed over.
	a := newNode(t, WithEventBuffer(0), WithNetwork(loopbackNetwork()))
	pubA, _, err := a.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, pubA, fmt.Sprintf("catch-up from a %d", i))
	}
	b := netNode(t, bootstrapTo(a))
	pubB, subB, err := b.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, subB, 3) // a's sender pushed its log
	publish(t, pubB, "live from b")
	waitStored(t, a, topicT, 4) // a's reader took b's live operation
	publish(t, pubA, "live from a")
	waitStored(t, b, topicT, 5) // and a's sender forwards live
}

// An edge publishes while the other edge is offline, then leaves; the other edge comes
// online later and gets everything from the always-on node (store-and-forward).
func TestStoreAndForward(t *testing.T) {
	ctx := testCtx(t)
	always := netNode(t, func(c *NetworkConfig) { c.Public = true; c.RelayService = true })
	if _, _, err := always.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	edgeA := netNode(t, bootstrapTo(always))
	pubA, _, err := edgeA.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(t, pubA, fmt.Sprintf("offline message %d", i))
	}
	waitStored(t, always, topicT, 5)
	if err := edgeA.Close(); err != nil {
		t.Fatal(err)
	}

	edgeB := netNode(t, bootstrapTo(always))
	_, subB, err := edgeB.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for msg, op := range collect(t, subB, 5) {
		if op.Author != edgeA.ID() {
			t.Errorf("%q authored by %s, want edge A", msg, op.Author.Short())
		}
	}
}

// A node of another network, bootstrapped to the same peer, never receives anything.
func TestOtherNetworkGetsNothing(t *testing.T) {
	ctx := testCtx(t)
	a := netNode(t)
	pubA, _, err := a.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pubA, "for my network only")
	foreign := netNode(t, bootstrapTo(a), withNetworkID(operation.NetworkID(operation.HashOf([]byte("another network")))))
	if _, _, err := foreign.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	// A same-network node bootstrapped at the same time is the marker: once it has synced,
	// the foreign node had the same chance.
	friend := netNode(t, bootstrapTo(a))
	if _, _, err := friend.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	waitStored(t, friend, topicT, 1)
	stats, err := foreign.Store().TopicStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Ops > 0 {
			t.Fatalf("foreign network node stored %d operations", s.Ops)
		}
	}
	for _, p := range foreign.Peers() {
		if p.ID == a.PeerID() && p.InNetwork {
			t.Fatal("foreign node counts a as an in-network peer")
		}
	}
}

// An edge node that restarts without any bootstrap peer finds the always-on node it knew
// through the address book persisted in its database, and catches up what it missed.
func TestRestartWithoutBootstrapFindsKnownPeers(t *testing.T) {
	ctx := testCtx(t)
	always := netNode(t, func(c *NetworkConfig) { c.Public = true })
	pubAlways, _, err := always.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edge.sqlite")
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	openEdge := func(opts ...netOpt) *Node {
		return newNode(t, WithDatabase(path), WithPrivateKey(key), WithNetwork(loopbackNetwork(opts...)))
	}

	edge := openEdge(bootstrapTo(always))
	pubEdge, _, err := edge.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pubEdge, "from the edge")
	waitStored(t, always, topicT, 1)
	if err := edge.Close(); err != nil {
		t.Fatal(err)
	}

	publish(t, pubAlways, "while the edge was away 1")
	publish(t, pubAlways, "while the edge was away 2")
	edge = openEdge() // no bootstrap peer, no mDNS
	if _, _, err := edge.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	waitStored(t, edge, topicT, 3)
}

// A peer sharing a few topics is reconciled after every discovery session (a sync worker
// in backoff retries as soon as the peer answers); the interval grows with the topics it
// shares, since each reconciliation costs a sync-manager call per topic, up to 10 s.
func TestReconcileIntervalScalesWithSharedTopics(t *testing.T) {
	for _, c := range []struct {
		shared int
		want   time.Duration
	}{
		{1, time.Millisecond},
		{100, 100 * time.Millisecond},
		{1000, time.Second},
		{10000, 10 * time.Second},
		{100000, 10 * time.Second},
	} {
		if got := reconcileInterval(c.shared); got != c.want {
			t.Errorf("reconcileInterval(%d) = %v, want %v", c.shared, got, c.want)
		}
	}
}
