package p2p

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Gossip protocol ids are namespaced like every other protocol, so GossipSub meshes of
// different networks never touch even if a peer is connected to both.
func (p *Host) gossipProtocols() (v12, v11 protocol.ID) {
	return p.ProtocolID("meshsub/1.2.0"), p.ProtocolID("meshsub/1.1.0")
}

// gossipTopicRE matches what GossipTopicName produces; remote subscriptions to anything
// else are ignored (and a peer cannot make us track unbounded garbage).
var gossipTopicRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

const maxRemoteSubscriptionsPerRPC = 1024

// Peer scoring: an invalid (rejected) message costs a lot; two of them graylist the
// sender for a while.
var (
	gossipThresholds = &pubsub.PeerScoreThresholds{
		GossipThreshold:             -100,
		PublishThreshold:            -200,
		GraylistThreshold:           -300,
		AcceptPXThreshold:           1,
		OpportunisticGraftThreshold: 1,
	}
	gossipTopicScore = &pubsub.TopicScoreParams{
		SkipAtomicValidation:           true,
		TopicWeight:                    1,
		TimeInMeshQuantum:              time.Second,
		InvalidMessageDeliveriesWeight: -100,
		InvalidMessageDeliveriesDecay:  0.9,
	}
)

func (p *Host) newPubSub() (*pubsub.PubSub, error) {
	v12, v11 := p.gossipProtocols()
	features := func(f pubsub.GossipSubFeature, proto protocol.ID) bool {
		switch f {
		case pubsub.GossipSubFeatureMesh, pubsub.GossipSubFeaturePX:
			return proto == v12 || proto == v11
		case pubsub.GossipSubFeatureIdontwant:
			return proto == v12
		default:
			return false
		}
	}
	opts := []pubsub.Option{
		pubsub.WithGossipSubProtocols([]protocol.ID{v12, v11}, features),
		// Every payload carries its author's signature already; pubsub signatures would
		// cost a second sign and verify per message (research 2.6: 3x throughput).
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			h := operation.HashOf(m.Data)
			return string(h[:])
		}),
		pubsub.WithSubscriptionFilter(pubsub.WrapLimitSubscriptionFilter(
			pubsub.NewRegexpSubscriptionFilter(gossipTopicRE), maxRemoteSubscriptionsPerRPC)),
		pubsub.WithPeerScore(&pubsub.PeerScoreParams{
			Topics:           make(map[string]*pubsub.TopicScoreParams),
			AppSpecificScore: func(peer.ID) float64 { return 0 },
			// Several nodes behind one Service or NAT share an IP: no colocation penalty.
			IPColocationFactorWeight: 0,
			BehaviourPenaltyWeight:   -10,
			BehaviourPenaltyDecay:    0.9,
			DecayInterval:            time.Second,
			DecayToZero:              0.01,
			RetainScore:              10 * time.Minute,
		}, gossipThresholds),
		pubsub.WithPeerExchange(p.cfg.Public),
		pubsub.WithMaxMessageSize(1 << 20),
	}
	ps, err := pubsub.NewGossipSub(p.ctx, p.h, opts...)
	if err != nil {
		return nil, fmt.Errorf("start gossipsub: %w", err)
	}
	return ps, nil
}

// PubSub exposes the GossipSub router for other announcement kinds (e.g. "new operation"
// announcements); use GossipTopicName for topic strings and register a validator.
func (p *Host) PubSub() *pubsub.PubSub { return p.ps }

// GossipTopicName is the GossipSub topic for a p2panda topic and a message kind:
// hex(BLAKE3(network id ‖ topic ‖ kind)). Topic ids never appear in clear and every
// network has its own topics.
func (p *Host) GossipTopicName(topic operation.Topic, kind string) string {
	buf := make([]byte, 0, 64+len(kind))
	buf = append(buf, p.cfg.NetworkID[:]...)
	buf = append(buf, topic[:]...)
	buf = append(buf, kind...)
	h := operation.HashOf(buf)
	return hex.EncodeToString(h[:])
}

const ephemeralKind = "ephemeral"

// EphemeralMessage is a verified message of an ephemeral topic.
type EphemeralMessage struct {
	Topic  operation.Topic
	Author operation.PublicKey
	// Timestamp is the author's clock in microseconds since the UNIX epoch.
	Timestamp uint64
	Body      []byte
}

// EphemeralTopic is a handle on an ephemeral (gossip only, never stored) topic.
type EphemeralTopic struct {
	p      *Host
	topic  operation.Topic
	shared *ephemeralShared
	sub    *pubsub.Subscription
	out    chan EphemeralMessage
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// ephemeralShared is the per-host GossipSub topic, shared by all handles on the same topic
// (pubsub allows one Join per topic).
type ephemeralShared struct {
	name    string
	topic   *pubsub.Topic
	refs    int
	handles map[*EphemeralTopic]struct{}
}

func (s *ephemeralShared) closeAll() {
	for h := range s.handles {
		h.closeLocked()
	}
}

// Ephemeral joins an ephemeral topic. Messages are signed with the node key and verified
// on receipt; invalid ones are rejected (which lowers the forwarder's peer score). The
// topic is also added to the discovery interests while the handle is open.
func (p *Host) Ephemeral(ctx context.Context, topic operation.Topic) (*EphemeralTopic, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.ctx.Err() != nil {
		return nil, ErrClosed
	}
	name := p.GossipTopicName(topic, ephemeralKind)
	p.ephMu.Lock()
	defer p.ephMu.Unlock()
	shared, ok := p.ephTopics[name]
	if !ok {
		if err := p.ps.RegisterTopicValidator(name, ephemeralValidator(topic)); err != nil {
			return nil, fmt.Errorf("ephemeral topic %s: register validator: %w", topic, err)
		}
		t, err := p.ps.Join(name)
		if err != nil {
			_ = p.ps.UnregisterTopicValidator(name)
			return nil, fmt.Errorf("ephemeral topic %s: join: %w", topic, err)
		}
		if err := t.SetScoreParams(gossipTopicScore); err != nil {
			p.log.Warn("ephemeral topic: score params rejected", "err", err)
		}
		shared = &ephemeralShared{name: name, topic: t, handles: make(map[*EphemeralTopic]struct{})}
		p.ephTopics[name] = shared
	}
	sub, err := shared.topic.Subscribe(pubsub.WithBufferSize(256))
	if err != nil {
		if shared.refs == 0 {
			_ = shared.topic.Close()
			_ = p.ps.UnregisterTopicValidator(name)
			delete(p.ephTopics, name)
		}
		return nil, fmt.Errorf("ephemeral topic %s: subscribe: %w", topic, err)
	}
	shared.refs++
	sctx, cancel := context.WithCancel(p.ctx)
	e := &EphemeralTopic{p: p, topic: topic, shared: shared, sub: sub,
		out: make(chan EphemeralMessage, 256), cancel: cancel, done: make(chan struct{})}
	shared.handles[e] = struct{}{}
	p.topics.addEphemeral(topic)
	p.wg.Add(1)
	go e.read(sctx)
	return e, nil
}

// ErrClosed is returned by operations on a closed host or topic.
var ErrClosed = errors.New("p2p: closed")

// Topic returns the p2panda topic.
func (e *EphemeralTopic) Topic() operation.Topic { return e.topic }

// Messages delivers verified messages from other nodes (never our own). It is closed when
// the handle or the host closes. A consumer that falls far behind loses messages, as
// ephemeral delivery is best effort.
func (e *EphemeralTopic) Messages() <-chan EphemeralMessage { return e.out }

// Publish signs body and gossips it to the topic's peers.
func (e *EphemeralTopic) Publish(ctx context.Context, body []byte) error {
	select {
	case <-e.done:
		return ErrClosed
	default:
	}
	ts, lamport := e.p.clock.next()
	data, err := encodeEphemeral(e.p.priv, ts, lamport, body)
	if err != nil {
		return fmt.Errorf("ephemeral publish on %s: %w", e.topic, err)
	}
	if err := e.shared.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("ephemeral publish on %s: %w", e.topic, err)
	}
	return nil
}

// Close leaves the topic (when it was the last handle on it) and closes Messages.
func (e *EphemeralTopic) Close() error {
	e.p.ephMu.Lock()
	defer e.p.ephMu.Unlock()
	e.closeLocked()
	return nil
}

func (e *EphemeralTopic) closeLocked() {
	e.once.Do(func() {
		close(e.done)
		e.cancel()
		e.sub.Cancel()
		delete(e.shared.handles, e)
		e.shared.refs--
		e.p.topics.removeEphemeral(e.topic)
		if e.shared.refs == 0 {
			_ = e.shared.topic.Close()
			_ = e.p.ps.UnregisterTopicValidator(e.shared.name)
			delete(e.p.ephTopics, e.shared.name)
		}
	})
}

func (e *EphemeralTopic) read(ctx context.Context) {
	defer e.p.wg.Done()
	defer close(e.out)
	self := e.p.h.ID()
	for {
		m, err := e.sub.Next(ctx)
		if err != nil {
			return
		}
		if m.ReceivedFrom == self {
			continue
		}
		env, ok := m.ValidatorData.(*ephemeralEnvelope)
		if !ok {
			continue
		}
		msg := EphemeralMessage{Topic: e.topic, Author: env.Author, Timestamp: env.Timestamp, Body: env.Body}
		select {
		case e.out <- msg:
		case <-ctx.Done():
			return
		}
	}
}

func ephemeralValidator(topic operation.Topic) pubsub.ValidatorEx {
	return func(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		env, err := decodeEphemeral(m.Data)
		if err != nil {
			return pubsub.ValidationReject
		}
		m.ValidatorData = env
		return pubsub.ValidationAccept
	}
}

// hybridClock yields strictly increasing (timestamp µs, lamport) pairs, the nonce that
// makes two identical bodies distinct messages (and message ids).
type hybridClock struct {
	mu      sync.Mutex
	ts      uint64
	lamport uint64
}

func (c *hybridClock) next() (uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := uint64(max(time.Now().UnixMicro(), 0))
	if now <= c.ts {
		if c.lamport == math.MaxUint64 {
			c.ts++
			c.lamport = 0
		} else {
			c.lamport++
		}
	} else {
		c.ts, c.lamport = now, 0
	}
	return c.ts, c.lamport
}
