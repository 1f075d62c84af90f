package p2p

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

func topicSet(ns ...byte) []operation.Topic {
	out := make([]operation.Topic, len(ns))
	for i, n := range ns {
		out[i] = topicN(n)
	}
	return out
}

func sortedTopics(ts []operation.Topic) []operation.Topic {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b operation.Topic) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Spec appendix C (psi_hash.rs::topic_discovery): Alice {1,2,98,99}, Bob {2,3,99,100}
// both learn {2,99} and nothing else.
func TestPSIIntersection(t *testing.T) {
	aliceTopics, bobTopics := topicSet(1, 2, 98, 99), topicSet(2, 3, 99, 100)
	var alice, bob saltHalf
	alice[0], bob[0] = 0xaa, 0xbb

	fromBob := psiHashes(bobTopics, alice, bob, psiRoleBob)
	fromAlice := psiHashes(aliceTopics, alice, bob, psiRoleAlice)
	aliceLearns := psiIntersect(aliceTopics, fromBob, alice, bob, psiRoleBob)
	bobLearns := psiIntersect(bobTopics, fromAlice, alice, bob, psiRoleAlice)
	want := topicSet(2, 99)
	if !slices.Equal(sortedTopics(aliceLearns), want) || !slices.Equal(sortedTopics(bobLearns), want) {
		t.Fatalf("alice learned %v, bob learned %v, want %v", aliceLearns, bobLearns, want)
	}

	// Nothing else: topics Alice does not have (3, 100) are only hashes to her, and no
	// raw topic id travels.
	for _, h := range append(fromBob, fromAlice...) {
		for _, topic := range append(aliceTopics, bobTopics...) {
			if bytes.Equal(h[:], topic[:]) {
				t.Fatal("a topic id was sent in clear")
			}
		}
	}
	// Echoing Bob's hashes back does not make Bob believe Alice shares his topics.
	if echoed := psiIntersect(bobTopics, fromBob, alice, bob, psiRoleAlice); len(echoed) != 0 {
		t.Fatalf("echoed hashes matched %v", echoed)
	}
	// Another session (other salt) yields unlinkable hashes.
	var alice2 saltHalf
	alice2[0] = 0xcc
	other := psiHashes(bobTopics, alice2, bob, psiRoleBob)
	for _, h := range other {
		if slices.Contains(fromBob, h) {
			t.Fatal("hashes repeat across sessions")
		}
	}
}

// The same PSI case over a real discovery session between two hosts, checking results,
// TopicPeers and events on both sides.
func TestDiscoverySessionSharesOnlyCommonTopics(t *testing.T) {
	alice := newTestHost(t, func(c *Config) {})
	bob := newTestHost(t, nil)
	alice.SetTopics(topicSet(1, 2, 98, 99))
	bob.SetTopics(topicSet(2, 3, 99, 100))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	evA, evB := alice.Events(ctx), bob.Events(ctx)
	connect(t, alice, bob)

	shared, err := alice.Discover(ctx, bob.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := topicSet(2, 99)
	if !slices.Equal(sortedTopics(shared), want) {
		t.Fatalf("alice shares %v, want %v", shared, want)
	}
	ended := waitEvent(t, evB, func(e Event) bool { _, ok := e.(DiscoverySessionEnded); return ok }).(DiscoverySessionEnded)
	if ended.Peer != alice.ID() || ended.Role != RoleAccepted || ended.Topics != 2 {
		t.Fatalf("bob's session: %+v", ended)
	}
	if ended.Records == 0 {
		t.Fatal("bob received no peer record from alice")
	}
	collect := func(ch <-chan Event, from peer.ID) {
		seen := map[operation.Topic]bool{}
		for len(seen) < len(want) {
			tp := waitEvent(t, ch, func(e Event) bool { _, ok := e.(TopicPeer); return ok }).(TopicPeer)
			if tp.Peer != from || !slices.Contains(want, tp.Topic) {
				t.Fatalf("unexpected %+v", tp)
			}
			seen[tp.Topic] = true
		}
	}
	collect(evA, bob.ID())
	collect(evB, alice.ID())
	for _, topic := range want {
		if !slices.Equal(alice.TopicPeers(topic), []peer.ID{bob.ID()}) || !slices.Equal(bob.TopicPeers(topic), []peer.ID{alice.ID()}) {
			t.Fatalf("topic peers for %s: alice %v bob %v", topic, alice.TopicPeers(topic), bob.TopicPeers(topic))
		}
	}
	for _, n := range []byte{1, 3, 98, 100} {
		if len(alice.TopicPeers(topicN(n))) != 0 || len(bob.TopicPeers(topicN(n))) != 0 {
			t.Fatalf("topic %d reported as shared", n)
		}
	}
}

type staticBook struct{ peers, boots []peer.ID }

func (b *staticBook) known() []peer.ID      { return b.peers }
func (b *staticBook) bootstraps() []peer.ID { return b.boots }

// Spec appendix C (random_walk.rs::explore_full_graph): node 0 knowing only bootstrap 1
// visits all 8 other nodes of a 9-node tree, each step fed the neighbours of the node it
// visited.
func TestWalkStrategyExploresTree(t *testing.T) {
	ids := make([]peer.ID, 9)
	for i := range ids {
		ids[i] = peer.ID(fmt.Sprintf("node-%d", i))
	}
	// 1 is the root; 0, 2, 3 its children; 4, 5 under 2; 6, 7 under 3; 8 under 4.
	edges := [][2]int{{1, 0}, {1, 2}, {1, 3}, {2, 4}, {2, 5}, {3, 6}, {3, 7}, {4, 8}}
	neighbours := map[peer.ID][]peer.ID{}
	for _, e := range edges {
		a, b := ids[e[0]], ids[e[1]]
		neighbours[a] = append(neighbours[a], b)
		neighbours[b] = append(neighbours[b], a)
	}
	run := func(seed uint64, resetProb float64, maxSteps int) int {
		book := &staticBook{peers: []peer.ID{ids[1]}, boots: []peer.ID{ids[1]}}
		w := newWalkState(ids[0], rand.New(rand.NewPCG(seed, 0)))
		w.resetProb = resetProb
		seen := map[peer.ID]bool{}
		var learned []peer.ID
		for step := 1; step <= maxSteps; step++ {
			id, ok := w.next(learned, book)
			if !ok {
				t.Fatalf("seed %d: walk stopped after %d steps", seed, step)
			}
			if id == ids[0] {
				t.Fatal("walker visited itself")
			}
			seen[id] = true
			learned = neighbours[id]
			for _, n := range learned { // the address book learns as the walk goes
				if !slices.Contains(book.peers, n) {
					book.peers = append(book.peers, n)
				}
			}
			if len(seen) == 8 {
				return step
			}
		}
		t.Fatalf("seed %d: visited %d of 8 nodes in %d steps", seed, len(seen), maxSteps)
		return 0
	}
	// Without resets every step visits a new node: exactly 8 steps.
	for seed := range uint64(20) {
		if steps := run(seed, 0, 8); steps != 8 {
			t.Fatalf("seed %d: %d steps without resets", seed, steps)
		}
	}
	// With p2panda's reset probability the walk still covers the tree.
	for seed := range uint64(50) {
		run(seed, resetProbability, 200)
	}
}

// Nine hosts wired as the tree above, each knowing only its parent as bootstrap: the
// random walk of node 0 visits all eight others over real discovery sessions.
func TestRandomWalkVisitsTree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 9 hosts")
	}
	parent := map[int]int{0: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4}
	hosts := make([]*Host, 9)
	hosts[1] = newTestHost(t, nil)
	for _, i := range []int{2, 3, 4, 5, 6, 7, 8} {
		hosts[i] = newTestHost(t, func(c *Config) { c.BootstrapPeers = hosts[parent[i]].Addrs() })
	}
	// Wait until every child is connected to its parent (so parents know children).
	for child, par := range parent {
		if child == 0 {
			continue
		}
		eventually(t, "tree connected", func() bool { return hosts[par].gate.isMember(hosts[child].ID()) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hosts[0] = newTestHost(t, func(c *Config) {
		c.BootstrapPeers = hosts[1].Addrs()
		c.DisableRandomWalk = false
		c.WalkInterval = 20 * time.Millisecond
		c.MaxWalkInterval = 200 * time.Millisecond
	})
	ev := hosts[0].Events(ctx)
	visited := map[peer.ID]bool{}
	for len(visited) < 8 {
		select {
		case e := <-ev:
			if ended, ok := e.(DiscoverySessionEnded); ok && ended.Role == RoleInitiated {
				visited[ended.Peer] = true
			}
		case <-ctx.Done():
			t.Fatalf("walk visited %d of 8 nodes", len(visited))
		}
	}
	for i, h := range hosts[1:] {
		if !visited[h.ID()] {
			t.Fatalf("node %d not visited", i+1)
		}
	}
}

// manyTopics returns n distinct topics derived from seed.
func manyTopics(seed string, n int) []operation.Topic {
	out := make([]operation.Topic, n)
	for i := range out {
		out[i] = operation.Topic(operation.HashOf(fmt.Appendf(nil, "%s %d", seed, i)))
	}
	return out
}

// A node following 10,000 topics (more than the 1,024 the protocol once allowed, which made
// every session fail) learns in one session every topic it shares with its peer, and only
// those.
func TestDiscoveryManyTopics(t *testing.T) {
	shared := manyTopics("shared", 6000)
	alice := newTestHost(t, nil)
	bob := newTestHost(t, nil)
	alice.SetTopics(append(slices.Clone(shared), manyTopics("alice only", 4000)...))
	bob.SetTopics(append(slices.Clone(shared), manyTopics("bob only", 4000)...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	connect(t, alice, bob)
	got, err := alice.Discover(ctx, bob.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sortedTopics(got), sortedTopics(shared)) {
		t.Fatalf("alice learned %d shared topics, want the %d shared ones", len(got), len(shared))
	}
}

// Beyond maxTopicHashes a side announces a bounded, per-session different subset: every
// frame still fits the protocol's limits, and another salt picks other topics, so repeated
// sessions cover all of them.
func TestPSIHashesBeyondLimit(t *testing.T) {
	topics := manyTopics("many", maxTopicHashes+500)
	var alice, bob, alice2 saltHalf
	alice[0], bob[0], alice2[0] = 1, 2, 3
	first := psiHashes(topics, alice, bob, psiRoleAlice)
	if len(first) != maxTopicHashes {
		t.Fatalf("announced %d hashes, want the limit %d", len(first), maxTopicHashes)
	}
	frame, err := encodeDiscMessage(&discMessage{Kind: msgAliceHashes, Hashes: hashesToWire(first)})
	if err != nil {
		t.Fatalf("a full announcement does not encode: %v", err)
	}
	if _, err := decodeDiscMessage(frame); err != nil {
		t.Fatalf("a full announcement does not decode: %v", err)
	}
	// The subset found by the other side in each session: together they cover more.
	inFirst := len(psiIntersect(topics, first, alice, bob, psiRoleAlice))
	second := psiHashes(topics, alice2, bob, psiRoleAlice)
	inEither := map[operation.Topic]bool{}
	for _, tp := range psiIntersect(topics, first, alice, bob, psiRoleAlice) {
		inEither[tp] = true
	}
	for _, tp := range psiIntersect(topics, second, alice2, bob, psiRoleAlice) {
		inEither[tp] = true
	}
	if inFirst != maxTopicHashes || len(inEither) <= maxTopicHashes {
		t.Fatalf("one session matched %d, two sessions %d topics of %d", inFirst, len(inEither), len(topics))
	}
}
