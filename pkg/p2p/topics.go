package p2p

import (
	"maps"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// topicInterest is the set of topics we look for in discovery: the explicit set (the
// node's streams, via SetTopics/AddTopic/RemoveTopic) plus open ephemeral topics.
type topicInterest struct {
	mu        sync.Mutex
	explicit  map[operation.Topic]struct{}
	ephemeral map[operation.Topic]int
	onGrow    func()
}

func newTopicInterest(onGrow func()) *topicInterest {
	return &topicInterest{
		explicit:  make(map[operation.Topic]struct{}),
		ephemeral: make(map[operation.Topic]int),
		onGrow:    onGrow,
	}
}

func (t *topicInterest) has(topic operation.Topic) bool {
	_, ok := t.explicit[topic]
	return ok || t.ephemeral[topic] > 0
}

func (t *topicInterest) set(topics []operation.Topic) {
	t.mu.Lock()
	grew := false
	next := make(map[operation.Topic]struct{}, len(topics))
	for _, topic := range topics {
		if !t.has(topic) {
			grew = true
		}
		next[topic] = struct{}{}
	}
	t.explicit = next
	t.mu.Unlock()
	if grew {
		t.onGrow()
	}
}

func (t *topicInterest) add(topic operation.Topic) {
	t.mu.Lock()
	grew := !t.has(topic)
	t.explicit[topic] = struct{}{}
	t.mu.Unlock()
	if grew {
		t.onGrow()
	}
}

func (t *topicInterest) remove(topic operation.Topic) {
	t.mu.Lock()
	delete(t.explicit, topic)
	t.mu.Unlock()
}

func (t *topicInterest) addEphemeral(topic operation.Topic) {
	t.mu.Lock()
	grew := !t.has(topic)
	t.ephemeral[topic]++
	t.mu.Unlock()
	if grew {
		t.onGrow()
	}
}

func (t *topicInterest) removeEphemeral(topic operation.Topic) {
	t.mu.Lock()
	if t.ephemeral[topic] <= 1 {
		delete(t.ephemeral, topic)
	} else {
		t.ephemeral[topic]--
	}
	t.mu.Unlock()
}

func (t *topicInterest) list() []operation.Topic {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Collect(maps.Keys(t.explicit))
	for topic := range t.ephemeral {
		if _, ok := t.explicit[topic]; !ok {
			out = append(out, topic)
		}
	}
	return out
}

// SetTopics replaces the set of topics this node looks for in discovery (open ephemeral
// topics are always included). Growing the set restarts the random walk.
func (p *Host) SetTopics(topics []operation.Topic) { p.topics.set(topics) }

// AddTopic adds one topic of interest.
func (p *Host) AddTopic(topic operation.Topic) { p.topics.add(topic) }

// RemoveTopic removes a topic of interest. Known peers for it are forgotten.
func (p *Host) RemoveTopic(topic operation.Topic) {
	p.topics.remove(topic)
	p.topicPeers.dropTopic(topic)
}

// Topics lists the current topics of interest.
func (p *Host) Topics() []operation.Topic { return p.topics.list() }

// TopicPeers returns the peers discovery found to share topic.
func (p *Host) TopicPeers(topic operation.Topic) []peer.ID { return p.topicPeers.peers(topic) }

func (p *Host) onTopicsChanged() {
	for _, ch := range p.walkResets {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// topicPeerSet remembers which peers share which topics, bounded per topic.
type topicPeerSet struct {
	mu sync.Mutex
	m  map[operation.Topic]map[peer.ID]struct{}
}

const maxPeersPerTopic = 256

func newTopicPeerSet() *topicPeerSet {
	return &topicPeerSet{m: make(map[operation.Topic]map[peer.ID]struct{})}
}

func (s *topicPeerSet) add(topic operation.Topic, id peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.m[topic]
	if set == nil {
		set = make(map[peer.ID]struct{})
		s.m[topic] = set
	}
	if len(set) >= maxPeersPerTopic {
		for old := range set { // evict an arbitrary entry; fresh information wins
			delete(set, old)
			break
		}
	}
	set[id] = struct{}{}
}

// replacePeer sets the topics id shares with us (the latest intersection).
func (s *topicPeerSet) replacePeer(id peer.ID, topics []operation.Topic) {
	s.mu.Lock()
	for topic, set := range s.m {
		delete(set, id)
		if len(set) == 0 {
			delete(s.m, topic)
		}
	}
	s.mu.Unlock()
	for _, topic := range topics {
		s.add(topic, id)
	}
}

func (s *topicPeerSet) dropTopic(topic operation.Topic) {
	s.mu.Lock()
	delete(s.m, topic)
	s.mu.Unlock()
}

func (s *topicPeerSet) peers(topic operation.Topic) []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.m[topic]))
}
