package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/metrics"
	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// storeStatsInterval is how often the store size gauge is refreshed.
const storeStatsInterval = 30 * time.Second

// openNode builds the node from the configuration: store, pipeline and the network (libp2p
// host with discovery, relay and gossip, plus log sync). It is a variable so tests can run
// the daemon against an in-memory node.
var openNode = func(ctx context.Context, p nodeParams) (daemonNode, error) {
	ack := node.Automatic
	if p.cfg.AckPolicy == config.AckExplicit {
		ack = node.Explicit
	}
	m := p.metrics
	boots, err := bootstrapAddrs(p.cfg)
	if err != nil {
		return nil, err
	}
	netCfg := node.NetworkConfig{
		NetworkID:      p.cfg.NetworkID,
		ListenAddrs:    p.cfg.Listen,
		AnnounceAddrs:  p.cfg.Announce,
		BootstrapPeers: boots,
		Public:         p.cfg.Public,
		RelayService:   p.cfg.RelayService,
		MDNS:           p.cfg.MDNS,
		// Edge nodes keep a slot on their bootstrap relays (also those added by a config
		// reload), so peers that cannot dial them directly still can through the relay.
		RelayReservations: !p.cfg.Public,
		Logger:            p.log,
		OnSyncEvent:       func(ev logsync.Event) { observeSync(m, ev) },
	}
	netCfg.ConnLow, netCfg.ConnHigh = p.cfg.ConnLimits()
	if m != nil && m.Registry != nil {
		netCfg.PrometheusRegisterer = m.Registry
	}
	counters := newTopicCounters()
	health := newStoreHealth(p.cfg.DataDir, m)
	n, err := node.New(ctx,
		node.WithPrivateKey(p.key),
		node.WithDatabase(p.cfg.DatabasePath()),
		node.WithAckPolicy(ack),
		node.WithEventBuffer(liveBuffer),
		node.WithObserver(func(o node.Observation) {
			counters.observe(o)
			observe(m, o)
		}),
		node.WithNetwork(netCfg),
	)
	if err != nil {
		return nil, err
	}
	// One scan at start; afterwards the counters follow the pipeline.
	stats, err := n.Store().TopicStats(ctx)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("count stored operations: %w", err)
	}
	counters.load(stats)
	id, err := identityOf(p.key)
	if err != nil {
		n.Close()
		return nil, err
	}
	m.SetRefusalSource(n.PolicyRefusals)
	ln := &libNode{n: n, key: p.key, peerID: id.PeerID, networkID: p.cfg.NetworkID, log: p.log, metrics: m,
		counters: counters, health: health, stop: make(chan struct{})}
	p.log.Info("node started", "peer_id", id.PeerID, "network_id", p.cfg.NetworkIDName, "addrs", ln.Addrs())
	if n.NetworkID() != (operation.NetworkID{}) {
		for _, a := range unusedListenAddrs(p.cfg.Listen, n.ListenAddrs()) {
			p.log.Warn("listen address is not in use (the node could not listen on it)", "addr", a.String())
		}
	}
	ln.wg.Add(1)
	go ln.pollStoreSize()
	return ln, nil
}

// bootstrapAddrs flattens the configured bootstrap peers into full multiaddrs.
func bootstrapAddrs(cfg *config.Config) ([]ma.Multiaddr, error) {
	var boots []ma.Multiaddr
	for i := range cfg.Bootstrap {
		addrs, err := peer.AddrInfoToP2pAddrs(&cfg.Bootstrap[i])
		if err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", cfg.Bootstrap[i].ID, err)
		}
		boots = append(boots, addrs...)
	}
	return boots, nil
}

// observeSync feeds sync session events into the metrics.
func observeSync(m *metrics.Metrics, ev logsync.Event) {
	switch e := ev.(type) {
	case logsync.SyncStarted:
		m.SyncStarted()
	case logsync.SyncEnded:
		m.SyncEnded(e.Err)
		m.SyncBytes(metrics.Sent, int(e.SentBytes))
		m.SyncBytes(metrics.Received, int(e.ReceivedBytes))
	}
}

// observe feeds processing results into the metrics.
func observe(m *metrics.Metrics, o node.Observation) {
	switch o.Outcome {
	case node.OutcomeStored:
		src := metrics.SourceSync
		switch o.Source.(type) {
		case nil, node.LocalStore:
			src = metrics.SourceLocal
		case node.ExternalStream:
			src = metrics.SourceImport
		}
		m.OperationIngested(src)
	case node.OutcomeFailed:
		// Policy refusals are not invalid operations; they are counted by reason in
		// panda_operations_refused_total (metrics.SetRefusalSource).
		if !errors.Is(o.Err, policy.ErrRefused) {
			m.OperationRejected(o.Err)
		}
	}
	m.ObservePipeline(o.Latency)
}

// libNode adapts *node.Node to daemonNode.
type libNode struct {
	n         *node.Node
	key       operation.PrivateKey
	peerID    string
	networkID operation.NetworkID
	log       *slog.Logger
	metrics   *metrics.Metrics
	counters  *topicCounters
	health    *storeHealth

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func (l *libNode) PeerID() string                 { return l.peerID }
func (l *libNode) PublicKey() operation.PublicKey { return l.key.PublicKey() }
func (l *libNode) NetworkID() operation.NetworkID { return l.networkID }

func (l *libNode) Addrs() []string {
	out := []string{}
	for _, a := range l.n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

func (l *libNode) Peers() []admin.PeerStatus {
	out := []admin.PeerStatus{}
	for _, p := range l.n.Peers() {
		if !p.InNetwork {
			continue
		}
		addrs := []string{}
		for _, a := range p.Addrs {
			addrs = append(addrs, a.String())
		}
		out = append(out, admin.PeerStatus{PeerID: p.ID.String(), Addresses: addrs, Direction: p.Direction, Relayed: p.Relayed})
	}
	return out
}

func (l *libNode) Reconfigure(cfg *config.Config) error {
	boots, err := bootstrapAddrs(cfg)
	if err != nil {
		return err
	}
	added, removed, err := l.n.SetBootstrapPeers(boots)
	if err != nil {
		return fmt.Errorf("set bootstrap peers: %w", err)
	}
	if err := l.n.SetAnnounceAddrs(cfg.Announce); err != nil {
		return fmt.Errorf("set announce addresses: %w", err)
	}
	l.log.Info("network settings reloaded", "bootstrap_added", added, "bootstrap_removed", removed,
		"announce", cfg.Announce)
	return nil
}

// Ready reports whether the node can serve: the store answers and can write, and the host
// listens.
func (l *libNode) Ready(ctx context.Context) error {
	if _, err := l.n.Store().Size(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := l.health.check(); err != nil {
		return err
	}
	if l.n.NetworkID() != (operation.NetworkID{}) && len(l.n.ListenAddrs()) == 0 {
		return errors.New("p2p host is not listening")
	}
	return nil
}

// Alive is the node's own watchdog (node.Alive): the store writer answers or makes
// progress within ctx.
func (l *libNode) Alive(ctx context.Context) error { return l.n.Alive(ctx) }

func (l *libNode) pollStoreSize() {
	defer l.wg.Done()
	t := time.NewTicker(storeStatsInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if size, err := l.n.Store().Size(ctx); err == nil {
			l.metrics.SetStoreSize(size)
		}
		l.metrics.SetPeers(len(l.Peers()))
		_ = l.health.check() // keeps panda_store_writable current without readiness probes
		cancel()
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

func (l *libNode) Close() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		err = l.n.Close()
	})
	return err
}

func (l *libNode) TopicStatus(_ context.Context, topic operation.Topic) (admin.TopicStatus, error) {
	st := l.counters.status(topic)
	if rep, ok := l.n.TopicPolicy(topic); ok {
		st.Policy = policyStatus(rep)
	}
	return st, nil
}

func (l *libNode) SetTopicPolicy(ctx context.Context, topic operation.Topic, p policy.Policy) error {
	return l.n.SetTopicPolicy(ctx, topic, p)
}

// policyStatus turns a node's policy report into the admin API's shape.
func policyStatus(rep policy.Report) *admin.TopicPolicy {
	p := rep.Policy
	out := &admin.TopicPolicy{
		PerAuthor:   admin.Quota{MaxOps: p.PerAuthor.MaxOps, MaxBytes: p.PerAuthor.MaxBytes},
		PerTopic:    admin.Quota{MaxOps: p.PerTopic.MaxOps, MaxBytes: p.PerTopic.MaxBytes},
		Retention:   admin.Retention{MaxAgeSeconds: int64(p.Retention.MaxAge / time.Second), MaxBytes: p.Retention.MaxBytes},
		Usage:       admin.Usage{Ops: rep.Usage.Ops, Bytes: rep.Usage.Bytes},
		Authors:     make([]admin.AuthorUsage, 0, len(rep.Authors)),
		Refused:     make(map[string]uint64, len(policy.Reasons)),
		RetiredLogs: rep.Retired,
	}
	for _, w := range p.Writers {
		out.Writers = append(out.Writers, w.String())
	}
	for a, u := range rep.Authors {
		out.Authors = append(out.Authors, admin.AuthorUsage{Author: a.String(), Usage: admin.Usage{Ops: u.Ops, Bytes: u.Bytes}})
	}
	sort.Slice(out.Authors, func(i, j int) bool { return out.Authors[i].Author < out.Authors[j].Author })
	for _, r := range policy.Reasons {
		out.Refused[string(r)] = rep.Refused[r]
	}
	return out
}

func (l *libNode) History(ctx context.Context, topic operation.Topic, from admin.From, fn func(node.ProcessedOperation) error) error {
	var after node.Heights
	replay := from == admin.FromFrontier
	if replay {
		cursor, err := l.n.Store().Cursor(ctx, topic)
		if err != nil {
			return fmt.Errorf("ack cursor of %s: %w", topic, err)
		}
		after = cursor
	}
	for op, err := range l.n.History(ctx, topic, after) {
		if err != nil {
			return err
		}
		if replay {
			// What is not acknowledged is re-delivered, as the node's own replay does.
			op.Source, op.Replayed = node.LocalStore{}, true
		}
		if err := fn(op); err != nil {
			return err
		}
	}
	return nil
}

func (l *libNode) Open(ctx context.Context, topic operation.Topic) (topicStream, error) {
	pub, sub, err := l.n.Stream(ctx, topic)
	if err != nil {
		return nil, err
	}
	return &libStream{pub: pub, sub: sub}, nil
}

// libStream is a node stream; its events go to the daemon as they are.
type libStream struct {
	pub *node.Publisher
	sub *node.Subscription
}

func (s *libStream) Publish(ctx context.Context, msg []byte) (admin.PublishResult, error) {
	pending, err := s.pub.Publish(ctx, msg)
	if err != nil {
		if errors.Is(err, node.ErrEmptyMessage) {
			return admin.PublishResult{}, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
		}
		return admin.PublishResult{}, err
	}
	res, err := pending.Wait(ctx)
	if err != nil {
		return admin.PublishResult{}, err
	}
	return admin.PublishResult{Hash: res.Hash.String(), Seq: res.SeqNum}, nil
}

func (s *libStream) Events() <-chan node.Event { return s.sub.Events() }

func (s *libStream) Ack(ctx context.Context, hash string) error {
	h, err := operation.ParseHash(hash)
	if err != nil {
		return err
	}
	return s.sub.Ack(ctx, h)
}

// Close closes the subscription (safe to call more than once); its senders give up rather
// than wait for a reader, so nobody needs to drain Events.
func (s *libStream) Close() error { return s.sub.Close() }

// unusedListenAddrs returns the configured listen addresses that none of the host's actual
// listen addresses serves (libp2p drops an address it cannot listen on as long as another
// one works). An unspecified IP (0.0.0.0, ::) and port 0 match any value.
func unusedListenAddrs(configured, actual []ma.Multiaddr) []ma.Multiaddr {
	var unused []ma.Multiaddr
	for _, c := range configured {
		if !slices.ContainsFunc(actual, func(a ma.Multiaddr) bool { return listenMatches(c, a) }) {
			unused = append(unused, c)
		}
	}
	return unused
}

func listenMatches(configured, actual ma.Multiaddr) bool {
	if len(configured) != len(actual) {
		return false
	}
	for i := range configured {
		c, a := configured[i], actual[i]
		if c.Code() != a.Code() {
			return false
		}
		if c.Value() == a.Value() {
			continue
		}
		switch c.Code() {
		case ma.P_IP4, ma.P_IP6:
			if ip := net.ParseIP(c.Value()); ip == nil || !ip.IsUnspecified() {
				return false
			}
		case ma.P_TCP, ma.P_UDP:
			if c.Value() != "0" {
				return false
			}
		default:
			return false
		}
	}
	return true
}
