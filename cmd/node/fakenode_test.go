package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// memNode is an in-memory daemonNode: one author (the node), operations kept per topic.
// It lets the daemon logic be tested without libp2p and SQLite.
type memNode struct {
	key operation.PrivateKey

	mu      sync.Mutex
	logs    map[operation.Topic][]node.ProcessedOperation
	open    map[operation.Topic]*memStream
	opened  []operation.Topic // every Open call, in order
	acked   []string
	cursor  map[operation.Topic]uint64 // highest acknowledged seq per topic
	closed  bool
	publish chan struct{} // if non-nil, Publish blocks until it can receive from it
	entered chan struct{} // if non-nil, Publish sends to it before blocking on publish
	// beforeHistory, if set, runs at the start of History (to interleave live events).
	beforeHistory func()
	// reconfigured records every Reconfigure call.
	reconfigured []*config.Config
	// policies are the installed topic policies; policySetBeforeOpen records, per topic,
	// whether its policy was installed before the topic was first opened.
	policies            map[operation.Topic]policy.Policy
	policySetBeforeOpen map[operation.Topic]bool
	// hung, while set, makes Alive wait for its context like a node whose writer is stuck.
	hung atomic.Bool
}

func (n *memNode) Alive(ctx context.Context) error {
	if n.hung.Load() {
		<-ctx.Done()
		return fmt.Errorf("store writer hung: %w", ctx.Err())
	}
	return nil
}

// emit delivers a stream event on an open topic, as the node does for sync events.
func (n *memNode) emit(t operation.Topic, ev node.Event) error {
	n.mu.Lock()
	s := n.open[t]
	n.mu.Unlock()
	if s == nil {
		return fmt.Errorf("topic %s is not open", t)
	}
	s.events <- ev
	return nil
}

func (n *memNode) SetTopicPolicy(_ context.Context, t operation.Topic, p policy.Policy) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.policies == nil {
		n.policies, n.policySetBeforeOpen = map[operation.Topic]policy.Policy{}, map[operation.Topic]bool{}
	}
	if p.IsZero() {
		delete(n.policies, t)
		return nil
	}
	n.policies[t] = p
	if _, seen := n.policySetBeforeOpen[t]; !seen {
		n.policySetBeforeOpen[t] = n.open[t] == nil
	}
	return nil
}

func (n *memNode) policy(t operation.Topic) (policy.Policy, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.policies[t]
	return p, ok
}

func (n *memNode) Reconfigure(cfg *config.Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reconfigured = append(n.reconfigured, cfg)
	return nil
}

func newMemNode() *memNode {
	k, err := operation.GenerateKey()
	if err != nil {
		panic(err)
	}
	return &memNode{key: k, logs: map[operation.Topic][]node.ProcessedOperation{}, open: map[operation.Topic]*memStream{},
		cursor: map[operation.Topic]uint64{}}
}

func (n *memNode) PeerID() string {
	id, _ := identityOf(n.key)
	return id.PeerID
}
func (n *memNode) PublicKey() operation.PublicKey { return n.key.PublicKey() }
func (n *memNode) NetworkID() operation.NetworkID { return operation.DefaultNetworkID }
func (n *memNode) Addrs() []string                { return []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + n.PeerID()} }
func (n *memNode) Peers() []admin.PeerStatus      { return nil }
func (n *memNode) Ready(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("closed")
	}
	return nil
}

func (n *memNode) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.open) > 0 {
		return fmt.Errorf("node closed with %d topics still open", len(n.open))
	}
	n.closed = true
	return nil
}

func (n *memNode) TopicStatus(_ context.Context, t operation.Topic) (admin.TopicStatus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := admin.TopicStatus{Topic: t.String(), Operations: int64(len(n.logs[t])), Logs: []admin.LogStatus{}}
	if len(n.logs[t]) > 0 {
		st.Authors = 1
		st.Logs = append(st.Logs, admin.LogStatus{Author: n.key.PublicKey().String(), Height: uint64(len(n.logs[t]) - 1)})
	}
	return st, nil
}

func (n *memNode) Open(_ context.Context, t operation.Topic) (topicStream, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.open[t] != nil {
		return nil, fmt.Errorf("topic %s opened twice", t)
	}
	s := &memStream{n: n, topic: t, events: make(chan node.Event, 1024)}
	n.open[t] = s
	n.opened = append(n.opened, t)
	return s, nil
}

func (n *memNode) History(ctx context.Context, t operation.Topic, from admin.From, fn func(node.ProcessedOperation) error) error {
	if n.beforeHistory != nil {
		n.beforeHistory()
	}
	n.mu.Lock()
	ops := append([]node.ProcessedOperation(nil), n.logs[t]...)
	if c, ok := n.cursor[t]; ok && from == admin.FromFrontier {
		ops = ops[c+1:]
	}
	n.mu.Unlock()
	for _, op := range ops {
		op.Source = node.StoreHistory{}
		if from == admin.FromFrontier {
			op.Source, op.Replayed = node.LocalStore{}, true
		}
		if err := fn(op); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (n *memNode) isOpen(t operation.Topic) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.open[t] != nil
}

type memStream struct {
	n      *memNode
	topic  operation.Topic
	events chan node.Event
	once   sync.Once
}

func (s *memStream) Publish(ctx context.Context, msg []byte) (admin.PublishResult, error) {
	if s.n.entered != nil {
		s.n.entered <- struct{}{}
	}
	if s.n.publish != nil {
		select {
		case <-s.n.publish:
		case <-ctx.Done():
			return admin.PublishResult{}, ctx.Err()
		}
	}
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	if s.n.open[s.topic] != s {
		return admin.PublishResult{}, errors.New("stream closed")
	}
	seq := uint64(len(s.n.logs[s.topic]))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h := operation.HashOf(append(append(s.topic[:], b[:]...), msg...))
	op := node.ProcessedOperation{Topic: s.topic, Hash: h, Author: s.n.key.PublicKey(),
		SeqNum: seq, Timestamp: 1_700_000_000_000_000 + seq, Source: node.LocalStore{}, Message: msg}
	s.n.logs[s.topic] = append(s.n.logs[s.topic], op)
	s.events <- node.Processed{Operation: op}
	return admin.PublishResult{Hash: h.String(), Seq: seq}, nil
}

func (s *memStream) Events() <-chan node.Event { return s.events }

func (s *memStream) Ack(_ context.Context, hash string) error {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	s.n.acked = append(s.n.acked, hash)
	for _, op := range s.n.logs[s.topic] {
		if op.Hash.String() == hash {
			if c, ok := s.n.cursor[s.topic]; !ok || op.SeqNum > c {
				s.n.cursor[s.topic] = op.SeqNum
			}
		}
	}
	return nil
}

func (s *memStream) Close() error {
	s.once.Do(func() {
		s.n.mu.Lock()
		delete(s.n.open, s.topic)
		s.n.mu.Unlock()
		close(s.events)
	})
	return nil
}
