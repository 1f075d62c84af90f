package p2p

import (
	"fmt"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// checkIndexes fails unless the topic → peers map and its reverse index agree exactly.
func checkIndexes(t *testing.T, s *topicPeerSet) {
	t.Helper()
	pairs := 0
	for topic, set := range s.m {
		if len(set) == 0 {
			t.Fatalf("empty peer set kept for %s", topic)
		}
		for id := range set {
			if _, ok := s.byPeer[id][topic]; !ok {
				t.Fatalf("%s shares %s but the reverse index lacks it", id, topic)
			}
			pairs++
		}
	}
	for id, topics := range s.byPeer {
		if len(topics) == 0 {
			t.Fatalf("empty topic set kept for %s", id)
		}
		pairs -= len(topics)
	}
	if pairs != 0 {
		t.Fatalf("reverse index has %d pairs more than the forward one", -pairs)
	}
}

func TestTopicPeerSetReplaceDropEvict(t *testing.T) {
	s := newTopicPeerSet()
	a, b := peer.ID("peer-a"), peer.ID("peer-b")
	if added := s.replacePeer(a, topicSet(1, 2, 3)); len(added) != 3 {
		t.Fatalf("first session added %d topics, want 3", len(added))
	}
	s.replacePeer(b, topicSet(2, 3))
	checkIndexes(t, s)
	// a's next session shares 3 and 4: it leaves 1 and 2, keeps 3, gains 4 (the only new
	// pair, so the only TopicPeer event).
	if added := s.replacePeer(a, topicSet(3, 4)); !slices.Equal(added, topicSet(4)) {
		t.Fatalf("second session added %v, want only topic 4", added)
	}
	checkIndexes(t, s)
	if got := sortedTopics(s.ofPeer(a)); !slices.Equal(got, sortedTopics(topicSet(3, 4))) {
		t.Fatalf("a shares %v, want topics 3 and 4", got)
	}
	for n, want := range map[byte][]peer.ID{1: nil, 2: {b}, 3: {a, b}, 4: {a}} {
		got := s.peers(topicN(n))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("topic %d: peers %v, want %v", n, got, want)
		}
	}
	s.dropTopic(topicN(3))
	checkIndexes(t, s)
	if len(s.peers(topicN(3))) != 0 {
		t.Fatal("dropped topic still has peers")
	}
	s.replacePeer(b, nil)
	checkIndexes(t, s)
	if _, ok := s.byPeer[b]; ok {
		t.Fatal("a peer sharing nothing is still indexed")
	}
	// A full topic evicts one peer, from both indexes.
	for i := range maxPeersPerTopic + 10 {
		s.add(topicN(9), peer.ID(fmt.Sprintf("p%d", i)))
	}
	checkIndexes(t, s)
	if n := len(s.peers(topicN(9))); n != maxPeersPerTopic {
		t.Fatalf("topic holds %d peers, want the bound %d", n, maxPeersPerTopic)
	}
}
