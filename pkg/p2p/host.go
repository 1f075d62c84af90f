// Package p2p is pandanet's networking layer: a go-libp2p host whose identity is the node
// key, network-id namespaced protocols and gossip topics, GossipSub ephemeral messages,
// discovery (bootstrap peers, mDNS, p2panda's random walk with private topic
// intersection) and relay / NAT traversal.
package p2p

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	basichost "github.com/libp2p/go-libp2p/p2p/host/basic"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/fx"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Host is a running libp2p node of one pandanet network.
type Host struct {
	cfg  Config
	log  *slog.Logger
	h    host.Host
	nid  string
	priv operation.PrivateKey

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	events *eventBus
	gate   *networkGate
	book   *addressBook
	topics *topicInterest
	ps     *pubsub.PubSub
	mdns   mdns.Service

	// discovery session bookkeeping
	discSem     chan struct{}
	walkResets  []chan struct{}
	topicPeers  *topicPeerSet
	ownRecordMu sync.Mutex
	ownRecord   ownRecordCache
	clock       hybridClock

	// announce replaces the advertised addresses when not empty (SetAnnounceAddrs).
	announce atomic.Pointer[[]ma.Multiaddr]

	// bookLoaded is set once the persisted address book was loaded (so Close saves it).
	bookLoaded atomic.Bool

	// boots keeps bootstrap peers connected; lan the peers mDNS found.
	boots *keeper
	lan   *keeper

	resMu        sync.Mutex
	reservations map[peer.ID]*reservation
	reserving    map[peer.ID]bool // relays a keepReservation goroutine runs for

	ephMu     sync.Mutex
	ephTopics map[string]*ephemeralShared

	closeOnce sync.Once
	closeErr  error
}

// connection manager tags; bootstrap and relay peers are protected, topic peers weighted.
const (
	tagBootstrap = "pandanet-bootstrap"
	tagRelay     = "pandanet-relay"
	tagTopic     = "pandanet-topic"
)

// New starts a host. ctx bounds only the construction; the host runs until Close.
func New(ctx context.Context, config Config) (*Host, error) {
	cfg, err := config.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	priv, err := Libp2pPrivateKey(cfg.PrivateKey)
	if err != nil {
		return nil, err
	}
	boots, err := addrInfos(cfg.BootstrapPeers)
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("derive peer id: %w", err)
	}
	boots = slices.DeleteFunc(boots, func(ai peer.AddrInfo) bool { return ai.ID == self })

	hctx, cancel := context.WithCancel(context.Background())
	p := &Host{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "p2p"),
		nid:          networkTag(cfg.NetworkID),
		priv:         cfg.PrivateKey,
		ctx:          hctx,
		cancel:       cancel,
		discSem:      make(chan struct{}, maxConcurrentDiscoverySessions),
		topicPeers:   newTopicPeerSet(),
		reservations: make(map[peer.ID]*reservation),
		reserving:    make(map[peer.ID]bool),
		ephTopics:    make(map[string]*ephemeralShared),
	}
	p.events = newEventBus(p.log)
	p.SetAnnounceAddrs(cfg.AnnounceAddrs)
	p.boots = newKeeper(p, "bootstrap", bootstrapMinBackoff, bootstrapMaxBackoff)
	p.lan = newKeeper(p, "mdns", lanMinBackoff, lanMaxBackoff)
	for range cfg.Walkers {
		p.walkResets = append(p.walkResets, make(chan struct{}, 1))
	}
	p.gate = newNetworkGate()
	p.topics = newTopicInterest(p.onTopicsChanged)

	var topicProto protocol.ID
	if cfg.TopicStreamsProtocol != "" {
		topicProto = p.ProtocolID(cfg.TopicStreamsProtocol)
	}
	rm, err := newResourceManager(cfg.Public, cfg.ConnHigh, topicProto)
	if err != nil {
		cancel()
		return nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		cancel()
		_ = rm.Close()
		return nil, fmt.Errorf("connection manager: %w", err)
	}

	opts := []libp2p.Option{
		libp2p.Identity(priv),
		// Only TCP and QUIC: WebTransport and WebRTC cost binary size and CPU and no
		// pandanet peer needs them (browsers are out of scope).
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(tls.ID, tls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		// Listening starts only after our protocol handlers are registered (start), and
		// the discovery protocol, the network marker every peer's gate looks for, is
		// registered while libp2p builds the host: identify takes the first snapshot of
		// our protocols when the host starts and refreshes it only asynchronously on later
		// handler changes, so a handler set after libp2p.New could be missing from the
		// first identify a fast peer gets (it then took us for a foreign node).
		libp2p.NoListenAddrs,
		libp2p.WithFxOption(fx.Invoke(func(h *basichost.BasicHost) {
			h.SetStreamHandler(p.discoveryProtocol(), p.handleDiscovery)
		})),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(p.gate),
		libp2p.AddrsFactory(p.addrsFactory),
		libp2p.Ping(true),
		libp2p.EnableRelay(),
		libp2p.UserAgent("pandanet"),
	}
	if cfg.PrometheusRegisterer != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.PrometheusRegisterer))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if !cfg.DisableHolePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if cfg.Public {
		opts = append(opts, libp2p.ForceReachabilityPublic(), libp2p.EnableNATService(), libp2p.EnableAutoNATv2())
	}
	if cfg.RelayService {
		opts = append(opts, libp2p.EnableRelayService(
			relay.WithResources(relayResources(cfg)),
			// Any limit marks relayed connections "limited" and GossipSub and sync then
			// refuse them; unlimited circuits are what makes a relay useful here.
			relay.WithInfiniteLimits(),
			relay.WithACL(&relayACL{p: p}),
		))
	}
	if !cfg.Public && !cfg.RelayService && len(boots) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(boots,
			autorelay.WithNumRelays(min(2, len(boots))),
			autorelay.WithBackoff(time.Minute)))
	}

	h, err := libp2p.New(opts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	p.h = h
	p.book = newAddressBook(h.Peerstore())

	if err := p.start(boots); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Host) start(boots []peer.AddrInfo) error {
	p.gate.attach(p)
	if err := p.gate.watch(); err != nil {
		return err
	}
	ps, err := p.newPubSub()
	if err != nil {
		return err
	}
	p.ps = ps

	if len(p.cfg.ListenAddrs) > 0 && !p.cfg.NoListen {
		if err := p.h.Network().Listen(p.cfg.ListenAddrs...); err != nil {
			return fmt.Errorf("listen on %v: %w", p.cfg.ListenAddrs, err)
		}
	}
	if p.cfg.MDNS {
		p.mdns = mdns.NewMdnsService(p.h, mdnsServiceName(p.cfg.NetworkID), &mdnsNotifee{p: p})
		if err := p.mdns.Start(); err != nil {
			return fmt.Errorf("start mdns: %w", err)
		}
	}
	if p.cfg.AddressStore != nil {
		n, err := p.loadAddressBook(p.ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			p.log.Info("address book restored", "peers", n)
		}
		p.bookLoaded.Store(true)
		p.wg.Add(1)
		go p.persistLoop()
	}
	for _, ai := range boots {
		p.addBootstrap(ai)
	}
	p.wg.Add(1)
	go p.boots.loop(bootstrapTick)
	p.wg.Add(1)
	go p.lan.loop(bootstrapTick)
	if !p.cfg.DisableRandomWalk {
		for i := range p.cfg.Walkers {
			p.wg.Add(1)
			go p.walk(i)
		}
	}
	p.log.Info("p2p host started", "peer", p.h.ID(), "network", p.nid, "addrs", p.h.Addrs(),
		"public", p.cfg.Public, "relay_service", p.cfg.RelayService)
	return nil
}

// Close stops discovery, gossip and the libp2p host. It is safe to call more than once.
func (p *Host) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		var errs []error
		if p.mdns != nil {
			errs = append(errs, p.mdns.Close())
		}
		p.wg.Wait()
		// A host that never loaded the stored book must not overwrite it.
		if p.bookLoaded.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := p.saveAddressBook(ctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		p.ephMu.Lock()
		for _, s := range p.ephTopics {
			s.closeAll()
		}
		p.ephMu.Unlock()
		if p.gate != nil {
			p.gate.close()
		}
		if p.h != nil {
			errs = append(errs, p.h.Close())
		}
		p.events.close()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// ID is the host's peer id.
func (p *Host) ID() peer.ID { return p.h.ID() }

// PublicKey is the node key the peer id embeds.
func (p *Host) PublicKey() operation.PublicKey { return p.priv.PublicKey() }

// Libp2p exposes the underlying host (for stream protocols such as sync).
func (p *Host) Libp2p() host.Host { return p.h }

// NetworkTag is the short network namespace, hex of the first 8 bytes of
// BLAKE3(network id).
func (p *Host) NetworkTag() string { return p.nid }

// ProtocolID namespaces a protocol name with the network: /p2panda/<network tag>/<name>.
// Peers of another network cannot negotiate it.
func (p *Host) ProtocolID(name string) protocol.ID {
	return protocolID(p.nid, name)
}

func protocolID(nid, name string) protocol.ID {
	return protocol.ID("/p2panda/" + nid + "/" + name)
}

func networkTag(id operation.NetworkID) string {
	h := operation.HashOf(id[:])
	return hex.EncodeToString(h[:8])
}

// Addrs returns the advertised addresses as full multiaddrs ending in /p2p/<id>
// (including relay circuit addresses of active reservations).
func (p *Host) Addrs() []ma.Multiaddr {
	info := peer.AddrInfo{ID: p.h.ID(), Addrs: p.h.Addrs()}
	full, err := peer.AddrInfoToP2pAddrs(&info)
	if err != nil {
		return nil
	}
	return full
}

// addrsFactory applies the announce addresses and adds the circuit addresses of our explicit
// reservations, which AutoRelay would drop for non-public relays.
func (p *Host) addrsFactory(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := addrs
	if announce := *p.announce.Load(); len(announce) > 0 {
		out = slices.Clone(announce)
		// keep what AutoRelay added
		for _, a := range addrs {
			if isRelayed(a) {
				out = append(out, a)
			}
		}
	}
	out = append(out, p.reservationAddrs()...)
	return ma.Unique(out)
}

// Connect dials a peer (addresses are added to the peerstore for an hour).
func (p *Host) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if ai.ID == p.h.ID() {
		return errors.New("connect: refusing to dial ourselves")
	}
	if err := p.h.Connect(ctx, ai); err != nil {
		return fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	return nil
}

// ConnectAddr dials a full multiaddr (with /p2p/).
func (p *Host) ConnectAddr(ctx context.Context, addr ma.Multiaddr) error {
	ai, err := peer.AddrInfoFromP2pAddr(addr)
	if err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	return p.Connect(ctx, *ai)
}

// PeerInfo describes a connected peer.
type PeerInfo struct {
	ID peer.ID
	// Direction of the oldest open connection.
	Direction network.Direction
	// Relayed is true if every connection to the peer goes through a relay.
	Relayed bool
	// Limited is true if the relay imposes limits (such connections carry no gossip).
	Limited bool
	// InNetwork is true once identify showed the peer speaks our network's protocols.
	InNetwork bool
	Addrs     []ma.Multiaddr
}

// Peers lists connected peers.
func (p *Host) Peers() []PeerInfo {
	var out []PeerInfo
	for _, id := range p.h.Network().Peers() {
		conns := p.h.Network().ConnsToPeer(id)
		if len(conns) == 0 {
			continue
		}
		slices.SortFunc(conns, func(a, b network.Conn) int { return a.Stat().Opened.Compare(b.Stat().Opened) })
		info := PeerInfo{ID: id, Direction: conns[0].Stat().Direction, Relayed: true, Limited: true,
			InNetwork: p.gate.isMember(id)}
		for _, c := range conns {
			info.Addrs = append(info.Addrs, c.RemoteMultiaddr())
			if !isRelayed(c.RemoteMultiaddr()) {
				info.Relayed = false
			}
			if !c.Stat().Limited {
				info.Limited = false
			}
		}
		out = append(out, info)
	}
	return out
}

// Events subscribes to node-level networking events until ctx ends (then the channel is
// closed). Slow subscribers lose events rather than stalling the network.
func (p *Host) Events(ctx context.Context) <-chan Event { return p.events.subscribe(ctx) }

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// InsertBootstrap adds a bootstrap peer at runtime (full multiaddr with /p2p/) and dials
// it; it is kept connected with backoff afterwards. The dial error, if any, is returned
// but the peer stays registered.
func (p *Host) InsertBootstrap(ctx context.Context, addr ma.Multiaddr) error {
	ai, err := peer.AddrInfoFromP2pAddr(addr)
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", addr, err)
	}
	if ai.ID == p.h.ID() {
		return nil
	}
	p.addBootstrap(*ai)
	err = p.Connect(ctx, *ai)
	p.boots.wake()
	return err
}

func (p *Host) addBootstrap(ai peer.AddrInfo) {
	p.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	p.h.ConnManager().Protect(ai.ID, tagBootstrap)
	p.book.add(ai.ID, true)
	if p.boots.keep(ai, 0, 0) && p.cfg.RelayReservations && !p.cfg.RelayService {
		p.keepReservation(ai)
	}
}

// SetBootstrapPeers replaces the bootstrap peers (full multiaddrs with /p2p/): new ones
// are dialed and kept connected like those of the Config, removed ones are no longer
// redialed, protected or used as relays. Open connections stay until trimmed. It returns
// how many peers were added and removed.
func (p *Host) SetBootstrapPeers(addrs []ma.Multiaddr) (added, removed int, err error) {
	infos, err := addrInfos(addrs)
	if err != nil {
		return 0, 0, err
	}
	want := make(map[peer.ID]bool, len(infos))
	for _, ai := range infos {
		if ai.ID == p.h.ID() {
			continue
		}
		want[ai.ID] = true
		if !p.boots.has(ai.ID) {
			added++
		}
		p.addBootstrap(ai)
	}
	for _, id := range p.boots.ids() {
		if want[id] {
			continue
		}
		p.boots.forget(id)
		p.h.ConnManager().Unprotect(id, tagBootstrap)
		p.book.demote(id)
		removed++
	}
	return added, removed, nil
}

// SetAnnounceAddrs replaces the addresses the host advertises (nil: its listen
// addresses), as Config.AnnounceAddrs does at start. libp2p recomputes its addresses every
// few seconds and pushes the change to connected peers with identify.
func (p *Host) SetAnnounceAddrs(addrs []ma.Multiaddr) {
	cp := slices.Clone(addrs)
	p.announce.Store(&cp)
}

const (
	bootstrapMinBackoff = time.Second
	bootstrapMaxBackoff = time.Minute
	bootstrapTick       = time.Second
)
