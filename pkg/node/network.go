package node

// Networking: a pkg/p2p host (libp2p, discovery, gossip, relay) plus a pkg/logsync manager
// (log sync sessions), wired to the node's pipeline through the watches at the end of this file:
//
//	streamed topics ──► sync.Subscribe + discovery interest (host.AddTopic)
//	discovery TopicPeer ──► sync.AddPeer(topic, peer)
//	sync session receives an operation ──► syncSink ──► pipeline (verify, store)
//	every newly stored operation ──► forwarder ──► live sync sessions of the topic
//	sync events ──► SyncStarted / SyncEnded on the topic's subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/p2p"
	"github.com/pandanet/pandanet/pkg/pipeline"
	"github.com/pandanet/pandanet/pkg/policy"
	"github.com/pandanet/pandanet/pkg/store"
)

// SyncProtocol is the name of the log-sync protocol; the host namespaces it by network id.
const SyncProtocol = "log-sync/1"

// ErrOffline is returned by network methods of a node created without WithNetwork.
var ErrOffline = errors.New("node has no network (create it with WithNetwork)")

// NetworkConfig configures the node's networking. The zero value of every optional field
// is a sensible edge-node default; always-on nodes set Public and RelayService.
type NetworkConfig struct {
	// NetworkID namespaces every protocol, gossip topic and the mDNS service (required).
	NetworkID operation.NetworkID
	// ListenAddrs defaults to TCP and QUIC on all interfaces, random ports.
	ListenAddrs []ma.Multiaddr
	// NoListen makes the node dial-only (reachable through a relay reservation).
	NoListen bool
	// AnnounceAddrs, when set, replace the advertised addresses (e.g. a Service address).
	AnnounceAddrs []ma.Multiaddr
	// BootstrapPeers are full multiaddrs ending in /p2p/<peer id>: dialled with backoff,
	// kept connected, the discovery walk's entry points and, for non-public nodes, relays.
	BootstrapPeers []ma.Multiaddr
	// Public marks an always-on, directly reachable node.
	Public bool
	// RelayService relays connections for peers of this network.
	RelayService bool
	// RelayMaxReservations bounds concurrent relay reservations (default 1024).
	RelayMaxReservations int
	// RelayReservations keeps reservations on the bootstrap relays whatever NAT detection
	// concludes.
	RelayReservations bool
	// MDNS enables LAN discovery.
	MDNS bool
	// DisableHolePunching turns direct connection upgrades through NATs off.
	DisableHolePunching bool
	// DisableRandomWalk stops this node from starting discovery sessions (it still
	// answers them).
	DisableRandomWalk bool
	// Walkers, WalkInterval and MaxWalkInterval tune discovery (defaults 2, 1s, 30s).
	Walkers                       int
	WalkInterval, MaxWalkInterval time.Duration
	// ConnLow and ConnHigh are the connection manager's water marks (default 100/150).
	ConnLow, ConnHigh int
	// PrometheusRegisterer receives libp2p's metrics; nil disables them.
	PrometheusRegisterer prometheus.Registerer
	// Logger receives networking logs (default: slog.Default()).
	Logger *slog.Logger

	// Sync tunes log-sync sessions (timeouts, limits, backoff); zero values are defaults.
	// Advanced: ordinary use leaves it alone.
	Sync logsync.Config
	// OnSyncEvent, if set, sees every sync session event (for metrics and diagnostics); it
	// must be fast. Advanced: subscriptions report SyncStarted and SyncEnded already.
	OnSyncEvent func(logsync.Event)
}

func (c *NetworkConfig) p2pConfig(key operation.PrivateKey, log *slog.Logger, addrs p2p.AddressStore) p2p.Config {
	return p2p.Config{
		PrivateKey: key, NetworkID: c.NetworkID,
		ListenAddrs: c.ListenAddrs, NoListen: c.NoListen, AnnounceAddrs: c.AnnounceAddrs,
		BootstrapPeers: c.BootstrapPeers, Public: c.Public,
		RelayService: c.RelayService, RelayMaxReservations: c.RelayMaxReservations, RelayReservations: c.RelayReservations,
		MDNS: c.MDNS, DisableHolePunching: c.DisableHolePunching, AddressStore: addrs,
		DisableRandomWalk: c.DisableRandomWalk, Walkers: c.Walkers,
		WalkInterval: c.WalkInterval, MaxWalkInterval: c.MaxWalkInterval,
		ConnLow: c.ConnLow, ConnHigh: c.ConnHigh,
		TopicStreamsProtocol: SyncProtocol,
		Logger:               log, PrometheusRegisterer: c.PrometheusRegisterer,
	}
}

// WithNetwork connects the node to peers: a libp2p host with discovery, gossip and relay
// support, and log sync for every streamed topic.
func WithNetwork(cfg NetworkConfig) Option {
	return func(c *config) error {
		c.network = &cfg
		return nil
	}
}

type network struct {
	n    *Node
	host *p2p.Host
	sync *logsync.Manager
	log  *slog.Logger
	sink *syncSink

	ctx    context.Context // cancelled first by close
	cancel context.CancelFunc

	wg         sync.WaitGroup
	mu         sync.Mutex
	forwarders map[operation.Topic]context.CancelFunc
}

// startNetwork runs after the pipeline is up; on error the caller closes the rest.
func (n *Node) startNetwork(ctx context.Context, cfg *NetworkConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// The address book lives next to the operations, so a restarted node finds the peers
	// it knew without a bootstrap peer.
	host, err := p2p.New(ctx, cfg.p2pConfig(n.key, log, n.store))
	if err != nil {
		return fmt.Errorf("start network: %w", err)
	}
	nw := &network{n: n, host: host, log: log, forwarders: make(map[operation.Topic]context.CancelFunc)}
	nw.ctx, nw.cancel = context.WithCancel(n.ctx)
	nw.sink = &syncSink{n: n, sessions: make(map[uint64]*sessionCheck)}
	sc := cfg.Sync
	sc.Protocol = host.ProtocolID(SyncProtocol)
	sc.Store = syncStore{n.store}
	sc.Sink = nw.sink
	userHook := cfg.OnSyncEvent
	sc.OnEvent = func(ev logsync.Event) {
		if userHook != nil {
			userHook(ev)
		}
		nw.onSyncEvent(ev)
	}
	nw.sync, err = logsync.NewManager(host.Libp2p(), sc)
	if err != nil {
		host.Close()
		return fmt.Errorf("start log sync: %w", err)
	}
	n.net = nw
	tw, err := n.watchTopics()
	if err != nil {
		nw.close()
		return err
	}
	events := host.Events(nw.ctx)
	nw.wg.Add(2)
	go nw.topicLoop(tw)
	go nw.eventLoop(events)
	return nil
}

// close stops sync sessions first (they feed the pipeline), then the host.
func (nw *network) close() error {
	nw.cancel()
	serr := nw.sync.Close()
	nw.mu.Lock()
	for _, cancel := range nw.forwarders {
		cancel()
	}
	nw.mu.Unlock()
	herr := nw.host.Close()
	nw.wg.Wait()
	return errors.Join(serr, herr)
}

// topicLoop follows the set of streamed topics: each one is synced, announced to discovery
// (privately, through set intersection) and gets a forwarder for live sync.
func (nw *network) topicLoop(tw *topicWatch) {
	defer nw.wg.Done()
	defer tw.Close()
	for {
		c, err := tw.Next(nw.ctx)
		if err != nil {
			return
		}
		if c.Added {
			nw.addTopic(c.Topic)
		} else {
			nw.removeTopic(c.Topic)
		}
	}
}

func (nw *network) addTopic(t operation.Topic) {
	// Watch stored operations before any session can read our heights, so an operation
	// committed in between is forwarded live rather than missed by both phases.
	w, err := nw.n.watchStored(t, storedWatchBuffer)
	if err != nil {
		return
	}
	if err := nw.sync.Subscribe(t); err != nil {
		w.Close()
		nw.log.Warn("subscribe topic to sync", "topic", t, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(nw.ctx)
	nw.mu.Lock()
	if old := nw.forwarders[t]; old != nil {
		old()
	}
	nw.forwarders[t] = cancel
	nw.mu.Unlock()
	nw.wg.Add(1)
	go nw.forward(ctx, t, w)
	nw.host.AddTopic(t)
	// Peers discovery already matched for this topic (e.g. before a restart of the stream).
	for _, p := range nw.host.TopicPeers(t) {
		nw.addPeer(t, p)
	}
}

func (nw *network) removeTopic(t operation.Topic) {
	nw.mu.Lock()
	if cancel := nw.forwarders[t]; cancel != nil {
		cancel()
		delete(nw.forwarders, t)
	}
	nw.mu.Unlock()
	nw.host.RemoveTopic(t)
	nw.sync.Unsubscribe(t)
}

func (nw *network) addPeer(t operation.Topic, p peer.ID) {
	if err := nw.sync.AddPeer(t, p); err != nil && !errors.Is(err, logsync.ErrClosed) && !errors.Is(err, logsync.ErrNotSubscribed) {
		nw.log.Debug("start sync", "topic", t, "peer", p, "err", err)
	}
}

// forward hands every newly stored operation of t to the topic's live sync sessions,
// except back to the peer it came from. If the forwarder falls behind, live sessions
// would miss operations: they are restarted so their catch-up phase covers the gap.
func (nw *network) forward(ctx context.Context, t operation.Topic, w *storedWatch) {
	defer nw.wg.Done()
	for {
		nw.drain(ctx, t, w)
		w.Close()
		if ctx.Err() != nil || !errors.Is(w.Err(), errLagged) {
			return
		}
		var err error
		if w, err = nw.n.watchStored(t, storedWatchBuffer); err != nil {
			return
		}
		nw.log.Warn("live forwarding fell behind; re-syncing topic", "topic", t)
		for _, p := range nw.sync.Peers(t) {
			nw.sync.RemovePeer(t, p)
			nw.addPeer(t, p)
		}
	}
}

// storedWatchBuffer is how far live forwarding may fall behind the writer before the
// topic's sessions are restarted (and catch up from the store instead).
const storedWatchBuffer = 4096

func (nw *network) drain(ctx context.Context, t operation.Topic, w *storedWatch) {
	for {
		so, err := w.Next(ctx)
		if err != nil {
			return
		}
		var origin peer.ID
		if s, ok := so.Source.(SyncSession); ok {
			origin = s.peerID
		}
		nw.sync.PublishExcept(t, so.Op.HeaderBytes, so.Op.Body, origin)
	}
}

// After a discovery session, the topics a peer shares are all handed to the sync manager
// again, at most once per reconcilePerTopic for each of them and never less often than
// maxReconcileInterval: a peer sharing one topic is reconciled after every session (a sync
// worker waiting out a backoff retries as soon as the peer answers again), one sharing
// 10,000 every 10 s (each reconciliation costs a sync-manager call per topic, and with a
// walk every second that was a fifth of such a node's CPU).
const (
	reconcilePerTopic    = time.Millisecond
	maxReconcileInterval = 10 * time.Second
)

// reconcileInterval is the least time between two reconciliations with a peer that
// shares this many topics.
func reconcileInterval(shared int) time.Duration {
	return min(time.Duration(shared)*reconcilePerTopic, maxReconcileInterval)
}

// eventLoop turns discovery results into sync sessions.
func (nw *network) eventLoop(events <-chan p2p.Event) {
	defer nw.wg.Done()
	reconciled := make(map[peer.ID]time.Time)
	for ev := range events {
		switch e := ev.(type) {
		case p2p.TopicPeer:
			if nw.n.subscription(e.Topic) != nil {
				nw.addPeer(e.Topic, e.Peer)
			}
		case p2p.DiscoverySessionEnded:
			// Every topic the peer shares, not only the new ones: a TopicPeer event lost
			// to a slow moment is recovered here, and a sync worker waiting out a backoff
			// retries now that the peer answered (see reconcileInterval).
			if now := time.Now(); e.Topics > 0 && now.Sub(reconciled[e.Peer]) >= reconcileInterval(e.Topics) {
				reconciled[e.Peer] = now
				for _, t := range nw.host.SharedTopics(e.Peer) {
					if nw.n.subscription(t) != nil {
						nw.addPeer(t, e.Peer)
					}
				}
			}
		case p2p.PeerDisconnected:
			nw.sink.forgetPeer(e.Peer)
			delete(reconciled, e.Peer)
		}
	}
}

// onSyncEvent maps sync events onto the topic's subscription. It runs on the session's
// goroutines and must not block (logsync.Config.OnEvent): a session waiting for the app to
// read stops sending (pings too, so the peer drops it) or stops reading live operations,
// and cannot be cancelled. Status events are therefore queued, never pushed; the topic's
// operations are back-pressured by the pipeline.
func (nw *network) onSyncEvent(ev logsync.Event) {
	ctx := nw.ctx
	switch e := ev.(type) {
	case logsync.SyncStarted:
		author, _ := p2p.PublicKeyFromPeerID(e.Peer)
		nw.notify(e.Topic, SyncStarted{
			Peer: author, SessionID: e.SessionID,
			IncomingOps: e.IncomingOps, OutgoingOps: e.OutgoingOps,
			IncomingBytes: e.IncomingBytes, OutgoingBytes: e.OutgoingBytes,
		})
	case logsync.SyncEnded:
		author, _ := p2p.PublicKeyFromPeerID(e.Peer)
		nw.notify(e.Topic, SyncEnded{
			Peer: author, SessionID: e.SessionID,
			SentOps: e.SentOps, ReceivedOps: e.ReceivedOps,
			SentBytes: e.SentBytes, ReceivedBytes: e.ReceivedBytes, Err: e.Err,
		})
	case logsync.SessionEnded:
		// The session is over on every path (catch-up only, live closed, failed, replaced),
		// so its check state goes with it rather than when the peer disconnects.
		nw.sink.endSession(e.SessionID)
	case logsync.SessionFailed:
		lvl := slog.LevelDebug
		if e.Misbehaving {
			lvl = slog.LevelWarn
		}
		nw.log.Log(ctx, lvl, "sync session failed", "topic", e.Topic, "peer", e.Peer, "session", e.SessionID, "misbehaving", e.Misbehaving, "err", e.Err)
	}
}

func (nw *network) notify(topic operation.Topic, ev Event) {
	if _, firstDrop := nw.n.emitTopicEvent(topic, ev); firstDrop {
		nw.log.Warn("topic subscription is not read; dropping its oldest sync events", "topic", topic, "kept", maxPendingNotices)
	}
}

// syncStore adapts the store to what sync sessions read.
type syncStore struct{ s *store.Store }

func (a syncStore) LogHeights(ctx context.Context, topic operation.Topic) (logsync.Heights, error) {
	h, err := a.s.LogHeights(ctx, topic)
	return logsync.Heights(h), err
}

func (a syncStore) LogRange(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64, fn func(header, body []byte) error) error {
	return a.s.LogRangeRaw(ctx, author, log, from, to, fn)
}

func (a syncStore) LogSize(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64) (uint64, uint64, error) {
	sz, err := a.s.LogSize(ctx, author, log, from, to)
	return uint64(sz.Ops), uint64(sz.Bytes), err
}

// syncSink feeds operations from sync sessions into the pipeline without waiting for each
// one to be stored (that would cap a session at one operation per writer batch): Receive
// only blocks for backpressure, and the outcome of earlier operations is checked as they
// complete. An invalid operation fails the session's next Receive with ErrInvalidOperation,
// which aborts the session and marks the peer as misbehaving.
type syncSink struct {
	n        *Node
	mu       sync.Mutex
	sessions map[uint64]*sessionCheck
}

// maxPendingPerSession bounds the operations a session has in flight in the pipeline.
const maxPendingPerSession = 4096

type sessionCheck struct {
	peer    peer.ID
	author  operation.PublicKey // the peer's key, derived once per session
	keyErr  error               // the peer id holds no Ed25519 key
	pending []*pipeline.Ticket
	err     error
}

func (s *syncSink) Receive(ctx context.Context, topic operation.Topic, header, body []byte, src logsync.Source) error {
	chk := s.session(src)
	if err := chk.reap(ctx, false); err != nil {
		return err
	}
	if chk.keyErr != nil {
		return fmt.Errorf("sync peer %s: %w", src.Peer, chk.keyErr)
	}
	if err := s.n.refusePeerOperation(topic, header, body); err != nil {
		return err
	}
	// logsync hands header and body over to the sink (Sink.Receive), so the pipeline keeps
	// them instead of copying them.
	t, err := s.n.ingestRemoteAsync(ctx, pipeline.Input{Topic: topic, Header: header, Body: body, Owned: true},
		SyncSession{Peer: chk.author, SessionID: src.SessionID, Phase: src.Phase, peerID: src.Peer})
	if err != nil {
		return classifyIngestErr(err)
	}
	chk.pending = append(chk.pending, t)
	return chk.reap(ctx, len(chk.pending) >= maxPendingPerSession)
}

// Settle waits for every operation the session handed over and reports the first invalid
// one (logsync.Settler): called when the peer's catch-up ends.
func (s *syncSink) Settle(ctx context.Context, src logsync.Source) error {
	chk := s.session(src)
	for len(chk.pending) > 0 {
		if err := chk.reap(ctx, true); err != nil {
			return err
		}
	}
	return chk.err
}

func (s *syncSink) session(src logsync.Source) *sessionCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	chk := s.sessions[src.SessionID]
	if chk == nil {
		chk = &sessionCheck{peer: src.Peer}
		chk.author, chk.keyErr = p2p.PublicKeyFromPeerID(src.Peer)
		s.sessions[src.SessionID] = chk
	}
	return chk
}

func (s *syncSink) endSession(id uint64) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
}

func (s *syncSink) forgetPeer(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, chk := range s.sessions {
		if chk.peer == p {
			delete(s.sessions, id)
		}
	}
}

// reap checks finished tickets in order; with block it waits for the oldest one first.
// Receive is called by one goroutine per session, so the check needs no lock.
func (c *sessionCheck) reap(ctx context.Context, block bool) error {
	if c.err != nil {
		return c.err
	}
	for len(c.pending) > 0 {
		t := c.pending[0]
		if block {
			select {
			case <-t.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
			block = false
		}
		select {
		case <-t.Done():
		default:
			return nil
		}
		c.pending[0] = nil
		c.pending = c.pending[1:]
		if r := t.Result(); r.Status == pipeline.Failed {
			if errors.Is(r.Err, policy.ErrRefused) {
				// Refused by the writer after passing the early check (a quota filled up
				// meanwhile): the session refuses the log and goes on.
				return syncRefusal(r.Err)
			}
			c.err = classifyIngestErr(r.Err)
			return c.err
		}
	}
	return nil
}

// classifyIngestErr marks operations the peer should never have sent as invalid, so the
// session aborts and the peer is reported; anything else (a full buffer, shutdown, a store
// error) is our own failure and the session is simply retried later.
func classifyIngestErr(err error) error {
	var v *operation.ValidationError
	if errors.As(err, &v) {
		return fmt.Errorf("%w: %w", logsync.ErrInvalidOperation, err)
	}
	return err
}

// ListenAddrs returns the addresses the node listens on (none for an offline or dial-only
// node).
func (n *Node) ListenAddrs() []ma.Multiaddr {
	if n.net == nil {
		return nil
	}
	return n.net.host.Libp2p().Network().ListenAddresses()
}

// PeerID returns the libp2p peer id (derived from the node key).
func (n *Node) PeerID() peer.ID {
	id, _ := p2p.PeerIDFromPublicKey(n.ID())
	return id
}

// NetworkID returns the network the node is part of (zero for an offline node).
func (n *Node) NetworkID() operation.NetworkID {
	if n.net == nil {
		return operation.NetworkID{}
	}
	return n.cfg.network.NetworkID
}

// Addrs returns the node's full multiaddrs (with /p2p/<peer id>) for others to bootstrap
// from.
func (n *Node) Addrs() []ma.Multiaddr {
	if n.net == nil {
		return nil
	}
	return n.net.host.Addrs()
}

// PeerInfo describes a connected peer.
type PeerInfo struct {
	ID peer.ID
	// Direction of the oldest open connection: "inbound", "outbound" or "unknown".
	Direction string
	// Relayed is true if every connection to the peer goes through a relay.
	Relayed bool
	// Limited is true if the relay limits the connection (it then carries no gossip).
	Limited bool
	// InNetwork is true once the peer showed it speaks our network's protocols.
	InNetwork bool
	Addrs     []ma.Multiaddr
}

// Peers lists the connected peers.
func (n *Node) Peers() []PeerInfo {
	if n.net == nil {
		return nil
	}
	var out []PeerInfo
	for _, p := range n.net.host.Peers() {
		out = append(out, PeerInfo{ID: p.ID, Direction: strings.ToLower(p.Direction.String()), Relayed: p.Relayed,
			Limited: p.Limited, InNetwork: p.InNetwork, Addrs: p.Addrs})
	}
	return out
}

// InsertBootstrap adds a bootstrap peer (a multiaddr ending in /p2p/<peer id>) at runtime;
// discovery starts its walks there.
func (n *Node) InsertBootstrap(ctx context.Context, addr ma.Multiaddr) error {
	if n.net == nil {
		return ErrOffline
	}
	return n.net.host.InsertBootstrap(ctx, addr)
}

// SetBootstrapPeers replaces the bootstrap peers (full multiaddrs with /p2p/) while the
// node runs: new ones are dialed and kept connected, removed ones are no longer redialed.
// It returns how many were added and removed.
func (n *Node) SetBootstrapPeers(addrs []ma.Multiaddr) (added, removed int, err error) {
	if n.net == nil {
		return 0, 0, ErrOffline
	}
	return n.net.host.SetBootstrapPeers(addrs)
}

// SetAnnounceAddrs replaces the addresses the node advertises (nil: its listen addresses),
// for example when a public address becomes known after start. Connected peers learn the
// change within a few seconds.
func (n *Node) SetAnnounceAddrs(addrs []ma.Multiaddr) error {
	if n.net == nil {
		return ErrOffline
	}
	n.net.host.SetAnnounceAddrs(addrs)
	return nil
}

// Events returns node-level networking events emitted after the call (PeerConnected,
// PeerDisconnected, DiscoveryStarted, DiscoveryEnded, DiscoveryFailed, TopicPeer), until
// ctx ends or the node closes. A consumer that does not keep up loses events (they are
// logged).
func (n *Node) Events(ctx context.Context) (<-chan SystemEvent, error) {
	if n.net == nil {
		return nil, ErrOffline
	}
	in := n.net.host.Events(ctx)
	out := make(chan SystemEvent, cap(in))
	go func() {
		defer close(out)
		for ev := range in {
			if se := systemEventOf(ev); se != nil {
				select {
				case out <- se:
				case <-ctx.Done():
				}
			}
		}
	}()
	return out, nil
}

// EphemeralStream is a gossip stream on a topic: messages are signed and timestamped but
// never persisted, and only peers online now receive them.
type EphemeralStream struct{ t *p2p.EphemeralTopic }

// EphemeralMessage is a verified message of an ephemeral stream.
type EphemeralMessage struct {
	Topic  operation.Topic
	Author operation.PublicKey
	// Timestamp is the author's clock in microseconds since the UNIX epoch.
	Timestamp uint64
	Body      []byte
}

// ErrEphemeralClosed is returned by EphemeralStream.Next once the stream closed.
var ErrEphemeralClosed = errors.New("ephemeral stream closed")

// EphemeralStream opens an ephemeral stream on topic.
func (n *Node) EphemeralStream(ctx context.Context, topic operation.Topic) (*EphemeralStream, error) {
	if n.net == nil {
		return nil, ErrOffline
	}
	t, err := n.net.host.Ephemeral(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("ephemeral stream %s: %w", topic, err)
	}
	return &EphemeralStream{t}, nil
}

// Topic returns the stream's topic.
func (e *EphemeralStream) Topic() operation.Topic { return e.t.Topic() }

// Publish signs body and gossips it to the topic's peers.
func (e *EphemeralStream) Publish(ctx context.Context, body []byte) error {
	return e.t.Publish(ctx, body)
}

// Next returns the next message from another node, blocking until there is one, ctx ends
// or the stream closes (ErrEphemeralClosed). A reader that falls far behind loses messages:
// ephemeral delivery is best effort.
func (e *EphemeralStream) Next(ctx context.Context) (EphemeralMessage, error) {
	select {
	case m, ok := <-e.t.Messages():
		if !ok {
			return EphemeralMessage{}, ErrEphemeralClosed
		}
		return EphemeralMessage(m), nil
	case <-ctx.Done():
		return EphemeralMessage{}, ctx.Err()
	}
}

// Close ends the stream.
func (e *EphemeralStream) Close() error { return e.t.Close() }

// --- watches: newly stored operations (live forwarding) and streamed topics (topicLoop) ---

// errLagged closes a storedWatch whose consumer fell behind.
var errLagged = errors.New("stored-operation watcher lagged behind and was dropped")

// storedOp is a newly stored operation, as seen by watchStored.
type storedOp struct {
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
	queue  []storedOp
	err    error // set once the watch ended; Next returns it after the queue drained
	ended  bool
	signal chan struct{} // capacity 1: "queue or state changed"
}

// Next returns the next stored operation, blocking until there is one, ctx ends or the
// watch ends (then it returns Err: errLagged, ErrClosed, or errWatchClosed after Close).
func (w *storedWatch) Next(ctx context.Context) (storedOp, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 && w.err == nil {
			so := w.queue[0]
			w.queue[0] = storedOp{}
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
			return storedOp{}, err
		}
		w.mu.Unlock()
		select {
		case <-w.signal:
		case <-ctx.Done():
			return storedOp{}, ctx.Err()
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
func (w *storedWatch) push(so storedOp) bool {
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
		if !w.push(storedOp{Op: op, Source: src}) {
			w.closeLocked(errLagged)
		}
	}
}

// emitTopicEvent queues a sync status event for the topic's subscription; it never blocks
// (see Subscription.notify). It returns false if the topic has no open subscription, and
// firstDrop when the app stopped reading long enough for the oldest queued events to go.
func (n *Node) emitTopicEvent(topic operation.Topic, ev Event) (queued, firstDrop bool) {
	s := n.subscription(topic)
	if s == nil {
		return false, false
	}
	return s.notify(ev)
}

// topicChange is a topic starting (Added) or stopping to be streamed.
type topicChange struct {
	Topic operation.Topic
	Added bool
}

// topicWatch queues topic changes without bound (they are rare) so notifying never blocks.
type topicWatch struct {
	n      *Node
	mu     sync.Mutex
	queue  []topicChange
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
		w.queue = append(w.queue, topicChange{Topic: t, Added: true})
	}
	if len(w.queue) > 0 {
		w.signal <- struct{}{}
	}
	n.topicWs[w] = struct{}{}
	return w, nil
}

// Next returns the next change, blocking until there is one, ctx ends or the watch closes.
func (w *topicWatch) Next(ctx context.Context) (topicChange, error) {
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
			return topicChange{}, err
		}
		select {
		case <-w.signal:
		case <-ctx.Done():
			return topicChange{}, ctx.Err()
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

func (w *topicWatch) push(c topicChange) {
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
		w.push(topicChange{Topic: topic, Added: added})
	}
}
