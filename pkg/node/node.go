// Package node is pandanet's public library API, the Go counterpart of p2panda's Node:
// eventually consistent topic streams of signed append-only operations with persisted
// acknowledgements and replay.
//
//	n, err := node.New(ctx, node.WithDatabase("/var/lib/app/node.sqlite"))
//	pub, sub, err := n.Stream(ctx, topic)
//	pending, err := pub.Publish(ctx, []byte("hello"))
//	for ev := range sub.Events() { ... }
//
// Delivery is at-least-once: an operation is delivered until it is acknowledged, across
// restarts with a file-backed store. Applications must be idempotent.
//
// Acknowledgements are a per-log high-water mark, not a set: acknowledging seq n of an
// author's log also acknowledges every lower seq of that log. With AckPolicy Explicit, an
// app that acks out of order (n before n-1) will therefore never see n-1 replayed.
package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/pipeline"
	"github.com/pandanet/pandanet/pkg/policy"
	"github.com/pandanet/pandanet/pkg/store"
)

// AckPolicy decides when delivered operations are acknowledged.
type AckPolicy uint8

const (
	// Automatic acknowledges an operation when it is handed to the subscription's event
	// channel. A crash before the app processed the buffered events loses them for the app;
	// with WithEventBuffer(0) the hand-over is the app's receive, as in p2panda, where the
	// stream acknowledges what it yields.
	Automatic AckPolicy = iota
	// Explicit leaves acknowledging to the app (ProcessedOperation.Ack or
	// Subscription.Ack), after it processed the event: at-least-once across crashes.
	Explicit
)

// Errors returned by the API.
var (
	ErrClosed         = errors.New("node closed")
	ErrStreamOpen     = errors.New("topic already has an open subscription")
	ErrEmptyMessage   = errors.New("message is empty (use Prune(ctx, nil) for a system-only operation)")
	ErrWrongTopic     = errors.New("operation does not belong to this topic")
	errNoSubscription = errors.New("operation has no subscription to acknowledge through")
)

type config struct {
	key         operation.PrivateKey
	dbPath      string
	ackPolicy   AckPolicy
	maxPayload  uint64
	eventBuffer int
	pipe        pipeline.Config
	observe     func(Observation)
	network     *NetworkConfig
	policies    map[operation.Topic]policy.Policy
}

// Option configures New.
type Option func(*config) error

// WithPrivateKey sets the node's signing key (default: a new random key).
func WithPrivateKey(k operation.PrivateKey) Option {
	return func(c *config) error {
		if k.IsZero() {
			return errors.New("private key is zero")
		}
		c.key = k
		return nil
	}
}

// WithDatabase stores everything in the SQLite file at path (default: in memory, lost on
// Close).
func WithDatabase(path string) Option {
	return func(c *config) error {
		c.dbPath = path
		return nil
	}
}

// WithAckPolicy sets the acknowledgement policy (default Automatic).
func WithAckPolicy(p AckPolicy) Option {
	return func(c *config) error {
		if p != Automatic && p != Explicit {
			return fmt.Errorf("unknown ack policy %d", p)
		}
		c.ackPolicy = p
		return nil
	}
}

// WithMaxPayloadSize bounds message sizes, published and received (default 1 MiB).
func WithMaxPayloadSize(n uint64) Option {
	return func(c *config) error {
		if n == 0 {
			return errors.New("max payload size must be positive")
		}
		c.maxPayload = n
		return nil
	}
}

// WithEventBuffer sets the capacity of each subscription's event channel (default 16). A
// full channel back-pressures that topic only. 0 (unbuffered) makes the Automatic policy
// acknowledge an operation only once the app has received it from the channel.
func WithEventBuffer(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return errors.New("event buffer must not be negative")
		}
		c.eventBuffer = n
		return nil
	}
}

// WithBatching tunes the writer: at most maxOps operations per transaction, waiting at most
// delay for a batch to fill (defaults 1000 and 1ms).
func WithBatching(maxOps int, delay time.Duration) Option {
	return func(c *config) error {
		c.pipe.MaxBatch, c.pipe.FlushDelay = maxOps, delay
		return nil
	}
}

// Outcome is what processing did with an operation.
type Outcome uint8

const (
	// OutcomeStored: validated and stored (and its log pruned if it carried the prune flag).
	OutcomeStored Outcome = iota + 1
	// OutcomeDuplicate: stored already; nothing changed.
	OutcomeDuplicate
	// OutcomeFailed: rejected (Err wraps an operation.Err* sentinel) or not processable.
	OutcomeFailed
)

func (o Outcome) String() string {
	switch o {
	case OutcomeStored:
		return "stored"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeFailed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Observation is the processing result of one operation, published or received.
type Observation struct {
	Topic   operation.Topic
	Hash    operation.Hash
	Outcome Outcome
	// Author, Log and SeqNum place the operation (zero if it could not be decoded).
	Author operation.PublicKey
	Log    operation.LogID
	SeqNum uint64
	// Pruned counts the earlier entries of the log a stored prune deleted.
	Pruned int64
	// Source says where the operation came from (LocalStore for a publish).
	Source Source
	// Err says why processing failed; operation.Reason gives a metrics label.
	Err error
	// Latency is the time from submission to the final result.
	Latency time.Duration
}

// WithObserver receives the result of every operation the node processes (for metrics). It
// is called synchronously on the processing path and must be fast.
func WithObserver(fn func(Observation)) Option {
	return func(c *config) error {
		c.observe = fn
		return nil
	}
}

// Node is a running node. Create with New, stop with Close.
type Node struct {
	cfg   config
	key   operation.PrivateKey
	store *store.Store
	pipe  *pipeline.Pipeline
	// policy enforces per-topic write policies (none until SetTopicPolicy).
	policy *policy.Enforcer

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	streams map[operation.Topic]*Subscription
	stored  map[operation.Topic]map[*storedWatch]struct{}
	topicWs map[*topicWatch]struct{}

	importSeq atomic.Uint64

	net *network // nil for an offline node
}

// New opens the store and starts the processing pipeline.
func New(ctx context.Context, opts ...Option) (*Node, error) {
	cfg := config{maxPayload: operation.DefaultMaxPayloadSize, eventBuffer: 16}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if cfg.key.IsZero() {
		k, err := operation.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		cfg.key = k
	}
	st, err := store.Open(ctx, cfg.dbPath)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n := &Node{
		cfg: cfg, key: cfg.key, store: st,
		streams: make(map[operation.Topic]*Subscription),
		stored:  make(map[operation.Topic]map[*storedWatch]struct{}),
		topicWs: make(map[*topicWatch]struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	pc := cfg.pipe
	pc.Store = st
	pc.Limits = operation.Limits{MaxPayloadSize: cfg.maxPayload}
	pc.Deliver = n.deliver
	n.policy = policy.NewEnforcer(st)
	pc.Policy = n.policy
	// Stored operations are announced (to live sync sessions) when they commit, not when the
	// app reads them: a subscriber that does not read must not stop replication.
	userObserve := cfg.observe
	pc.Observe = func(r pipeline.Result) {
		if r.Status == pipeline.Stored {
			n.notifyStored(r.Topic, r.Op, sourceOf(r))
		}
		if userObserve != nil {
			o := Observation{Topic: r.Topic, Hash: r.Hash, Outcome: Outcome(r.Status), Pruned: r.Pruned,
				Source: sourceOf(r), Err: r.Err, Latency: r.Latency}
			if r.Op != nil {
				o.Author, o.Log, o.SeqNum = r.Op.Author(), r.Op.LogID(), r.Op.SeqNum()
			}
			userObserve(o)
		}
	}
	n.pipe, err = pipeline.New(pc)
	if err != nil {
		st.Close()
		n.cancel()
		return nil, fmt.Errorf("node: %w", err)
	}
	for topic, p := range cfg.policies {
		if err := n.pipe.SetPolicy(ctx, topic, p); err != nil {
			n.cancel()
			return nil, errors.Join(fmt.Errorf("node: policy of %s: %w", topic, err), n.pipe.Close(), st.Close())
		}
	}
	if cfg.network != nil {
		if err := n.startNetwork(ctx, cfg.network); err != nil {
			n.cancel()
			return nil, errors.Join(fmt.Errorf("node: %w", err), n.pipe.Close(), st.Close())
		}
	}
	return n, nil
}

// ID returns the node's public key (its identity and the author of its operations).
func (n *Node) ID() operation.PublicKey { return n.key.PublicKey() }

// Close closes all subscriptions, lets the pipeline commit everything it accepted, and
// closes the store.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	subs := make([]*Subscription, 0, len(n.streams))
	for _, s := range n.streams {
		subs = append(subs, s)
	}
	n.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	// Network first: sync sessions feed the pipeline and read the store.
	var nerr error
	if n.net != nil {
		nerr = n.net.close()
	}
	n.cancel()
	perr := n.pipe.Close()
	n.mu.Lock()
	for _, ws := range n.stored {
		for w := range ws {
			w.closeWith(ErrClosed)
		}
	}
	n.stored = map[operation.Topic]map[*storedWatch]struct{}{}
	for w := range n.topicWs {
		w.closeWith(ErrClosed)
	}
	n.mu.Unlock()
	return errors.Join(nerr, perr, n.store.Close())
}

// alivePoll is how often Alive retries the node's lock while it is held.
const alivePoll = 20 * time.Millisecond

// Alive reports whether the node still makes progress, for a liveness probe (a hung node
// is one a restart would fix). It returns nil once the node's lock is free and the store
// writer answers a barrier or finishes a batch (a busy writer is alive; a store error such
// as a full disk is not a hang). ctx's deadline bounds the check: an error says what did
// not answer in time. After Close it returns ErrClosed.
func (n *Node) Alive(ctx context.Context) error {
	for !n.mu.TryLock() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: lock held for the whole probe: %w", context.Cause(ctx))
		case <-time.After(alivePoll):
		}
	}
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := n.pipe.Probe(ctx); err != nil {
		if errors.Is(err, pipeline.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// sourceOf returns where a result's operation came from; local publishes carry no source.
func sourceOf(r pipeline.Result) Source {
	if src, ok := r.Source.(Source); ok && src != nil {
		return src
	}
	return LocalStore{}
}

// deliver is the pipeline's delivery stage; it runs on the topic's delivery goroutine.
func (n *Node) deliver(r pipeline.Result) {
	src := sourceOf(r)
	n.mu.Lock()
	s := n.streams[r.Topic]
	n.mu.Unlock()
	if s == nil {
		// Nobody streams the topic: the operation stays un-acknowledged and is replayed
		// when the topic is streamed next.
		return
	}
	s.handleLive(r, src)
}

func (n *Node) ackPolicy() AckPolicy { return n.cfg.ackPolicy }
