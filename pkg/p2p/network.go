package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/operation"
)

// foreignBlockTime is how long a peer of another network is refused after we found out.
// Short, because a peer may switch networks (or identified before registering protocols).
const foreignBlockTime = 5 * time.Minute

// maxForeign bounds the memory spent on remembering foreign peers.
const maxForeign = 4096

// networkGate keeps peers of other networks out. Protocol ids carry the network tag, so
// a foreign peer can never negotiate our protocols; the gate additionally closes its
// connections after identify so it does not occupy connection slots, and refuses it for
// a while afterwards.
type networkGate struct {
	p *Host

	mu       sync.Mutex
	foreign  map[peer.ID]time.Time // refused until
	members  map[peer.ID]bool      // identified as ours
	reported map[peer.ID]bool      // PeerConnected emitted

	sub    event.Subscription
	notify *network.NotifyBundle
	done   chan struct{}
}

func newNetworkGate() *networkGate {
	return &networkGate{
		foreign:  make(map[peer.ID]time.Time),
		members:  make(map[peer.ID]bool),
		reported: make(map[peer.ID]bool),
		done:     make(chan struct{}),
	}
}

func (g *networkGate) attach(p *Host) { g.p = p }

func (g *networkGate) watch() error {
	sub, err := g.p.h.EventBus().Subscribe([]any{
		new(event.EvtPeerIdentificationCompleted),
		new(event.EvtPeerProtocolsUpdated),
	})
	if err != nil {
		return fmt.Errorf("subscribe to identify events: %w", err)
	}
	g.sub = sub
	g.notify = &network.NotifyBundle{DisconnectedF: g.disconnected}
	g.p.h.Network().Notify(g.notify)
	g.p.wg.Add(1)
	go g.loop()
	return nil
}

func (g *networkGate) close() {
	if g.notify != nil && g.p.h != nil {
		g.p.h.Network().StopNotify(g.notify)
	}
}

func (g *networkGate) loop() {
	defer g.p.wg.Done()
	defer g.sub.Close()
	marker := g.p.discoveryProtocol()
	for {
		select {
		case <-g.p.ctx.Done():
			return
		case e, ok := <-g.sub.Out():
			if !ok {
				return
			}
			switch e := e.(type) {
			case event.EvtPeerIdentificationCompleted:
				if slices.Contains(e.Protocols, marker) {
					g.member(e.Peer, e.Conn, e.SignedPeerRecord)
				} else {
					g.reject(e.Peer)
				}
			case event.EvtPeerProtocolsUpdated:
				if slices.Contains(e.Added, marker) {
					g.mu.Lock()
					delete(g.foreign, e.Peer)
					g.mu.Unlock()
				}
			}
		}
	}
}

func (g *networkGate) member(id peer.ID, c network.Conn, rec *record.Envelope) {
	g.mu.Lock()
	g.members[id] = true
	delete(g.foreign, id)
	first := !g.reported[id]
	g.reported[id] = true
	g.mu.Unlock()
	g.p.book.add(id, false)
	// Identify verified the record but no longer stores it; keep it so discovery can pass
	// the peer's signed addresses on.
	if rec != nil {
		if cab, ok := peerstore.GetCertifiedAddrBook(g.p.h.Peerstore()); ok {
			if _, err := cab.ConsumePeerRecord(rec, peerstore.AddressTTL); err != nil {
				g.p.log.Debug("peer record from identify rejected", "peer", id, "err", err)
			}
		}
	}
	if first {
		g.p.events.emit(PeerConnected{Peer: id, Direction: c.Stat().Direction, Relayed: isRelayed(c.RemoteMultiaddr())})
	}
}

func (g *networkGate) reject(id peer.ID) {
	g.mu.Lock()
	if len(g.foreign) >= maxForeign {
		now := time.Now()
		for k, until := range g.foreign {
			if now.After(until) {
				delete(g.foreign, k)
			}
		}
		if len(g.foreign) >= maxForeign { // still full: forget an arbitrary one
			for k := range g.foreign {
				delete(g.foreign, k)
				break
			}
		}
	}
	g.foreign[id] = time.Now().Add(foreignBlockTime)
	delete(g.members, id)
	g.mu.Unlock()
	g.p.log.Debug("closing connection to peer of another network", "peer", id)
	g.p.book.remove(id)
	_ = g.p.h.Network().ClosePeer(id)
}

func (g *networkGate) disconnected(n network.Network, c network.Conn) {
	id := c.RemotePeer()
	if n.Connectedness(id) == network.Connected {
		return
	}
	g.mu.Lock()
	was := g.reported[id]
	delete(g.reported, id)
	delete(g.members, id)
	g.mu.Unlock()
	if was {
		g.p.events.emit(PeerDisconnected{Peer: id})
	}
}

func (g *networkGate) isMember(id peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.members[id]
}

func (g *networkGate) isForeign(id peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.foreign[id]
	if !ok {
		return false
	}
	if time.Now().After(until) {
		delete(g.foreign, id)
		return false
	}
	return true
}

// ConnectionGater implementation: refuse recently identified foreign peers.

func (g *networkGate) InterceptPeerDial(id peer.ID) bool            { return !g.isForeign(id) }
func (g *networkGate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g *networkGate) InterceptAccept(network.ConnMultiaddrs) bool  { return true }
func (g *networkGate) InterceptSecured(_ network.Direction, id peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.isForeign(id)
}
func (g *networkGate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// identified waits (bounded) until identify finished on the connections to id and
// reports whether the peer speaks our network's protocols, so that decisions are not
// made on an empty peerstore entry.
func (p *Host) identified(ctx context.Context, id peer.ID) bool {
	if p.gate.isMember(id) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ids, ok := p.h.(interface{ IDService() identify.IDService }); ok {
		for _, c := range p.h.Network().ConnsToPeer(id) {
			select {
			case <-ids.IDService().IdentifyWait(c):
			case <-ctx.Done():
				return false
			}
		}
	}
	sup, _ := p.h.Peerstore().SupportsProtocols(id, p.discoveryProtocol())
	return len(sup) > 0
}

// mdns

func mdnsServiceName(id operation.NetworkID) string {
	return "_p2panda-" + networkTag(id) + "._udp"
}

type mdnsNotifee struct{ p *Host }

const (
	// lanPeerTTL is how long a peer found by mDNS is kept connected without being seen
	// again: zeroconf reports an entry once per record lifetime (3200 s by default).
	lanPeerTTL    = time.Hour
	lanMinBackoff = time.Second
	lanMaxBackoff = time.Minute
	// lanDialGrace delays the dial of the peer with the higher id. Both peers see each
	// other's mDNS answer at the same moment; if both dialed, TCP (which dials from the
	// listen port) would run a simultaneous open, both sides would start the security
	// handshake as the client and both dials would fail.
	lanDialGrace = 5 * time.Second
)

func (n *mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	p := n.p
	if ai.ID == p.h.ID() || p.ctx.Err() != nil {
		return
	}
	// mDNS addresses are unauthenticated: the dial adds them to the peerstore only
	// briefly, and identify (signed peer record) and the network gate decide the rest.
	var delay time.Duration
	if p.h.ID() > ai.ID {
		delay = lanDialGrace
	}
	p.book.add(ai.ID, false)
	p.lan.keep(ai, delay, lanPeerTTL)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
