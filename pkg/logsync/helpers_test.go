package logsync

import (
	"context"
	"fmt"
	"slices"
	stdsync "sync"
	"sync/atomic"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

// memStore is an in-memory Store: logs sorted by seq, associated with topics.
type memStore struct {
	mu     stdsync.Mutex
	logs   map[logKey][]*operation.Operation
	topics map[operation.Topic]map[logKey]struct{}
}

func newMemStore() *memStore {
	return &memStore{logs: make(map[logKey][]*operation.Operation), topics: make(map[operation.Topic]map[logKey]struct{})}
}

// put appends op to its log (which must stay ascending) and associates it with topic.
func (s *memStore) put(topic operation.Topic, op *operation.Operation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := logKey{op.Author(), op.LogID()}
	s.logs[k] = append(s.logs[k], op)
	if s.topics[topic] == nil {
		s.topics[topic] = make(map[logKey]struct{})
	}
	s.topics[topic][k] = struct{}{}
}

func (s *memStore) latest(k logKey) *operation.Operation {
	if l := s.logs[k]; len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.logs {
		n += len(l)
	}
	return n
}

// hashes returns every stored operation id, sorted, to compare stores.
func (s *memStore) hashes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.logs {
		for _, op := range l {
			out = append(out, op.Hash.String())
		}
	}
	slices.Sort(out)
	return out
}

func (s *memStore) LogHeights(_ context.Context, topic operation.Topic) (Heights, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Heights{}
	for k := range s.topics[topic] {
		if op := s.latest(k); op != nil {
			if h[k.author] == nil {
				h[k.author] = map[operation.LogID]uint64{}
			}
			h[k.author][k.log] = op.SeqNum()
		}
	}
	return h, nil
}

func (s *memStore) rangeOf(author operation.PublicKey, log operation.LogID, from, to uint64) []*operation.Operation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*operation.Operation
	for _, op := range s.logs[logKey{author, log}] {
		if op.SeqNum() >= from && op.SeqNum() <= to {
			out = append(out, op)
		}
	}
	return out
}

func (s *memStore) LogRange(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64, fn func(header, body []byte) error) error {
	for _, op := range s.rangeOf(author, log, from, to) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(op.HeaderBytes, op.Body); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) LogSize(_ context.Context, author operation.PublicKey, log operation.LogID, from, to uint64) (uint64, uint64, error) {
	var ops, size uint64
	for _, op := range s.rangeOf(author, log, from, to) {
		ops++
		size += uint64(op.Size())
	}
	return ops, size, nil
}

// memSink verifies like the node would (signature, log id, sequence) and stores into a
// memStore. onStored, if set, runs after a new operation was stored (the node publishes it).
type memSink struct {
	store    *memStore
	onStored func(topic operation.Topic, op *operation.Operation)
	received atomic.Int64
	dups     atomic.Int64
	// refuse maps authors whose operations the sink refuses to the reason (set before use).
	refuse map[operation.PublicKey]string
	// refused counts refused operations.
	refused atomic.Int64
}

func (k *memSink) Receive(_ context.Context, topic operation.Topic, header, body []byte, _ Source) error {
	k.received.Add(1)
	op, err := operation.Decode(header, body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOperation, err)
	}
	if op.LogID() != operation.LogIDFromTopic(topic) {
		return fmt.Errorf("%w: log id of another topic", ErrInvalidOperation)
	}
	if reason, ok := k.refuse[op.Author()]; ok {
		k.refused.Add(1)
		return &RefusedError{Author: op.Author(), Log: op.LogID(), Reason: reason}
	}
	s := k.store
	s.mu.Lock()
	latest := s.latest(logKey{op.Author(), op.LogID()})
	if latest != nil && op.SeqNum() <= latest.SeqNum() {
		for _, have := range s.logs[logKey{op.Author(), op.LogID()}] {
			if have.Hash == op.Hash {
				s.mu.Unlock()
				k.dups.Add(1)
				return nil
			}
		}
	}
	err = operation.CheckSequence(latest, op)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOperation, err)
	}
	s.put(topic, op)
	if k.onStored != nil {
		k.onStored(topic, op)
	}
	return nil
}

// makeLog signs n operations of key's log for topic, seq first..first+n-1; the first one
// carries the prune flag when first > 0 (a log whose prefix was pruned).
func makeLog(t testing.TB, key operation.PrivateKey, topic operation.Topic, first, n, bodySize int) []*operation.Operation {
	t.Helper()
	var out []*operation.Operation
	var back operation.Hash
	if first > 0 {
		back = operation.HashOf([]byte("pruned predecessor"))
	}
	for i := first; i < first+n; i++ {
		body := make([]byte, bodySize)
		for j := range body {
			body[j] = byte(i + j)
		}
		op, err := operation.Sign(key, operation.Draft{SeqNum: uint64(i), Backlink: back,
			LogID: operation.LogIDFromTopic(topic), Prune: i == first && first > 0, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, op)
		back = op.Hash
	}
	return out
}

func mustKey(t testing.TB) operation.PrivateKey {
	t.Helper()
	k, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fill(s *memStore, topic operation.Topic, ops []*operation.Operation) {
	for _, op := range ops {
		s.put(topic, op)
	}
}

// eventLog collects events.
type eventLog struct {
	mu     stdsync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}
