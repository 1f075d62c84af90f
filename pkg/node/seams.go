package node

// Seams for the network layer (pkg/logsync, pkg/p2p). They are unexported on purpose: the lead
// wires sync and p2p into this package, and the public API should not grow until that
// wiring settles.
//
//   - ingestRemote / ingestRemoteAsync: the one entry point for operations from anywhere
//     but a local publish (sync sessions, gossip, Import).
//   - watchStored: every newly stored operation of a topic, local or remote, for live sync
//     sessions to forward.
//   - emitTopicEvent: inject SyncStarted/SyncEnded into a topic's subscription.
//   - streamedTopics / watchTopics: which topics are streamed, with add/remove changes.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/pipeline"
)

// errLagged closes a storedWatch whose consumer fell behind.
var errLagged = errors.New("stored-operation watcher lagged behind and was dropped")

// ingestRemote validates and stores one raw operation and waits for the result. It blocks
// while the topic is back-pressured. It returns nil for a stored or already known
// operation and a typed error (errors.Is with operation.Err*, pipeline.ErrBufferFull, ...)
// otherwise. An operation that arrives before its predecessor is held until the
// predecessor is stored (or the out-of-order buffer drops it), so callers that send a log
// out of order should use ingestRemoteAsync instead of waiting for each operation.
func (n *Node) ingestRemote(ctx context.Context, topic operation.Topic, header, body []byte, src Source) error {
	t, err := n.ingestRemoteAsync(ctx, topic, header, body, src)
	if err != nil {
		return err
	}
	if _, err := t.Wait(ctx); err != nil {
		return fmt.Errorf("ingest %s: %w", t.Hash().Short(), err)
	}
	return nil
}

// ingestRemoteAsync queues one raw operation (blocking only for backpressure) and returns
// its ticket: Done when stored/failed, Delivered after the subscription got it.
func (n *Node) ingestRemoteAsync(ctx context.Context, topic operation.Topic, header, body []byte, src Source) (*pipeline.Ticket, error) {
	if src == nil {
		return nil, errors.New("ingest: source is required")
	}
	t, err := n.pipe.Submit(ctx, pipeline.Input{Topic: topic, Header: header, Body: body, Source: src})
	if errors.Is(err, pipeline.ErrClosed) {
		return nil, ErrClosed
	}
	return t, err
}

// StoredOp is a newly stored operation, as seen by watchStored.
type StoredOp struct {
	Op     *operation.Operation
	Source Source
}

// storedWatch receives a topic's newly stored operations. Notification never blocks the
// pipeline: a watcher that has more than its limit pending is closed with errLagged, and its
// owner (a live sync session) must catch up from the store (heights + LogRange) and watch
// again. Nothing is dropped silently. The queue grows on demand, so an idle topic costs a
// few hundred bytes rather than a pre-allocated buffer of the full limit.
type storedWatch struct {
	n     *Node
	topic operation.Topic
	limit int

	mu     sync.Mutex
	queue  []StoredOp
	err    error // set once the watch ended; Next returns it after the queue drained
	ended  bool
	signal chan struct{} // capacity 1: "queue or state changed"
}

// Next returns the next stored operation, blocking until there is one, ctx ends or the
// watch ends (then it returns Err: errLagged, ErrClosed, or errWatchClosed after Close).
func (w *storedWatch) Next(ctx context.Context) (StoredOp, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 && w.err == nil {
			so := w.queue[0]
			w.queue[0] = StoredOp{}
			w.queue = w.queue[1:]
			if len(w.queue) == 0 {
				w.queue = nil // let an idle watch give its backing array back
			}
			w.mu.Unlock()
			return so, nil
		}
		if w.ended {
			err := w.err
			w.mu.Unlock()
			return StoredOp{}, err
		}
		w.mu.Unlock()
		select {
		case <-w.signal:
		case <-ctx.Done():
			return StoredOp{}, ctx.Err()
		}
	}
}

// Err says why the watch ended: errLagged, ErrClosed, errWatchClosed after Close, or nil
// while it runs.
func (w *storedWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ended {
		return nil
	}
	return w.err
}

// errWatchClosed ends a watch its owner closed.
var errWatchClosed = errors.New("stored-operation watch closed")

// Close stops the watch.
func (w *storedWatch) Close() {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	w.closeLocked(errWatchClosed)
}

func (w *storedWatch) closeLocked(err error) {
	if ws := w.n.stored[w.topic]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(w.n.stored, w.topic)
		}
	}
	w.closeWith(err)
}

// closeWith ends the watch once; a lagged watch drops its queue (its owner re-syncs).
func (w *storedWatch) closeWith(err error) {
	w.mu.Lock()
	if !w.ended {
		w.ended, w.err = true, err
		w.queue = nil
	}
	w.mu.Unlock()
	w.wake()
}

func (w *storedWatch) wake() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// push queues so; it reports false when the watch is over its limit.
func (w *storedWatch) push(so StoredOp) bool {
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return true
	}
	if len(w.queue) >= w.limit {
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, so)
	w.mu.Unlock()
	w.wake()
	return true
}

// watchStored starts watching topic; more than limit unread operations end the watch with
// errLagged.
func (n *Node) watchStored(topic operation.Topic, limit int) (*storedWatch, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	w := &storedWatch{n: n, topic: topic, limit: limit, signal: make(chan struct{}, 1)}
	if n.stored[topic] == nil {
		n.stored[topic] = make(map[*storedWatch]struct{})
	}
	n.stored[topic][w] = struct{}{}
	return w, nil
}

func (n *Node) notifyStored(topic operation.Topic, op *operation.Operation, src Source) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.stored[topic] {
		if !w.push(StoredOp{Op: op, Source: src}) {
			w.closeLocked(errLagged)
		}
	}
}

// emitTopicEvent hands a (sync) event to the topic's subscription, blocking while its
// channel is full. It returns false if the topic has no open subscription.
func (n *Node) emitTopicEvent(ctx context.Context, topic operation.Topic, ev Event) bool {
	s := n.subscription(topic)
	if s == nil {
		return false
	}
	return s.send(ctx, ev)
}

// streamedTopics returns the topics with an open subscription, sorted.
func (n *Node) streamedTopics() []operation.Topic {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]operation.Topic, 0, len(n.streams))
	for t := range n.streams {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i][:]) < string(out[j][:]) })
	return out
}

// TopicChange is a topic starting (Added) or stopping to be streamed.
type TopicChange struct {
	Topic operation.Topic
	Added bool
}

// topicWatch queues topic changes without bound (they are rare) so notifying never blocks.
type topicWatch struct {
	n      *Node
	mu     sync.Mutex
	queue  []TopicChange
	signal chan struct{}
	err    error
}

// watchTopics returns a watch whose first changes are Added for every topic streamed now.
func (n *Node) watchTopics() (*topicWatch, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	w := &topicWatch{n: n, signal: make(chan struct{}, 1)}
	for t := range n.streams {
		w.queue = append(w.queue, TopicChange{Topic: t, Added: true})
	}
	if len(w.queue) > 0 {
		w.signal <- struct{}{}
	}
	n.topicWs[w] = struct{}{}
	return w, nil
}

// Next returns the next change, blocking until there is one, ctx ends or the watch closes.
func (w *topicWatch) Next(ctx context.Context) (TopicChange, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			c := w.queue[0]
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return c, nil
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return TopicChange{}, err
		}
		select {
		case <-w.signal:
		case <-ctx.Done():
			return TopicChange{}, ctx.Err()
		}
	}
}

// Close stops the watch.
func (w *topicWatch) Close() {
	w.n.mu.Lock()
	delete(w.n.topicWs, w)
	w.n.mu.Unlock()
	w.closeWith(ErrClosed)
}

func (w *topicWatch) push(c TopicChange) {
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *topicWatch) closeWith(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (n *Node) notifyTopic(topic operation.Topic, added bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.topicWs {
		w.push(TopicChange{Topic: topic, Added: added})
	}
}
