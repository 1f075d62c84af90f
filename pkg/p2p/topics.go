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

// SharedTopics returns the topics discovery found id to share with us (as of the latest
// discovery session with it).
func (p *Host) SharedTopics(id peer.ID) []operation.Topic { return p.topicPeers.ofPeer(id) }

func (p *Host) onTopicsChanged() {
	for _, ch := range p.walkResets {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// topicPeerSet remembers which peers share which topics, bounded per topic. byPeer is the
// reverse index, so that a discovery session's result replaces one peer's entries in time
// proportional to what changed rather than to every topic we follow (with 10,000 topics
// the old sweep-and-rebuild was an eighth of a node's CPU).
type topicPeerSet struct {
	mu sync.Mutex
	m  map[operation.Topic]map[peer.ID]struct{}
	// byPeer maps each topic of a peer to the generation of the replacePeer call that last
	// confirmed it, so a replace is one pass over the new list and one over the old.
	byPeer map[peer.ID]map[operation.Topic]uint64
	gen    uint64
}

const maxPeersPerTopic = 256

func newTopicPeerSet() *topicPeerSet {
	return &topicPeerSet{
		m:      make(map[operation.Topic]map[peer.ID]struct{}),
		byPeer: make(map[peer.ID]map[operation.Topic]uint64),
	}
}

// addLocked records that id shares topic. Caller holds s.mu.
func (s *topicPeerSet) addLocked(topic operation.Topic, id peer.ID) {
	set := s.m[topic]
	if set == nil {
		set = make(map[peer.ID]struct{})
		s.m[topic] = set
	}
	if _, ok := set[id]; ok {
		return
	}
	if len(set) >= maxPeersPerTopic {
		for old := range set { // evict an arbitrary entry; fresh information wins
			s.removeLocked(topic, old)
			break
		}
		if s.m[topic] == nil {
			s.m[topic] = set
		}
	}
	set[id] = struct{}{}
	topics := s.byPeer[id]
	if topics == nil {
		topics = make(map[operation.Topic]uint64)
		s.byPeer[id] = topics
	}
	topics[topic] = s.gen
}

// removeLocked forgets that id shares topic. Caller holds s.mu.
func (s *topicPeerSet) removeLocked(topic operation.Topic, id peer.ID) {
	if set := s.m[topic]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(s.m, topic)
		}
	}
	if topics := s.byPeer[id]; topics != nil {
		delete(topics, topic)
		if len(topics) == 0 {
			delete(s.byPeer, id)
		}
	}
}

func (s *topicPeerSet) add(topic operation.Topic, id peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(topic, id)
}

// replacePeer sets the topics id shares with us (the latest intersection) and returns
// those it did not share before.
func (s *topicPeerSet) replacePeer(id peer.ID, topics []operation.Topic) (added []operation.Topic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	known := s.byPeer[id]
	for _, t := range topics {
		if _, ok := known[t]; ok {
			known[t] = s.gen
		} else {
			s.addLocked(t, id)
			known = s.byPeer[id]
			added = append(added, t)
		}
	}
	for t, g := range known {
		if g != s.gen {
			s.removeLocked(t, id)
		}
	}
	return added
}

// ofPeer lists the topics id shares with us.
func (s *topicPeerSet) ofPeer(id peer.ID) []operation.Topic {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.byPeer[id]))
}

func (s *topicPeerSet) dropTopic(topic operation.Topic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.m[topic] {
		s.removeLocked(topic, id)
	}
	delete(s.m, topic)
}

func (s *topicPeerSet) peers(topic operation.Topic) []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.m[topic]))
}
