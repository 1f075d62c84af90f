package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/operation"
)

// foreignBlockTime is how long a peer of another network is refused after we found out.
// Short, because a peer may switch networks.
const foreignBlockTime = 5 * time.Minute

// defaultIdentifyGrace is how long a peer whose identify listed no pandanet protocol at all
// stays connected before it is taken for a foreign peer. A peer of our network that has
// just started may answer identify before its protocol list is complete (libp2p refreshes
// the list it sends asynchronously after a handler is added) and pushes the complete list
// moments later; a missing marker alone is no proof of another network.
const defaultIdentifyGrace = 10 * time.Second

// maxForeign bounds the memory spent on remembering foreign peers.
const maxForeign = 4096

// networkGate keeps peers of other networks out. Protocol ids carry the network tag, so
// a foreign peer can never negotiate our protocols; the gate additionally closes its
// connections after identify so it does not occupy connection slots, and refuses it for
// a while afterwards.
//
// A peer is foreign only on a positive signal: it lists pandanet protocols of another
// network and not our marker, or it still lists none of ours a grace period after its
// identify. A peer that lists our marker, in its identify or in a later identify push,
// is a member.
type networkGate struct {
	p     *Host
	grace time.Duration

	mu       sync.Mutex
	foreign  map[peer.ID]time.Time   // refused until
	members  map[peer.ID]bool        // identified as ours
	reported map[peer.ID]bool        // PeerConnected emitted
	pending  map[peer.ID]*time.Timer // identified without any pandanet protocol; recheck
	recheck  chan peer.ID            // pending timers fire into the loop

	sub    event.Subscription
	notify *network.NotifyBundle
	done   chan struct{}
}

func newNetworkGate() *networkGate {
	return &networkGate{
		grace:    defaultIdentifyGrace,
		foreign:  make(map[peer.ID]time.Time),
		members:  make(map[peer.ID]bool),
		reported: make(map[peer.ID]bool),
		pending:  make(map[peer.ID]*time.Timer),
		recheck:  make(chan peer.ID),
		done:     make(chan struct{}),
	}
}

func (g *networkGate) attach(p *Host) {
	g.p = p
	if p.cfg.identifyGrace > 0 {
		g.grace = p.cfg.identifyGrace
	}
}

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
	g.mu.Lock()
	for id, t := range g.pending {
		t.Stop()
		delete(g.pending, id)
	}
	g.mu.Unlock()
}

// verdict is what a peer's protocol list says about its network.
type verdict int

const (
	undecided verdict = iota // no pandanet protocol at all (yet)
	ours                     // lists our network's marker
	otherNet                 // lists another network's pandanet protocols and not our marker
)

// judge classifies a protocol list. Protocol ids are /p2panda/<network tag>/<name>.
func (g *networkGate) judge(protos []protocol.ID) verdict {
	marker := g.p.discoveryProtocol()
	if slices.Contains(protos, marker) {
		return ours
	}
	for _, pr := range protos {
		rest, ok := strings.CutPrefix(string(pr), "/p2panda/")
		if !ok {
			continue
		}
		if tag, _, _ := strings.Cut(rest, "/"); tag != g.p.nid {
			return otherNet
		}
	}
	return undecided
}

func (g *networkGate) loop() {
	defer g.p.wg.Done()
	defer g.sub.Close()
	for {
		select {
		case <-g.p.ctx.Done():
			return
		case id := <-g.recheck:
			g.decideLate(id)
		case e, ok := <-g.sub.Out():
			if !ok {
				return
			}
			switch e := e.(type) {
			case event.EvtPeerIdentificationCompleted:
				switch g.judge(e.Protocols) {
				case ours:
					g.member(e.Peer, e.Conn, e.SignedPeerRecord)
				case otherNet:
					if !g.isMember(e.Peer) {
						g.reject(e.Peer)
					}
				case undecided:
					// A push may already have shown the peer is ours (identify answers
					// and pushes race); otherwise wait for one.
					if !g.isMember(e.Peer) {
						g.wait(e.Peer)
					}
				}
			case event.EvtPeerProtocolsUpdated:
				// An identify push: the peer's complete protocol list may only arrive now.
				if g.isMember(e.Peer) {
					continue
				}
				switch g.judge(e.Added) {
				case ours:
					if c := g.oldestConn(e.Peer); c != nil {
						g.member(e.Peer, c, nil)
					}
				case otherNet:
					if g.p.h.Network().Connectedness(e.Peer) == network.Connected {
						g.reject(e.Peer)
					}
				}
			}
		}
	}
}

// wait gives a peer whose identify listed no pandanet protocol the grace period for a push.
func (g *networkGate) wait(id peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.pending[id]; ok {
		return
	}
	g.pending[id] = time.AfterFunc(g.grace, func() {
		select {
		case g.recheck <- id:
		case <-g.p.ctx.Done():
		}
	})
}

// decideLate runs when a pending peer's grace has passed: what the peerstore holds now
// (identify and its pushes keep it current) decides.
func (g *networkGate) decideLate(id peer.ID) {
	g.mu.Lock()
	delete(g.pending, id)
	member := g.members[id]
	g.mu.Unlock()
	if member || g.p.h.Network().Connectedness(id) != network.Connected {
		return
	}
	protos, err := g.p.h.Peerstore().GetProtocols(id)
	if err != nil {
		g.p.log.Debug("peer protocols unknown", "peer", id, "err", err)
	}
	if g.judge(protos) == ours {
		if c := g.oldestConn(id); c != nil {
			g.member(id, c, nil)
		}
		return
	}
	g.reject(id)
}

func (g *networkGate) oldestConn(id peer.ID) network.Conn {
	conns := g.p.h.Network().ConnsToPeer(id)
	if len(conns) == 0 {
		return nil
	}
	return slices.MinFunc(conns, func(a, b network.Conn) int { return a.Stat().Opened.Compare(b.Stat().Opened) })
}

func (g *networkGate) member(id peer.ID, c network.Conn, rec *record.Envelope) {
	g.mu.Lock()
	g.members[id] = true
	delete(g.foreign, id)
	if t, ok := g.pending[id]; ok {
		t.Stop()
		delete(g.pending, id)
	}
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
	if t, ok := g.pending[id]; ok {
		t.Stop()
		delete(g.pending, id)
	}
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
	if t, ok := g.pending[id]; ok {
		t.Stop()
		delete(g.pending, id)
	}
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
