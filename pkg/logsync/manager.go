package logsync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Config configures a Manager. Protocol, Store and Sink are required; zero values elsewhere
// take the defaults.
type Config struct {
	// Protocol is the stream protocol id, namespaced by network id by the caller.
	Protocol protocol.ID
	Store    Store
	Sink     Sink
	// CatchUpOnly ends sessions after catch-up instead of keeping them live; a peer is then
	// synced once per AddPeer (or reconnect) rather than continuously.
	CatchUpOnly bool
	// Session tunes limits, timeouts and queues; its Live field is ignored (see CatchUpOnly).
	Session SessionConfig
	// OnEvent receives SyncStarted, SyncEnded, SessionFailed and SessionEnded for every topic. It is called
	// from session goroutines and must not block for long.
	OnEvent func(Event)
	// MaxInboundPerPeer caps the sessions a single peer has open to us that are not the
	// session of their topic: handshakes in flight and sessions a newer one replaced that
	// are still closing. Established sessions need no per-peer cap of their own: there is
	// at most one per (peer, topic we serve), a newer one replacing the older, so a peer
	// sharing many topics keeps a live session for each of them (in live mode sessions
	// never end, so capping them per peer would leave the topics beyond the cap unsynced
	// forever). MaxInbound caps the same across all peers. Beyond either, the handshake is
	// rejected as busy. What bounds the established sessions is the topics we serve times
	// the peers we stay connected to (the connection manager's high water mark); a total
	// cap on them would, like a per-peer one, leave every topic past it unsynced for good
	// (a node following 10,000 topics of one peer stalled at 8,192).
	MaxInboundPerPeer int
	MaxInbound        int
	// MinBackoff and MaxBackoff bound the retry delay of sessions we initiate; it doubles
	// after each failure (with jitter) and resets after a completed catch-up or a new
	// connection to the peer.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds opening a stream (and dialling the peer if needed).
	DialTimeout time.Duration
	// Penalty is how long a peer that kept pushing a log we refused is disconnected and
	// refused sessions (default DefaultPenalty, doubling for repeat offenders up to an hour).
	Penalty time.Duration
}

// Defaults for Config.
const (
	DefaultMaxInboundPerPeer = 32
	// DefaultMaxInbound bounds handshakes in flight (and replaced sessions closing) from
	// all peers together: enough for 32 peers' worth of full per-peer caps at once.
	DefaultMaxInbound  = 1024
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 2 * time.Minute
	DefaultDialTimeout = 30 * time.Second
)

// errReplaced ends a session that lost the tie-break or was superseded by a newer one.
var errReplaced = errors.New("session replaced by the peer's session")

// Manager runs sync sessions for subscribed topics over a libp2p host: it accepts sessions
// for the topics it serves and initiates them with peers added by AddPeer, retrying with
// backoff, keeping at most one session per (peer, topic).
type Manager struct {
	h        host.Host
	cfg      Config
	sessCfg  SessionConfig
	ctx      context.Context
	cancel   context.CancelFunc
	wg       stdsync.WaitGroup
	nextID   atomic.Uint64
	notifiee *network.NotifyBundle

	refusals  *refusalMemory
	penalties *penalties

	mu     stdsync.Mutex
	closed bool
	topics map[operation.Topic]*topicState
	// unsettled counts, per peer, its inbound sessions that are not the session of their
	// topic (in handshake, or replaced and closing); unsettledTotal is their sum.
	unsettled      map[peer.ID]int
	unsettledTotal int
}

type topicState struct {
	topic    operation.Topic
	ctx      context.Context
	cancel   context.CancelFunc
	slots    map[peer.ID]*slot
	sessions map[*Session]struct{}
}

// slot is the (peer, topic) pair: whether we want to sync with it, and its session.
type slot struct {
	wanted        bool
	workerRunning bool
	workerCancel  context.CancelFunc
	wake          chan struct{}
	active        *activeSession
}

type activeSession struct {
	outgoing bool
	// inbound only: counted in Manager.unsettled (replaced and still closing).
	draining bool
	ctx      context.Context
	cancel   context.CancelCauseFunc
	done     chan struct{}
	// set before done is closed
	completed bool
}

// NewManager registers the protocol handler on h and returns a running Manager.
func NewManager(h host.Host, cfg Config) (*Manager, error) {
	if cfg.Protocol == "" || cfg.Store == nil || cfg.Sink == nil {
		return nil, errors.New("sync manager: Protocol, Store and Sink are required")
	}
	if cfg.MaxInboundPerPeer <= 0 {
		cfg.MaxInboundPerPeer = DefaultMaxInboundPerPeer
	}
	if cfg.MaxInbound <= 0 {
		cfg.MaxInbound = DefaultMaxInbound
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Penalty <= 0 {
		cfg.Penalty = DefaultPenalty
	}
	sessCfg := cfg.Session
	sessCfg.Live = !cfg.CatchUpOnly
	sessCfg = sessCfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		h: h, cfg: cfg, sessCfg: sessCfg, ctx: ctx, cancel: cancel,
		refusals: newRefusalMemory(sessCfg.RefusalTTL), penalties: newPenalties(cfg.Penalty),
		topics:    make(map[operation.Topic]*topicState),
		unsettled: make(map[peer.ID]int),
	}
	m.notifiee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) { m.onConnected(c.RemotePeer()) }}
	h.Network().Notify(m.notifiee)
	h.SetStreamHandler(cfg.Protocol, m.handleStream)
	return m, nil
}

// Subscribe starts serving topic: peers may open sessions for it and AddPeer accepts it.
func (m *Manager) Subscribe(topic operation.Topic) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.topics[topic]; ok {
		return nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.topics[topic] = &topicState{topic: topic, ctx: ctx, cancel: cancel,
		slots: make(map[peer.ID]*slot), sessions: make(map[*Session]struct{})}
	return nil
}

// Unsubscribe stops serving topic and ends its sessions (with a Close exchange) and retries.
func (m *Manager) Unsubscribe(topic operation.Topic) {
	m.mu.Lock()
	ts := m.topics[topic]
	delete(m.topics, topic)
	m.mu.Unlock()
	if ts != nil {
		ts.cancel()
	}
}

// AddPeer makes sure a session with p for topic runs: it starts one (unless one already
// runs, e.g. opened by p) and keeps retrying with backoff until RemovePeer, Unsubscribe or
// Close. Calling it again for a known peer skips a pending retry delay. Call it when
// discovery finds a peer sharing the topic or a connection to such a peer is established.
func (m *Manager) AddPeer(topic operation.Topic, p peer.ID) error {
	if p == m.h.ID() {
		return fmt.Errorf("sync: add peer: %s is ourselves", p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	ts := m.topics[topic]
	if ts == nil {
		return fmt.Errorf("sync: add peer %s: %w", p, ErrNotSubscribed)
	}
	sl := ts.slot(p)
	sl.wanted = true
	if sl.workerRunning {
		sl.poke()
		return nil
	}
	ctx, cancel := context.WithCancel(ts.ctx)
	sl.workerRunning, sl.workerCancel = true, cancel
	m.wg.Add(1)
	go m.worker(ctx, ts, p, sl)
	return nil
}

// RemovePeer stops syncing topic with p: retries stop and a running session ends.
func (m *Manager) RemovePeer(topic operation.Topic, p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.topics[topic]
	if ts == nil {
		return
	}
	sl := ts.slots[p]
	if sl == nil {
		return
	}
	sl.wanted = false
	if sl.workerCancel != nil {
		sl.workerCancel()
	}
	if sl.active != nil {
		sl.active.cancel(context.Canceled)
	}
}

// Publish forwards a newly stored (and, if it came from a peer, validated) operation to every
// live session of topic. It never blocks: a session whose queue is full is closed and
// re-syncs on its retry. header and body must not be modified afterwards.
func (m *Manager) Publish(topic operation.Topic, header, body []byte) {
	m.PublishExcept(topic, header, body, "")
}

// PublishExcept is Publish without the session(s) with origin, the peer the operation came
// from: sending it back is useless, and during a large catch-up from origin it would fill
// that session's live queue and restart it.
func (m *Manager) PublishExcept(topic operation.Topic, header, body []byte, origin peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.topics[topic]
	if ts == nil {
		return
	}
	for s := range ts.sessions {
		if origin != "" && s.p.Peer == origin {
			continue
		}
		s.Enqueue(header, body)
	}
}

// Peers returns the peers topic currently has a session with.
func (m *Manager) Peers(topic operation.Topic) []peer.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.topics[topic]
	if ts == nil {
		return nil
	}
	var out []peer.ID
	for p, sl := range ts.slots {
		if sl.active != nil {
			out = append(out, p)
		}
	}
	return out
}

// Close ends all sessions (each with a Close exchange bounded by Timeouts.Close), stops
// accepting new ones and waits for every goroutine of the Manager.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.h.RemoveStreamHandler(m.cfg.Protocol)
	m.h.Network().StopNotify(m.notifiee)
	m.cancel()
	m.wg.Wait()
	return nil
}

func (ts *topicState) slot(p peer.ID) *slot {
	sl := ts.slots[p]
	if sl == nil {
		sl = &slot{wake: make(chan struct{}, 1)}
		ts.slots[p] = sl
	}
	return sl
}

// dropIfIdle forgets a slot nobody needs any more. Caller holds m.mu.
func (ts *topicState) dropIfIdle(p peer.ID, sl *slot) {
	if !sl.wanted && !sl.workerRunning && sl.active == nil && ts.slots[p] == sl {
		delete(ts.slots, p)
	}
}

func (sl *slot) poke() {
	select {
	case sl.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) onConnected(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ts := range m.topics {
		if sl := ts.slots[p]; sl != nil && sl.wanted {
			sl.poke()
		}
	}
}

func (m *Manager) emit(e Event) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

func (m *Manager) fail(ts *topicState, p peer.ID, id uint64, initiator bool, err error) {
	if errors.Is(err, ErrIgnoredRefusal) {
		// Flooding us with what we refused: cut the peer off and refuse its sessions for a
		// while (each of its sessions, on any topic, would otherwise cost us decoding).
		m.penalties.punish(p, time.Now())
		_ = m.h.Network().ClosePeer(p)
	}
	m.emit(SessionFailed{Topic: ts.topic, Peer: p, SessionID: id, Initiator: initiator, Err: err, Misbehaving: Misbehaving(err)})
}

// jitter spreads retries over [d/2, d) so peers that failed together do not retry together.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// worker keeps one session with p for topic alive while p is wanted.
func (m *Manager) worker(ctx context.Context, ts *topicState, p peer.ID, sl *slot) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		sl.workerRunning, sl.workerCancel = false, nil
		ts.dropIfIdle(p, sl)
		m.mu.Unlock()
	}()
	backoff := m.cfg.MinBackoff
	var delay time.Duration
	for {
		if delay > 0 {
			t := time.NewTimer(jitter(delay))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-sl.wake:
				t.Stop()
				backoff = m.cfg.MinBackoff
			case <-t.C:
			}
		}

		m.mu.Lock()
		if a := sl.active; a != nil {
			// Usually the session p opened to us; we are synced through it.
			m.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-a.done:
			}
			if !m.next(ctx, sl, a.completed, &backoff, &delay) {
				return
			}
			continue
		}
		sctx, cancel := context.WithCancelCause(ctx)
		a := &activeSession{outgoing: true, ctx: sctx, cancel: cancel, done: make(chan struct{})}
		sl.active = a
		m.mu.Unlock()

		a.completed = m.runOutgoing(sctx, ts, p)
		cancel(nil)
		m.mu.Lock()
		if sl.active == a {
			sl.active = nil
		}
		m.mu.Unlock()
		close(a.done)
		if ctx.Err() != nil {
			return
		}
		if !m.next(ctx, sl, a.completed, &backoff, &delay) {
			return
		}
	}
}

// next decides the delay before the next attempt. A session that completed catch-up resets
// the backoff; in catch-up-only mode it also ends the retries until the peer is poked again.
func (m *Manager) next(ctx context.Context, sl *slot, completed bool, backoff, delay *time.Duration) bool {
	if completed {
		*backoff = m.cfg.MinBackoff
		if m.cfg.CatchUpOnly {
			select {
			case <-ctx.Done():
				return false
			case <-sl.wake:
				*delay = 0
				return true
			}
		}
		*delay = *backoff
		return true
	}
	*delay = *backoff
	*backoff = min(*backoff*2, m.cfg.MaxBackoff)
	return true
}

// runOutgoing opens a stream to p, does the handshake and runs the session. It reports
// whether catch-up completed.
func (m *Manager) runOutgoing(ctx context.Context, ts *topicState, p peer.ID) bool {
	if m.penalties.banned(p, time.Now()) {
		return false // retried with backoff
	}
	dctx, dcancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	// Sync must also work through relays, whose connections libp2p marks as limited.
	str, err := m.h.NewStream(network.WithAllowLimitedConn(dctx, "pandanet sync"), p, m.cfg.Protocol)
	dcancel()
	if err != nil {
		if ctx.Err() == nil {
			m.fail(ts, p, 0, true, fmt.Errorf("sync %s: open stream: %w", p, err))
		}
		return false
	}
	// The handshake has no context of its own; a cancelled attempt (e.g. it lost the
	// tie-break) is cut off by resetting the stream.
	stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
	err = InitiateHandshake(str, ts.topic, m.sessCfg.Timeouts.Handshake)
	if !stop() || err != nil {
		_ = str.Reset()
		if err != nil && ctx.Err() == nil {
			m.fail(ts, p, 0, true, fmt.Errorf("sync %s: %w", p, err))
		}
		return false
	}
	return m.runSession(ctx, ts, p, str, true)
}

// runSession runs an established session and reports whether catch-up completed.
func (m *Manager) runSession(ctx context.Context, ts *topicState, p peer.ID, str network.Stream, initiator bool) bool {
	id := m.nextID.Add(1)
	completed := false
	onEvent := func(e Event) {
		if ended, ok := e.(SyncEnded); ok && ended.Err == nil {
			completed = true // set from a session goroutine before Run returns
		}
		m.emit(e)
	}
	sess := NewSession(str, SessionParams{ID: id, Topic: ts.topic, Peer: p, Initiator: initiator,
		Store: m.cfg.Store, Sink: m.cfg.Sink, Config: m.sessCfg, OnEvent: onEvent, refusals: m.refusals})
	// Registered before Run reads our heights, so nothing published in between is missed.
	m.mu.Lock()
	ts.sessions[sess] = struct{}{}
	m.mu.Unlock()
	err := sess.Run(ctx)
	m.mu.Lock()
	delete(ts.sessions, sess)
	m.mu.Unlock()

	switch {
	case err == nil, errors.Is(err, ErrRemoteClosed):
		_ = str.Close()
		err = nil
	case ctx.Err() != nil:
		// We ended it (shutdown, RemovePeer, Unsubscribe, lost tie-break): Close was exchanged.
		_ = str.Close()
		err = nil
	default:
		_ = str.Reset()
		m.fail(ts, p, id, initiator, err)
	}
	// Every path ends here, so a sink's per-session state is always released.
	m.emit(SessionEnded{Topic: ts.topic, Peer: p, SessionID: id, Initiator: initiator, Err: err})
	return completed
}

// handleStream accepts a session opened by a peer.
func (m *Manager) handleStream(str network.Stream) {
	p := str.Conn().RemotePeer()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = str.Reset()
		return
	}
	busy := m.unsettled[p] >= m.cfg.MaxInboundPerPeer || m.unsettledTotal >= m.cfg.MaxInbound
	banned := m.penalties.banned(p, time.Now())
	m.unsettleAddLocked(p)
	m.wg.Add(1)
	m.mu.Unlock()
	// Counted in unsettled until it becomes its topic's session (release settles the
	// count of a session that did, see settle).
	settled := false
	defer func() {
		m.mu.Lock()
		if !settled {
			m.unsettleLocked(p)
		}
		m.mu.Unlock()
		m.wg.Done()
	}()

	var ts *topicState
	var a *activeSession
	var sl *slot
	_, err := AcceptHandshake(str, m.sessCfg.Timeouts.Handshake, func(t operation.Topic) string {
		if banned {
			return ReasonRateLimited
		}
		if busy {
			return ReasonBusy
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed {
			return ReasonShuttingDown
		}
		ts = m.topics[t]
		if ts == nil {
			return ReasonNotSubscribed
		}
		sl = ts.slot(p)
		if ex := sl.active; ex != nil {
			// Tie-break when both sides initiate: the session opened by the lower peer id
			// wins, so both ends keep the same one. A newer session from the same initiator
			// replaces a stale one.
			if ex.outgoing && m.h.ID() < p {
				ts.dropIfIdle(p, sl)
				return ReasonDuplicate
			}
			if !ex.outgoing && !ex.draining {
				// The replaced session closes (bounded by Timeouts.Close) while this one
				// runs: it counts against the peer's cap again, so a peer replacing its
				// sessions in a loop cannot pile up closing ones.
				ex.draining = true
				m.unsettleAddLocked(p)
			}
			ex.cancel(errReplaced)
		}
		ctx, cancel := context.WithCancelCause(ts.ctx)
		a = &activeSession{ctx: ctx, cancel: cancel, done: make(chan struct{})}
		sl.active = a
		// Established: bounded by the topics we serve, no longer by the per-peer cap.
		settled = true
		m.unsettleLocked(p)
		return ""
	})
	if err != nil {
		var rej *RejectError
		if errors.As(err, &rej) {
			// Close, not Reset, so the Reject reaches the initiator.
			_ = str.Close()
		} else {
			_ = str.Reset()
		}
		if a != nil {
			m.release(ts, p, sl, a)
		}
		if ts != nil && Misbehaving(err) {
			m.fail(ts, p, 0, false, fmt.Errorf("sync %s: %w", p, err))
		}
		return
	}
	a.completed = m.runSession(a.ctx, ts, p, str, false)
	m.release(ts, p, sl, a)
}

// unsettleAddLocked counts one more unsettled inbound session of p. Caller holds m.mu.
func (m *Manager) unsettleAddLocked(p peer.ID) {
	m.unsettled[p]++
	m.unsettledTotal++
}

// unsettleLocked counts one unsettled inbound session of p less. Caller holds m.mu.
func (m *Manager) unsettleLocked(p peer.ID) {
	m.unsettledTotal--
	if m.unsettled[p]--; m.unsettled[p] <= 0 {
		delete(m.unsettled, p)
	}
}

func (m *Manager) release(ts *topicState, p peer.ID, sl *slot, a *activeSession) {
	a.cancel(nil)
	m.mu.Lock()
	if sl.active == a {
		sl.active = nil
	}
	if a.draining {
		a.draining = false
		m.unsettleLocked(p)
	}
	ts.dropIfIdle(p, sl)
	m.mu.Unlock()
	close(a.done)
}
