package node

// Seams for the network layer (pkg/sync, pkg/p2p). They are unexported on purpose: the lead
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
// pipeline: a watcher whose buffer is full is closed with errLagged, and its owner (a live
// sync session) must catch up from the store (heights + LogRange) and watch again. Nothing
// is dropped silently.
type storedWatch struct {
	n     *Node
	topic operation.Topic
	c     chan StoredOp
	once  sync.Once
	err   error
}

// C returns the channel; it is closed when the watch ends (see Err).
func (w *storedWatch) C() <-chan StoredOp { return w.c }

// Err says why C was closed: errLagged, ErrClosed, or nil after Close.
func (w *storedWatch) Err() error { return w.err }

// Close stops the watch.
func (w *storedWatch) Close() {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	w.closeLocked(nil)
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

// closeWith closes the channel once; the caller holds n.mu.
func (w *storedWatch) closeWith(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.c)
	})
}

// watchStored starts watching topic with a channel of capacity buf.
func (n *Node) watchStored(topic operation.Topic, buf int) (*storedWatch, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	w := &storedWatch{n: n, topic: topic, c: make(chan StoredOp, buf)}
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
		select {
		case w.c <- StoredOp{Op: op, Source: src}:
		default:
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
