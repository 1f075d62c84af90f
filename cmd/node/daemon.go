package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/metrics"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// liveBuffer is the capacity of the node's event channel of a topic. The topic runner drains
// it at once (fanning out never blocks), so it stays small: with 1 MiB messages every slot
// can hold a MiB.
const liveBuffer = 16

// daemon owns the open topics of a node: it opens them for the topics file and the admin
// API, fans each topic's events out to admin subscribers, acknowledges operations under the
// explicit ack policy and implements admin.Backend.
type daemon struct {
	node    daemonNode
	log     *slog.Logger
	metrics *metrics.Metrics
	ack     config.AckPolicy
	version string

	mu       sync.Mutex
	topics   map[operation.Topic]*topicRunner
	closing  bool
	detached chan struct{} // closed by detachSubscribers
	wg       sync.WaitGroup

	// maxAPITopics caps the topics opened through the admin API (not counting the topics
	// file); 0 means no cap.
	maxAPITopics int

	// catchUp holds readiness back until the topics of the file caught up after the start
	// (nil: no wait). Set before the first topic opens.
	catchUp *catchUp

	// afterEvent, if set, is called after each event was fanned out (tests only).
	afterEvent func(node.Event)
}

var _ admin.Backend = (*daemon)(nil)

func newDaemon(node daemonNode, log *slog.Logger, m *metrics.Metrics, ack config.AckPolicy, version string) *daemon {
	return &daemon{node: node, log: log, metrics: m, ack: ack, version: version,
		topics: make(map[operation.Topic]*topicRunner), detached: make(chan struct{})}
}

// topicRunner is one open topic.
type topicRunner struct {
	topic    operation.Topic
	name     string
	stream   topicStream
	fromFile bool // listed in the topics file
	fromAPI  bool // added through the admin API (publish, subscribe, POST /v1/topics)
	quit     chan struct{}

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// subscriber is one admin events client of a topic.
type subscriber struct {
	q *eventQueue
}

var errClosing = fmt.Errorf("shutting down: %w", admin.ErrNotReady)

// apiTopicsLocked counts the topics open only because of the admin API.
func (d *daemon) apiTopicsLocked() int {
	n := 0
	for _, r := range d.topics {
		if !r.fromFile {
			n++
		}
	}
	return n
}

// ensure opens topic if needed and records why it is open.
func (d *daemon) ensure(ctx context.Context, t config.Topic, fromFile bool) (*topicRunner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return nil, errClosing
	}
	if r, ok := d.topics[t.Topic]; ok {
		if fromFile {
			r.fromFile = true
			if !t.Policy.IsZero() {
				if err := d.node.SetTopicPolicy(ctx, t.Topic, t.Policy); err != nil {
					return nil, fmt.Errorf("policy of topic %s (%s): %w", t.Name, t.Topic, err)
				}
			}
		} else {
			r.fromAPI = true
		}
		return r, nil
	}
	if !fromFile && d.maxAPITopics > 0 && d.apiTopicsLocked() >= d.maxAPITopics {
		return nil, fmt.Errorf("open topic %s: %d topics are open through the admin API (--max-api-topics): %w",
			t.Topic, d.maxAPITopics, admin.ErrLimit)
	}
	if !t.Policy.IsZero() {
		if err := d.node.SetTopicPolicy(ctx, t.Topic, t.Policy); err != nil {
			return nil, fmt.Errorf("policy of topic %s (%s): %w", t.Name, t.Topic, err)
		}
	}
	// Opening under d.mu serialises topic opens; they are rare (start-up, file reload,
	// first use through the API) and this keeps "at most one stream per topic" trivial.
	stream, err := d.node.Open(ctx, t.Topic)
	if err != nil {
		return nil, fmt.Errorf("open topic %s (%s): %w", t.Name, t.Topic, err)
	}
	r := &topicRunner{topic: t.Topic, name: t.Name, stream: stream, fromFile: fromFile, fromAPI: !fromFile,
		quit: make(chan struct{}), subs: make(map[*subscriber]struct{})}
	d.topics[t.Topic] = r
	d.metrics.SetTopics(len(d.topics))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.run(r)
	}()
	d.log.Info("topic subscribed", "topic", t.Name, "id", t.Topic.String(), "from_file", fromFile)
	return r, nil
}

// run delivers one topic's events to its subscribers until the stream ends.
func (d *daemon) run(r *topicRunner) {
	defer r.closeSubscribers()
	events := r.stream.Events()
	for {
		select {
		case <-r.quit:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			// Under the explicit policy nothing is acknowledged here: a client acknowledges
			// each operation through the admin API once it has processed it, and every
			// frontier subscription is first sent what is not acknowledged yet.
			r.fanout(ev, d.log)
			d.catchUp.observe(r.topic, ev)
			if f, ok := ev.(node.ProcessingFailed); ok {
				d.log.Warn("operation rejected", "topic", r.name, "hash", f.Hash.String(), "source", fmt.Sprint(f.Source), "peer", sourcePeer(f.Source), "err", f.Err)
			}
			if d.afterEvent != nil {
				d.afterEvent(ev)
			}
		}
	}
}

// sourcePeer is the peer id an operation came from ("" for none).
func sourcePeer(src node.Source) string {
	switch s := src.(type) {
	case node.SyncSession:
		return peerName(s.Peer)
	case node.Gossip:
		return peerName(s.Peer)
	}
	return ""
}

// peerName names a peer by its libp2p peer id, as the admin API does (the hex key if it
// has none).
func peerName(pk operation.PublicKey) string {
	id, err := node.PeerIDOf(pk)
	if err != nil {
		return pk.String()
	}
	return id.String()
}

func (r *topicRunner) fanout(ev node.Event, log *slog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.subs {
		if !s.q.push(ev) {
			log.Warn("disconnecting slow event subscriber", "topic", r.name,
				"queue_events", subscriberQueueEvents, "queue_bytes", subscriberQueueBytes)
			delete(r.subs, s)
		}
	}
}

func (r *topicRunner) subscribe() (*subscriber, func()) {
	s := &subscriber{q: newEventQueue(subscriberQueueEvents, subscriberQueueBytes)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s, func() {
		r.mu.Lock()
		delete(r.subs, s)
		r.mu.Unlock()
		s.q.close()
	}
}

func (r *topicRunner) closeSubscribers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.subs {
		s.q.close()
		delete(r.subs, s)
	}
}

// closeTopic stops syncing a topic; data stays in the store.
func (d *daemon) closeTopic(r *topicRunner) {
	close(r.quit)
	if err := r.stream.Close(); err != nil {
		d.log.Warn("close topic", "topic", r.name, "err", err)
	}
}

// applyTopics handles a change of the topics file.
func (d *daemon) applyTopics(ctx context.Context, ch config.TopicsChange) {
	for _, t := range ch.Added {
		if _, err := d.ensure(ctx, t, true); err != nil {
			d.log.Error("topics file: subscribe failed", "topic", t.Name, "err", err)
		}
	}
	for _, t := range ch.PolicyChanged {
		if err := d.node.SetTopicPolicy(ctx, t.Topic, t.Policy); err != nil {
			d.log.Error("topics file: policy change failed", "topic", t.Name, "err", err)
			continue
		}
		d.log.Info("topic policy changed", "topic", t.Name, "id", t.Topic.String())
	}
	for _, t := range ch.Removed {
		d.mu.Lock()
		r, ok := d.topics[t.Topic]
		if ok {
			r.fromFile = false
			if !r.fromAPI {
				delete(d.topics, t.Topic)
				d.metrics.SetTopics(len(d.topics))
			} else {
				ok = false // still used through the admin API until restart
			}
		}
		d.mu.Unlock()
		d.catchUp.drop(t.Topic, "removed from the topics file")
		if ok {
			d.closeTopic(r)
			if !t.Policy.IsZero() {
				if err := d.node.SetTopicPolicy(ctx, t.Topic, policy.Policy{}); err != nil {
					d.log.Error("topics file: removing the policy failed", "topic", t.Name, "err", err)
				}
			}
			d.log.Info("topic unsubscribed (data kept)", "topic", t.Name, "id", t.Topic.String())
		}
	}
}

// detachSubscribers ends every admin event stream and refuses new work, so the admin server
// can shut down while in-flight publishes complete.
func (d *daemon) detachSubscribers() {
	d.mu.Lock()
	if !d.closing {
		close(d.detached)
	}
	d.closing = true
	runners := make([]*topicRunner, 0, len(d.topics))
	for _, r := range d.topics {
		runners = append(runners, r)
	}
	d.mu.Unlock()
	for _, r := range runners {
		r.closeSubscribers()
	}
}

// Close closes every topic and waits for the runners.
func (d *daemon) Close() {
	d.mu.Lock()
	if !d.closing {
		close(d.detached)
	}
	d.closing = true
	runners := d.topics
	d.topics = map[operation.Topic]*topicRunner{}
	d.mu.Unlock()
	for _, r := range runners {
		d.closeTopic(r)
	}
	d.wg.Wait()
}

func (d *daemon) topicFromHex(s string) (config.Topic, error) {
	t, err := operation.ParseTopic(s)
	if err != nil {
		return config.Topic{}, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	return config.Topic{Name: s, Topic: t}, nil
}

// --- admin.Backend ---

func (d *daemon) Status(ctx context.Context) (admin.Status, error) {
	ts, err := d.Topics(ctx)
	if err != nil {
		return admin.Status{}, err
	}
	return admin.Status{
		PeerID:    d.node.PeerID(),
		PublicKey: d.node.PublicKey().String(),
		NetworkID: d.node.NetworkID().String(),
		Addresses: d.node.Addrs(),
		Topics:    ts,
		Peers:     d.node.Peers(),
		Version:   d.version,
	}, nil
}

func (d *daemon) Topics(ctx context.Context) ([]admin.TopicStatus, error) {
	d.mu.Lock()
	ids := make([]operation.Topic, 0, len(d.topics))
	for id := range d.topics {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	out := make([]admin.TopicStatus, 0, len(ids))
	for _, id := range ids {
		st, err := d.node.TopicStatus(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", id, err)
		}
		out = append(out, st)
	}
	return out, nil
}

func (d *daemon) Peers(context.Context) ([]admin.PeerStatus, error) { return d.node.Peers(), nil }

func (d *daemon) AddTopic(ctx context.Context, topic string) error {
	t, err := d.topicFromHex(topic)
	if err != nil {
		return err
	}
	_, err = d.ensure(ctx, t, false)
	return err
}

func (d *daemon) Publish(ctx context.Context, topic string, msg []byte) (admin.PublishResult, error) {
	t, err := d.topicFromHex(topic)
	if err != nil {
		return admin.PublishResult{}, err
	}
	r, err := d.ensure(ctx, t, false)
	if err != nil {
		return admin.PublishResult{}, err
	}
	res, err := r.stream.Publish(ctx, msg)
	if err != nil {
		return admin.PublishResult{}, fmt.Errorf("publish to %s: %w", t.Topic, err)
	}
	return res, nil
}

// Ack acknowledges the operation hash of topic (and, acknowledgements being a per-log
// high-water mark, every earlier operation of its author's log in the topic).
func (d *daemon) Ack(ctx context.Context, topic, hash string) error {
	t, err := d.topicFromHex(topic)
	if err != nil {
		return err
	}
	if _, err := operation.ParseHash(hash); err != nil {
		return fmt.Errorf("%w: hash: %v", admin.ErrInvalid, err)
	}
	r, err := d.ensure(ctx, t, false)
	if err != nil {
		return err
	}
	if err := r.stream.Ack(ctx, hash); err != nil {
		return fmt.Errorf("ack %s on %s: %w", hash, t.Topic, err)
	}
	return nil
}

// Subscribe streams a topic's events to one admin client. Every client receives every
// event. from=start first sends every stored operation; from=frontier under the explicit
// ack policy first sends every operation not acknowledged yet (so a client that connects
// after a restart, or after operations arrived while nobody listened, receives them). In
// both cases the subscriber registers for live events before the store is read, and live
// operations the replay already covered are not sent twice.
func (d *daemon) Subscribe(ctx context.Context, topic string, from admin.From) (<-chan node.Event, func(), error) {
	t, err := d.topicFromHex(topic)
	if err != nil {
		return nil, nil, err
	}
	r, err := d.ensure(ctx, t, false)
	if err != nil {
		return nil, nil, err
	}
	replay := from == admin.FromStart || d.ack == config.AckExplicit
	s, unsubscribe := r.subscribe()
	// Unbuffered: the client's connection is the only buffer, so a stalled client holds
	// at most the event being written.
	out := make(chan node.Event)
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		defer unsubscribe()
		send := func(ev node.Event) error {
			select {
			case out <- ev:
				return nil
			case <-hctx.Done():
				return hctx.Err()
			case <-d.detached:
				return errClosing
			}
		}
		// The topic has one log per author, so an author's highest seq is a log height.
		maxSeq := map[operation.PublicKey]uint64{} // author → highest seq replayed
		if replay {
			err := d.node.History(hctx, r.topic, from, func(op node.ProcessedOperation) error {
				if last, ok := maxSeq[op.Author]; !ok || op.SeqNum > last {
					maxSeq[op.Author] = op.SeqNum
				}
				return send(node.Processed{Operation: op})
			})
			if err != nil {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, errClosing) {
					d.log.Warn("replay history", "topic", r.name, "from", from, "err", err)
					_ = send(node.ReplayFailed{Err: err})
				}
				return
			}
		}
		for {
			ev, ok := s.q.pop(hctx)
			if !ok {
				return
			}
			if p, ok := ev.(node.Processed); ok {
				if last, ok := maxSeq[p.Operation.Author]; ok && p.Operation.SeqNum <= last {
					continue // already sent from the store
				}
			}
			if send(ev) != nil {
				return
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}, nil
}
