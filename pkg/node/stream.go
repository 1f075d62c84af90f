package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/pipeline"
	"github.com/pandanet/pandanet/pkg/store"
)

// From selects where a stream starts.
type From struct {
	kind   uint8
	cursor Heights
}

const (
	fromFrontier uint8 = iota
	fromStart
	fromCursor
)

var (
	// Frontier replays only un-acknowledged operations, then goes live (the default).
	Frontier = From{kind: fromFrontier}
	// Start resets the topic's ack cursor (persistently) and replays every stored
	// operation of the topic.
	Start = From{kind: fromStart}
)

// Cursor replaces the topic's ack cursor (persistently) with c and replays everything
// after it.
func Cursor(c Heights) From { return From{kind: fromCursor, cursor: c.Clone()} }

// Stream is StreamFrom(ctx, topic, Frontier).
func (n *Node) Stream(ctx context.Context, topic operation.Topic) (*Publisher, *Subscription, error) {
	return n.StreamFrom(ctx, topic, Frontier)
}

// StreamFrom opens the topic's stream. Un-acknowledged operations (relative to the cursor
// chosen by from) are replayed first, framed by ReplayStarted and ReplayEnded; live
// operations of the topic are held back until the replay is done. A topic has at most one
// open Subscription (acks are per topic, two consumers would steal each other's events);
// Close it before streaming the topic again.
func (n *Node) StreamFrom(ctx context.Context, topic operation.Topic, from From) (*Publisher, *Subscription, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if n.streams[topic] != nil {
		n.mu.Unlock()
		return nil, nil, fmt.Errorf("stream %s: %w", topic, ErrStreamOpen)
	}
	s := &Subscription{n: n, topic: topic, events: make(chan Event, n.cfg.eventBuffer),
		done: make(chan struct{}), replayDone: make(chan struct{}), replayed: make(Heights)}
	s.ctx, s.cancel = context.WithCancel(n.ctx)
	// Registered before the cursor is read: live results of the topic now wait for the
	// replay instead of racing it.
	n.streams[topic] = s
	n.mu.Unlock()
	fail := func(err error) (*Publisher, *Subscription, error) {
		close(s.replayDone)
		s.Close()
		return nil, nil, fmt.Errorf("stream %s: %w", topic, err)
	}
	// Acks still queued in the writer (e.g. automatic acks of a subscription just closed)
	// must be in the cursor we read.
	if err := n.pipe.Flush(ctx); err != nil {
		return fail(err)
	}
	switch from.kind {
	case fromStart:
		if err := n.store.ResetCursor(ctx, topic, nil); err != nil {
			return fail(err)
		}
	case fromCursor:
		if err := n.store.ResetCursor(ctx, topic, store.Heights(from.cursor)); err != nil {
			return fail(err)
		}
	}
	n.notifyTopic(topic, true)
	s.wg.Add(1)
	go s.replay()
	return &Publisher{n: n, topic: topic}, s, nil
}

// Publisher publishes to and imports into one topic.
type Publisher struct {
	n     *Node
	topic operation.Topic
}

// Topic returns the publisher's topic.
func (p *Publisher) Topic() operation.Topic { return p.topic }

// Pending is a published operation being processed.
type Pending struct{ t *pipeline.Ticket }

// Result is the processing result of a published operation.
type Result struct {
	Hash operation.Hash
	// SeqNum is the operation's position in this node's log for the topic.
	SeqNum uint64
	// Stored is true once the operation is durably stored.
	Stored bool
	// Pruned counts earlier entries deleted by a Prune.
	Pruned int64
	Err    error
}

// Hash returns the new operation's id.
func (p *Pending) Hash() operation.Hash { return p.t.Hash() }

// Wait blocks until the operation is stored (committed to disk for a file store) or failed.
func (p *Pending) Wait(ctx context.Context) (Result, error) {
	select {
	case <-p.t.Done():
	case <-ctx.Done():
		return Result{Hash: p.t.Hash()}, ctx.Err()
	}
	r := p.t.Result()
	res := Result{Hash: p.t.Hash(), Stored: r.Status == pipeline.Stored, Pruned: r.Pruned, Err: r.Err}
	if r.Op != nil {
		res.SeqNum = r.Op.SeqNum()
	}
	return res, r.Err
}

// Publish signs msg as the next operation of this node's log for the topic and stores it.
// It returns as soon as the operation is signed and queued; the operation is delivered to
// this topic's subscription like any other once stored.
func (p *Publisher) Publish(ctx context.Context, msg []byte) (*Pending, error) {
	if len(msg) == 0 {
		return nil, ErrEmptyMessage
	}
	return p.publish(ctx, msg, false)
}

// Prune publishes an operation with the prune flag: once stored (here and on every peer
// that syncs it), all earlier operations of this node's log for the topic are deleted.
// With a nil msg the operation is system-only: acknowledged automatically, never delivered.
func (p *Publisher) Prune(ctx context.Context, msg []byte) (*Pending, error) {
	return p.publish(ctx, msg, true)
}

func (p *Publisher) publish(ctx context.Context, msg []byte, prune bool) (*Pending, error) {
	t, err := p.n.pipe.Publish(ctx, pipeline.PublishRequest{Topic: p.topic, Key: p.n.key,
		Body: bytes.Clone(msg), Prune: prune, Source: LocalStore{}})
	if err != nil {
		if errors.Is(err, pipeline.ErrClosed) {
			err = ErrClosed
		}
		return nil, fmt.Errorf("publish to %s: %w", p.topic, err)
	}
	return &Pending{t: t}, nil
}

// RawOperation is an operation as stored and sent: canonical header bytes and body.
type RawOperation struct {
	Header []byte
	Body   []byte
}

// Operations adapts a slice for Import.
func Operations(ops []RawOperation) iter.Seq2[RawOperation, error] {
	return func(yield func(RawOperation, error) bool) {
		for _, op := range ops {
			if !yield(op, nil) {
				return
			}
		}
	}
}

// ImportSummary counts the outcomes of an import session.
type ImportSummary struct {
	SessionID                  uint64
	Stored, Duplicates, Failed int
}

// Import feeds operations from outside the network (a file, sneakernet) into the topic.
// They are validated like synced operations (and must carry the topic's log id). The
// subscription sees ImportStarted, the resulting events, then ImportEnded. Import returns
// when every operation was processed; an error from ops ends the session early.
func (p *Publisher) Import(ctx context.Context, ops iter.Seq2[RawOperation, error]) (ImportSummary, error) {
	n := p.n
	sum := ImportSummary{SessionID: n.importSeq.Add(1) - 1}
	src := ExternalStream{SessionID: sum.SessionID}
	s := n.subscription(p.topic)
	if s != nil {
		s.send(ctx, ImportStarted{SessionID: sum.SessionID})
	}
	var tickets []*pipeline.Ticket
	var srcErr error
	for raw, err := range ops {
		if err != nil {
			srcErr = fmt.Errorf("import %d into %s: read: %w", sum.SessionID, p.topic, err)
			break
		}
		// The caller's slices: the pipeline copies them (not Owned).
		t, err := n.ingestRemoteAsync(ctx, pipeline.Input{Topic: p.topic, Header: raw.Header, Body: raw.Body}, src)
		if err != nil {
			srcErr = fmt.Errorf("import %d into %s: %w", sum.SessionID, p.topic, err)
			break
		}
		tickets = append(tickets, t)
	}
	for _, t := range tickets {
		select {
		case <-t.Delivered():
		case <-ctx.Done():
			return sum, fmt.Errorf("import %d into %s: %w", sum.SessionID, p.topic, ctx.Err())
		}
		switch t.Result().Status {
		case pipeline.Stored:
			sum.Stored++
		case pipeline.Duplicate:
			sum.Duplicates++
		default:
			sum.Failed++
		}
	}
	if s != nil {
		s.send(ctx, ImportEnded{SessionID: sum.SessionID, Stored: sum.Stored, Duplicates: sum.Duplicates, Failed: sum.Failed})
	}
	return sum, srcErr
}

// Subscription is the receiving side of a topic stream.
type Subscription struct {
	n     *Node
	topic operation.Topic

	events chan Event
	ctx    context.Context // cancelled by Close; bounds the replay
	cancel context.CancelFunc
	wg     sync.WaitGroup // the replay goroutine

	// notices are sync status events waiting for the event channel (see notify), at most
	// maxPendingNotices; pumpNotices hands them over in order. The pump runs only while
	// notices wait, so an idle subscription costs no goroutine (an always-on node follows
	// tens of thousands of topics).
	noticeMu       sync.Mutex
	notices        []Event
	noticeDropping bool // the queue overflowed and has not drained since
	pumping        bool // a pumpNotices goroutine owns the queue

	mu      sync.Mutex
	closed  bool
	done    chan struct{}
	senders sync.WaitGroup

	// replayDone is closed when the replay finished; replayed (written before that) holds
	// the heights the replay covered, so live results at or below them are not delivered
	// twice.
	replayDone chan struct{}
	replayed   Heights
}

// Topic returns the subscription's topic.
func (s *Subscription) Topic() operation.Topic { return s.topic }

// Events returns the event channel. It is closed by Close (and Node.Close). A consumer that
// stops reading back-pressures this topic's operations only; sync status events (SyncStarted,
// SyncEnded) wait in a queue of their own (the oldest dropped past 256) and never hold up
// replication.
func (s *Subscription) Events() <-chan Event { return s.events }

// Ack acknowledges the operation with this hash (and every earlier one of its log). Unknown
// (for example pruned) hashes are ignored, as in p2panda. It returns once the ack is
// committed.
func (s *Subscription) Ack(ctx context.Context, hash operation.Hash) error {
	op, err := s.n.store.Get(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ack %s: %w", hash.Short(), err)
	}
	if op.LogID() != operation.LogIDFromTopic(s.topic) {
		return fmt.Errorf("ack %s on %s: %w", hash.Short(), s.topic, ErrWrongTopic)
	}
	return s.ackLog(ctx, op.Author(), op.SeqNum())
}

func (s *Subscription) ackLog(ctx context.Context, author operation.PublicKey, seq uint64) error {
	err := s.n.pipe.Ack(ctx, []store.Ack{{Topic: s.topic, Author: author, Log: operation.LogIDFromTopic(s.topic), Seq: seq}}, true)
	if err != nil {
		return fmt.Errorf("ack %s seq %d on %s: %w", author.Short(), seq, s.topic, err)
	}
	return nil
}

// Close ends the subscription: the event channel is closed, undelivered operations stay
// un-acknowledged. The topic can be streamed again afterwards.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.senders.Wait()
	close(s.events)
	s.n.mu.Lock()
	removed := s.n.streams[s.topic] == s
	if removed {
		delete(s.n.streams, s.topic)
	}
	s.n.mu.Unlock()
	if removed {
		s.n.notifyTopic(s.topic, false)
	}
	return nil
}

// enter registers a sender; senders are waited for before the channel is closed.
func (s *Subscription) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.senders.Add(1)
	return true
}

// send hands ev to the app. It blocks while the channel is full (backpressure) and gives
// up when the subscription closes or ctx ends.
func (s *Subscription) send(ctx context.Context, ev Event) bool {
	if !s.enter() {
		return false
	}
	defer s.senders.Done()
	return s.push(ctx, ev)
}

func (s *Subscription) push(ctx context.Context, ev Event) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.done:
		return false
	case <-ctx.Done():
		return false
	}
}

// maxPendingNotices bounds the sync status events a subscription holds for an app that
// does not read; beyond, the oldest are dropped.
const maxPendingNotices = 256

// notify queues a status event (SyncStarted, SyncEnded) for the app without blocking: the
// sync session reporting it must go on whether or not the app reads (a blocked session
// stops pinging and taking live operations, and ignores its own cancellation). Such events
// are kept in order; operations are back-pressured by the pipeline instead. It returns
// false if the subscription is closed, and firstDrop when the queue just overflowed (the
// oldest event was dropped for the first time since it last drained).
func (s *Subscription) notify(ev Event) (queued, firstDrop bool) {
	// Registered as a sender, so Close waits for the pump this may start; the pump
	// inherits the registration.
	if !s.enter() {
		return false, false
	}
	s.noticeMu.Lock()
	if len(s.notices) >= maxPendingNotices {
		s.notices[0] = nil
		s.notices = s.notices[1:]
		firstDrop = !s.noticeDropping
		s.noticeDropping = true
	}
	s.notices = append(s.notices, ev)
	start := !s.pumping
	s.pumping = true
	s.noticeMu.Unlock()
	if start {
		go s.pumpNotices()
	} else {
		s.senders.Done()
	}
	return true, firstDrop
}

// pumpNotices hands queued status events to the event channel, in order, until the queue
// is empty or the subscription closes. It runs as a sender registered by notify.
func (s *Subscription) pumpNotices() {
	defer s.senders.Done()
	for {
		s.noticeMu.Lock()
		if len(s.notices) == 0 {
			s.notices = nil // give an idle queue's backing array back
			s.noticeDropping = false
			s.pumping = false
			s.noticeMu.Unlock()
			return
		}
		ev := s.notices[0]
		s.notices[0] = nil
		s.notices = s.notices[1:]
		s.noticeMu.Unlock()
		if !s.push(s.ctx, ev) {
			s.noticeMu.Lock()
			s.pumping = false
			s.noticeMu.Unlock()
			return
		}
	}
}

// deliverOp delivers a stored operation and acknowledges it per policy. The ack is queued
// while the sender is registered, so Close (and a following StreamFrom) sees it.
func (s *Subscription) deliverOp(ctx context.Context, op *operation.Operation, src Source, replayed bool) bool {
	if !s.enter() {
		return false
	}
	defer s.senders.Done()
	if op.Header.PayloadSize == 0 {
		// System-only: always acknowledged, never delivered.
		s.autoAck(ctx, op)
		return true
	}
	ev := Processed{Operation: processedOf(s.topic, op, src, replayed, s)}
	if !s.push(ctx, ev) {
		return false
	}
	if s.n.ackPolicy() == Automatic {
		s.autoAck(ctx, op)
	}
	return true
}

func (s *Subscription) autoAck(ctx context.Context, op *operation.Operation) {
	// The app has the event: a Close racing this must not drop its ack, or the event is
	// delivered again after a restart. Only the pipeline shutting down stops the enqueue.
	ctx = context.WithoutCancel(ctx)
	err := s.n.pipe.Ack(ctx, []store.Ack{{Topic: s.topic, Author: op.Author(), Log: op.LogID(), Seq: op.SeqNum()}}, false)
	if err != nil {
		s.push(ctx, AckFailed{Hash: op.Hash, Err: err})
	}
}

// handleLive runs on the topic's pipeline delivery goroutine.
func (s *Subscription) handleLive(r pipeline.Result, src Source) {
	select {
	case <-s.replayDone:
	case <-s.done:
		return
	}
	switch r.Status {
	case pipeline.Failed:
		s.send(s.ctx, ProcessingFailed{Hash: r.Hash, Err: r.Err, Source: src})
	case pipeline.Duplicate:
		// Already stored, so already delivered (or replayed on the next stream): suppress.
	case pipeline.Stored:
		if h, ok := s.replayed.Get(r.Op.Author(), r.Op.LogID()); ok && r.Op.SeqNum() <= h {
			return
		}
		s.deliverOp(s.ctx, r.Op, src, false)
	}
}

// replay delivers the operations the cursor does not cover, then opens the topic for live
// delivery.
func (s *Subscription) replay() {
	defer s.wg.Done()
	defer close(s.replayDone)
	ctx := s.ctx
	st := s.n.store
	heights, err := st.LogHeights(ctx, s.topic)
	if err != nil {
		s.send(ctx, ReplayFailed{Err: err})
		return
	}
	cursor, err := st.Cursor(ctx, s.topic)
	if err != nil {
		s.send(ctx, ReplayFailed{Err: err})
		return
	}
	ranges := sortedRanges(heights, Heights(cursor))
	var ops, total int64
	for _, r := range ranges {
		size, err := st.LogSize(ctx, r.author, r.log, r.from, r.to)
		if err != nil {
			s.send(ctx, ReplayFailed{Err: err})
			return
		}
		ops += size.Ops
		total += size.PayloadOps
	}
	if ops == 0 {
		return
	}
	if !s.send(ctx, ReplayStarted{Total: total}) {
		return
	}
	for _, r := range ranges {
		err := st.LogRange(ctx, r.author, r.log, r.from, r.to, func(op *operation.Operation) error {
			if !s.deliverOp(ctx, op, LocalStore{}, true) {
				return errReplayStopped
			}
			return nil
		})
		if errors.Is(err, errReplayStopped) {
			return
		}
		if err != nil {
			s.send(ctx, ReplayFailed{Err: err})
			return
		}
		s.replayed.Set(r.author, r.log, r.to)
	}
	s.send(ctx, ReplayEnded{})
}

var errReplayStopped = errors.New("replay stopped")

func (n *Node) subscription(topic operation.Topic) *Subscription {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.streams[topic]
}

// ingestRemoteAsync queues one raw operation (blocking only for backpressure) and returns
// its ticket: Done when stored/failed, Delivered after the subscription got it.
func (n *Node) ingestRemoteAsync(ctx context.Context, in pipeline.Input, src Source) (*pipeline.Ticket, error) {
	if src == nil {
		return nil, errors.New("ingest: source is required")
	}
	in.Source = src
	t, err := n.pipe.Submit(ctx, in)
	if errors.Is(err, pipeline.ErrClosed) {
		return nil, ErrClosed
	}
	return t, err
}
