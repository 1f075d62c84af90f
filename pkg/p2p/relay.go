package p2p

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
)

// CircuitAddr builds <relayAddr>/p2p/<relay>/p2p-circuit/p2p/<target>, the address under
// which target is reachable through its reservation on relay. relayAddr may already end
// in /p2p/<relay>.
func CircuitAddr(relayAddr ma.Multiaddr, relayID, target peer.ID) (ma.Multiaddr, error) {
	transport, id := peer.SplitAddr(relayAddr)
	if id != "" && id != relayID {
		return nil, fmt.Errorf("circuit address: %s does not belong to relay %s", relayAddr, relayID)
	}
	if transport == nil {
		return nil, fmt.Errorf("circuit address: relay address %s has no transport part", relayAddr)
	}
	suffix, err := ma.NewMultiaddr("/p2p/" + relayID.String() + "/p2p-circuit/p2p/" + target.String())
	if err != nil {
		return nil, fmt.Errorf("circuit address: %w", err)
	}
	return transport.Encapsulate(suffix), nil
}

// relayResources sizes the relay for a fleet of edge peers. Circuits carry sync and gossip
// for their whole lifetime, hence the larger buffer; per-IP limits are raised on public
// nodes because many edge peers share carrier-grade NATs and Services SNAT.
func relayResources(cfg Config) relay.Resources {
	rc := relay.DefaultResources()
	rc.Limit = nil
	rc.MaxReservations = cfg.RelayMaxReservations
	rc.MaxCircuits = 64
	rc.BufferSize = 16 << 10
	if cfg.Public {
		rc.MaxReservationsPerIP = 128
		rc.MaxReservationsPerASN = 512
	}
	return rc
}

// relayACL lets only peers of our network reserve slots or open circuits: everybody else
// would be using our bandwidth for a network we do not serve.
type relayACL struct{ p *Host }

func (a *relayACL) AllowReserve(id peer.ID, _ ma.Multiaddr) bool {
	ok := a.p.identified(a.p.ctx, id)
	if !ok {
		a.p.log.Debug("relay: refusing reservation from peer of another network", "peer", id)
	}
	return ok
}

func (a *relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dst peer.ID) bool {
	// dst holds a reservation, so it passed AllowReserve.
	ok := a.p.identified(a.p.ctx, src) && a.p.identified(a.p.ctx, dst)
	if !ok {
		a.p.log.Debug("relay: refusing circuit", "src", src, "dst", dst)
	}
	return ok
}

// newResourceManager scales libp2p's default limits to the machine and, for public
// nodes, raises the per-IP connection and connection-rate limits (defaults: 8
// concurrent connections and 0.2 new connections/s per IPv4 address) and lets the whole
// node hold at least as many connections as its connection manager keeps (connHigh):
// the scaled default admits 64 inbound connections plus 64 per GiB of an eighth of the
// machine's memory (~250 on a 16 GiB machine), so an always-on node configured for 500
// edges would refuse half of them while its connection manager allows them.
func newResourceManager(public bool, connHigh int, topicProto protocol.ID) (network.ResourceManager, error) {
	scaled := resourceLimits(public, connHigh, topicProto)
	var opts []rcmgr.Option
	if public {
		opts = append(opts,
			rcmgr.WithLimitPerSubnet(
				[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: 256}},
				[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: 256}, {PrefixLength: 48, ConnCount: 1024}},
			),
			rcmgr.WithConnRateLimiters(&rate.Limiter{
				NetworkPrefixLimits: []rate.PrefixLimit{
					{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
					{Prefix: netip.MustParsePrefix("::1/128")},
				},
				SubnetRateLimiter: rate.SubnetLimiter{
					IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: rate.Limit{RPS: 5, Burst: 256}}},
					IPv6SubnetLimits: []rate.SubnetLimit{
						{PrefixLength: 56, Limit: rate.Limit{RPS: 5, Burst: 256}},
						{PrefixLength: 48, Limit: rate.Limit{RPS: 20, Burst: 1024}},
					},
					GracePeriod: time.Minute,
				},
			}),
		)
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(scaled), opts...)
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}

// MaxTopicStreamsPerPeer is how many streams of the per-topic protocol (Config.
// TopicStreamsProtocol, log sync: one live stream per topic shared with a peer) libp2p's
// resource manager admits per peer and direction: a node can follow up to this many topics
// of one peer. libp2p's default (64 inbound streams per protocol and peer, plus 4 per GiB)
// silently stalled every topic beyond the 64th.
const MaxTopicStreamsPerPeer = 16384

// yamuxInitialWindow is what go-yamux reserves from the resource manager per stream.
const yamuxInitialWindow = 256 << 10

// resourceLimits are libp2p's default limits scaled to the machine, with room for
// MaxTopicStreamsPerPeer streams of topicProto per peer; for public nodes the system-wide
// connection and stream limits are raised to what connHigh connections need.
func resourceLimits(public bool, connHigh int, topicProto protocol.ID) rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	scaled := limits.AutoScale()
	partial := scaled.ToPartialLimitConfig()
	sys := &partial.System
	const topicStreams = rcmgr.LimitVal(MaxTopicStreamsPerPeer)
	if topicProto != "" {
		// Per (peer, protocol): one stream per topic and direction, with room for the
		// replaced ones still closing (the sync manager caps those per peer).
		pp := partial.ProtocolPeerDefault
		raiseLimit(&pp.StreamsInbound, topicStreams)
		raiseLimit(&pp.StreamsOutbound, topicStreams)
		raiseLimit(&pp.Streams, 2*topicStreams)
		if partial.ProtocolPeer == nil {
			partial.ProtocolPeer = map[protocol.ID]rcmgr.ResourceLimits{}
		}
		partial.ProtocolPeer[topicProto] = pp
		// The protocol across all peers is bounded by the system limits (and the sync
		// manager's MaxInbound), not by libp2p's default of 512 inbound streams + 256/GiB.
		if partial.Protocol == nil {
			partial.Protocol = map[protocol.ID]rcmgr.ResourceLimits{}
		}
		pr := partial.ProtocolDefault
		pr.StreamsInbound, pr.StreamsOutbound, pr.Streams = rcmgr.Unlimited, rcmgr.Unlimited, rcmgr.Unlimited
		pr.Memory = rcmgr.Unlimited64
		partial.Protocol[topicProto] = pr
		// A peer's streams over all protocols: the topic streams plus the default room.
		peerDef := &partial.PeerDefault
		raiseLimit(&peerDef.StreamsInbound, topicStreams+256)
		raiseLimit(&peerDef.StreamsOutbound, topicStreams+512)
		raiseLimit(&peerDef.Streams, 2*topicStreams+512)
		raiseLimit(&sys.StreamsInbound, 2*topicStreams)
		raiseLimit(&sys.StreamsOutbound, 2*topicStreams)
		raiseLimit(&sys.Streams, 4*topicStreams)
		// A stream is "transient" until its protocol is negotiated, and libp2p admits only
		// a few hundred of those at once: a node starting sessions for thousands of topics
		// saw most of them fail to open (each then waited out a retry backoff).
		tr := &partial.Transient
		raiseLimit(&tr.StreamsInbound, topicStreams)
		raiseLimit(&tr.StreamsOutbound, topicStreams)
		raiseLimit(&tr.Streams, 2*topicStreams)
		// yamux reserves its initial receive window (256 KiB) from the peer's and the
		// system's memory budget for every stream, whether or not data ever flows, and a
		// failed reservation closes the whole connection. With libp2p's scaled default
		// (64 MiB + 128 MiB per GiB of an eighth of the machine's memory, per peer) a peer
		// could carry fewer than 2,000 idle topic streams before the connection died. The
		// budget follows the stream limit instead: the memory actually used by an idle
		// session is a few KiB (docs/performance.md, "many topics").
		topicWindows := rcmgr.LimitVal64(MaxTopicStreamsPerPeer) * yamuxInitialWindow
		raiseLimit(&peerDef.Memory, 2*topicWindows)
		raiseLimit(&sys.Memory, 4*topicWindows)
	}
	if !public {
		return partial.Build(scaled)
	}
	// Room for the kept connections plus the churn above them (new peers arrive before the
	// connection manager trims), with 16 inbound streams per connection as libp2p scales.
	conns := rcmgr.LimitVal(connHigh + connHigh/2)
	raiseLimit(&sys.ConnsInbound, conns)
	raiseLimit(&sys.Conns, conns+conns/2)
	raiseLimit(&sys.StreamsInbound, 16*conns)
	raiseLimit(&sys.Streams, 32*conns)
	return partial.Build(scaled)
}

// raiseLimit raises a limit to at least to, leaving negative values ("unlimited", "block
// all") as they are.
func raiseLimit[T rcmgr.LimitVal | rcmgr.LimitVal64](v *T, to T) {
	if *v >= 0 && *v < to {
		*v = to
	}
}

// reservation is an explicit relay slot we keep refreshed.
type reservation struct {
	relay   peer.AddrInfo
	addrs   []ma.Multiaddr // our circuit addresses through this relay
	expires time.Time
}

// Reserve reserves a slot on a relay (a node of our network running the relay service)
// once and advertises the resulting circuit addresses until the reservation expires. Use
// keepReservation (RelayReservations) for a refreshed slot.
func (p *Host) Reserve(ctx context.Context, relayInfo peer.AddrInfo) (*client.Reservation, error) {
	if err := p.h.Connect(ctx, relayInfo); err != nil {
		return nil, fmt.Errorf("reserve on %s: %w", relayInfo.ID, err)
	}
	// Make sure the relay identified us (its ACL checks our protocols) and we it.
	if !p.identified(ctx, relayInfo.ID) {
		return nil, fmt.Errorf("reserve on %s: %w", relayInfo.ID, errors.New("relay is not a peer of this network"))
	}
	rsv, err := client.Reserve(ctx, p.h, relayInfo)
	if err != nil {
		return nil, fmt.Errorf("reserve on %s: %w", relayInfo.ID, err)
	}
	relayAddrs := relayInfo.Addrs
	if len(relayAddrs) == 0 {
		relayAddrs = p.h.Peerstore().Addrs(relayInfo.ID)
	}
	var circuits []ma.Multiaddr
	for _, a := range relayAddrs {
		if isRelayed(a) {
			continue
		}
		c, err := CircuitAddr(a, relayInfo.ID, p.h.ID())
		if err != nil {
			continue
		}
		transport, _ := peer.SplitAddr(c) // addrs factory output must not end in /p2p/<self>
		circuits = append(circuits, transport)
	}
	p.h.ConnManager().Protect(relayInfo.ID, tagRelay)
	p.resMu.Lock()
	p.reservations[relayInfo.ID] = &reservation{relay: relayInfo, addrs: circuits, expires: rsv.Expiration}
	p.resMu.Unlock()
	p.log.Debug("relay reservation", "relay", relayInfo.ID, "expires", rsv.Expiration, "addrs", circuits)
	return rsv, nil
}

func (p *Host) reservationAddrs() []ma.Multiaddr {
	p.resMu.Lock()
	defer p.resMu.Unlock()
	now := time.Now()
	var out []ma.Multiaddr
	for id, r := range p.reservations {
		if now.After(r.expires) {
			delete(p.reservations, id)
			continue
		}
		out = append(out, r.addrs...)
	}
	return out
}

// keepReservation refreshes a reservation on relay before it expires, retrying with
// backoff while the relay is unreachable, until the relay is no longer a bootstrap peer.
// At most one such goroutine runs per relay: a bootstrap peer removed and added again
// while its goroutine still waits keeps that goroutine.
func (p *Host) keepReservation(relayInfo peer.AddrInfo) {
	p.resMu.Lock()
	defer p.resMu.Unlock()
	if p.reserving[relayInfo.ID] {
		return
	}
	p.reserving[relayInfo.ID] = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		backoff := time.Second
		for p.stillReserving(relayInfo.ID) {
			ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
			rsv, err := p.Reserve(ctx, relayInfo)
			cancel()
			var wait time.Duration
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				p.log.Debug("relay reservation failed", "relay", relayInfo.ID, "retry_in", backoff, "err", err)
				wait = jitter(backoff)
				backoff = min(2*backoff, 5*time.Minute)
			} else {
				backoff = time.Second
				// refresh at ~3/4 of the lifetime
				wait = max(time.Until(rsv.Expiration)*3/4, 10*time.Second)
			}
			if !p.waitReservation(relayInfo.ID, wait) {
				return
			}
		}
	}()
}

// stillReserving reports whether relay is still a bootstrap peer. If not, it drops the
// relay's reservation and its goroutine mark in one step with the check, so a concurrent
// keepReservation either sees the mark gone (and starts anew) or its peer kept (and the
// goroutine goes on).
func (p *Host) stillReserving(relay peer.ID) bool {
	p.resMu.Lock()
	defer p.resMu.Unlock()
	if p.boots.has(relay) {
		return true
	}
	delete(p.reserving, relay)
	delete(p.reservations, relay)
	return false
}

// waitReservation sleeps up to d, returning early when the connection to the relay is
// lost (the relay forgets reservations of disconnected peers, so we must re-reserve and
// stop advertising the dead circuit address). It returns false when the host closes.
func (p *Host) waitReservation(relayID peer.ID, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	check := time.NewTicker(5 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-check.C:
			if p.h.Network().Connectedness(relayID) != network.Connected {
				p.resMu.Lock()
				delete(p.reservations, relayID)
				p.resMu.Unlock()
				return true
			}
		}
	}
}
