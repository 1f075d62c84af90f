package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Config configures a Host. The zero value of every optional field is a sensible edge-node
// default; always-on nodes (Kubernetes bootstrap/relay) set Public and RelayService.
type Config struct {
	// PrivateKey is the node key. It signs operations and is the libp2p identity.
	PrivateKey operation.PrivateKey
	// NetworkID namespaces every protocol id, gossip topic and the mDNS service name.
	NetworkID operation.NetworkID

	// ListenAddrs defaults to TCP and QUIC on all interfaces, random ports.
	ListenAddrs []ma.Multiaddr
	// NoListen makes the host dial-only (it can still be reached through a relay
	// reservation). ListenAddrs is ignored.
	NoListen bool
	// AnnounceAddrs, when set, replace the addresses the host advertises (e.g. the public
	// address of a Kubernetes Service). Circuit addresses of active reservations are
	// always appended.
	AnnounceAddrs []ma.Multiaddr

	// TopicStreamsProtocol names (without the network namespace, see Host.ProtocolID) a
	// protocol that keeps one stream per topic shared with a peer, such as log sync: the
	// resource manager admits MaxTopicStreamsPerPeer of its streams per peer and direction
	// instead of libp2p's default of 64 inbound streams per protocol and peer.
	TopicStreamsProtocol string

	// BootstrapPeers are full multiaddrs ending in /p2p/<id>. They are dialled with
	// backoff, protected from connection trimming, are the random walk's entry points and,
	// for non-public nodes, the static relays.
	BootstrapPeers []ma.Multiaddr

	// Public marks an always-on, directly reachable node: reachability is forced public
	// (required for the relay service to start), AutoNAT services run and per-IP
	// connection limits are raised for many peers behind one NAT or Service.
	Public bool
	// RelayService runs a circuit relay v2 without per-circuit limits, so GossipSub and
	// sync work over relayed connections. Only peers of this network may use it.
	RelayService bool
	// RelayMaxReservations bounds concurrent reservations (default 1024).
	RelayMaxReservations int
	// RelayReservations keeps explicit reservations on the static relays regardless of
	// what AutoNAT concludes. AutoRelay (also enabled for non-public nodes with bootstrap
	// peers) only reserves once the node is known to be private and only advertises
	// public relay addresses; explicit reservations also work on LANs and in tests.
	RelayReservations bool

	// MDNS enables LAN discovery with a network-scoped service name.
	MDNS bool
	// DisableHolePunching turns DCUtR off (it is on by default).
	DisableHolePunching bool

	// AddressStore, when set, persists the address book: peers with a signed peer record
	// are loaded at start, so the random walk finds them again without a bootstrap peer,
	// and saved every minute and at Close.
	AddressStore AddressStore

	// DisableRandomWalk stops this node from initiating discovery sessions. It still
	// answers them.
	DisableRandomWalk bool
	// Walkers is the number of concurrent random walkers (default 2, as p2panda).
	Walkers int
	// WalkInterval is the base delay between two discovery sessions of one walker
	// (default 1s); it grows up to MaxWalkInterval while walks bring nothing new.
	WalkInterval    time.Duration
	MaxWalkInterval time.Duration

	// ConnLow and ConnHigh are the connection manager water marks (default 100/150).
	ConnLow, ConnHigh int

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// PrometheusRegisterer receives libp2p's metrics; nil disables them.
	PrometheusRegisterer prometheus.Registerer

	// identifyGrace overrides defaultIdentifyGrace (tests).
	identifyGrace time.Duration
}

const (
	defaultWalkInterval         = time.Second
	defaultMaxWalkInterval      = 30 * time.Second
	defaultWalkers              = 2
	defaultConnLow              = 100
	defaultConnHigh             = 150
	defaultRelayMaxReservations = 1024
)

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.PrivateKey.IsZero() {
		return out, errors.New("p2p config: PrivateKey is required")
	}
	if out.NetworkID == (operation.NetworkID{}) {
		return out, errors.New("p2p config: NetworkID is required")
	}
	if out.Walkers <= 0 {
		out.Walkers = defaultWalkers
	}
	if out.WalkInterval <= 0 {
		out.WalkInterval = defaultWalkInterval
	}
	if out.MaxWalkInterval < out.WalkInterval {
		out.MaxWalkInterval = max(defaultMaxWalkInterval, out.WalkInterval)
	}
	if out.ConnLow <= 0 {
		out.ConnLow = defaultConnLow
	}
	if out.ConnHigh <= out.ConnLow {
		out.ConnHigh = max(defaultConnHigh, out.ConnLow+out.ConnLow/2)
	}
	if out.RelayMaxReservations <= 0 {
		out.RelayMaxReservations = defaultRelayMaxReservations
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if len(out.ListenAddrs) == 0 && !out.NoListen {
		out.ListenAddrs = DefaultListenAddrs()
	}
	return out, nil
}

// DefaultListenAddrs are TCP and QUIC v1 on all IPv4 and IPv6 interfaces, random ports.
func DefaultListenAddrs() []ma.Multiaddr {
	return mustAddrs(
		"/ip4/0.0.0.0/tcp/0",
		"/ip4/0.0.0.0/udp/0/quic-v1",
		"/ip6/::/tcp/0",
		"/ip6/::/udp/0/quic-v1",
	)
}

// ParseAddrs parses multiaddr strings (config files, flags).
func ParseAddrs(ss []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(ss))
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("parse multiaddr %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func mustAddrs(ss ...string) []ma.Multiaddr {
	out, err := ParseAddrs(ss)
	if err != nil {
		panic(err)
	}
	return out
}

// addrInfos groups full multiaddrs (with /p2p/) by peer.
func addrInfos(addrs []ma.Multiaddr) ([]peer.AddrInfo, error) {
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("bootstrap addresses must end in /p2p/<peer id>: %w", err)
	}
	return infos, nil
}
