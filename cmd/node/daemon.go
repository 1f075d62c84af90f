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
	"github.com/pandanet/pandanet/pkg/operation"
)

// Subscriber buffer sizes. A subscriber that falls this far behind is disconnected rather
// than back-pressuring the topic for everybody (it can reconnect with --from start).
const (
	liveBuffer    = 256
	historyBuffer = 4096 // live events held back while a from=start subscriber replays history
)

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

	// afterEvent, if set, is called after each event was fanned out (tests only).
	afterEvent func(admin.Event)
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

type subscriber struct {
	ch     chan admin.Event
	closed bool // guarded by topicRunner.mu
}

var errClosing = fmt.Errorf("shutting down: %w", admin.ErrNotReady)

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
		} else {
			r.fromAPI = true
		}
		return r, nil
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
			delivered := r.fanout(ev, d.log)
			// Under the explicit policy an operation counts as handled once a client has
			// received it; nobody listening means it stays un-acked and is delivered again
			// from the frontier after a restart.
			if d.ack == config.AckExplicit && delivered > 0 && ev.Type == admin.EventProcessed {
				if err := r.stream.Ack(context.Background(), ev.Hash); err != nil {
					d.log.Warn("ack failed", "topic", r.name, "hash", ev.Hash, "err", err)
				}
			}
			if ev.Type == admin.EventProcessingFailed {
				d.log.Warn("operation rejected", "topic", r.name, "hash", ev.Hash, "source", ev.Source, "peer", ev.Peer, "err", ev.Error)
			}
			if d.afterEvent != nil {
				d.afterEvent(ev)
			}
		}
	}
}

func (r *topicRunner) fanout(ev admin.Event, log *slog.Logger) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for s := range r.subs {
		select {
		case s.ch <- ev:
			n++
		default:
			log.Warn("disconnecting slow event subscriber", "topic", r.name)
			s.closed = true
			close(s.ch)
			delete(r.subs, s)
		}
	}
	return n
}

func (r *topicRunner) subscribe(buffer int) (*subscriber, func()) {
	s := &subscriber{ch: make(chan admin.Event, buffer)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !s.closed {
			s.closed = true
			close(s.ch)
			delete(r.subs, s)
		}
	}
}

func (r *topicRunner) closeSubscribers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.subs {
		s.closed = true
		close(s.ch)
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
		if ok {
			d.closeTopic(r)
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

func (d *daemon) Subscribe(ctx context.Context, topic string, from admin.From) (<-chan admin.Event, func(), error) {
	t, err := d.topicFromHex(topic)
	if err != nil {
		return nil, nil, err
	}
	r, err := d.ensure(ctx, t, false)
	if err != nil {
		return nil, nil, err
	}
	if from != admin.FromStart {
		s, stop := r.subscribe(liveBuffer)
		return s.ch, stop, nil
	}
	// from=start: register for live events first so nothing falls between history and
	// live, replay the store, then forward live events the history did not already cover.
	s, stop := r.subscribe(historyBuffer)
	out := make(chan admin.Event, liveBuffer)
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		defer stop()
		send := func(ev admin.Event) error {
			select {
			case out <- ev:
				return nil
			case <-hctx.Done():
				return hctx.Err()
			case <-d.detached:
				return errClosing
			}
		}
		maxSeq := map[string]uint64{} // author → highest seq replayed
		err := d.node.History(hctx, r.topic, func(ev admin.Event) error {
			if last, ok := maxSeq[ev.Author]; !ok || ev.Seq > last {
				maxSeq[ev.Author] = ev.Seq
			}
			return send(ev)
		})
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, errClosing) {
				d.log.Warn("replay history", "topic", r.name, "err", err)
				_ = send(admin.Event{Type: admin.EventReplayFailed, Topic: r.topic.String(), Error: err.Error()})
			}
			return
		}
		for {
			select {
			case <-hctx.Done():
				return
			case ev, ok := <-s.ch:
				if !ok {
					return
				}
				if ev.Type == admin.EventProcessed {
					if last, ok := maxSeq[ev.Author]; ok && ev.Seq <= last {
						continue // already sent from history
					}
				}
				if send(ev) != nil {
					return
				}
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
