package p2p

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
)

func TestCircuitAddr(t *testing.T) {
	r, target := newTestHost(t, nil), newTestHost(t, nil)
	full := r.Addrs()[0]
	transport, _ := peer.SplitAddr(full)
	for _, in := range []string{full.String(), transport.String()} {
		addrs := mustAddrs(in)
		c, err := CircuitAddr(addrs[0], r.ID(), target.ID())
		if err != nil {
			t.Fatal(err)
		}
		want := transport.String() + "/p2p/" + r.ID().String() + "/p2p-circuit/p2p/" + target.ID().String()
		if c.String() != want {
			t.Fatalf("got %s, want %s", c, want)
		}
	}
	if _, err := CircuitAddr(full, target.ID(), r.ID()); err == nil {
		t.Fatal("relay id mismatch accepted")
	}
}

// b has no listen address at all and reserves a slot on relay r (the bootstrap); a
// reaches b only through r's circuit, opens a custom protocol stream, and gossip flows
// both ways over the unlimited relayed connection.
func TestRelayedStreamAndGossip(t *testing.T) {
	r := newTestHost(t, func(c *Config) { c.Public, c.RelayService = true, true })
	b := newTestHost(t, func(c *Config) {
		c.NoListen = true
		c.BootstrapPeers = r.Addrs()
		c.RelayReservations = true
	})
	a := newTestHost(t, nil)

	eventually(t, "b advertises a circuit address", func() bool {
		return slices.ContainsFunc(b.Addrs(), isRelayed)
	})
	var circuit = b.Addrs()[slices.IndexFunc(b.Addrs(), isRelayed)]
	echo := b.ProtocolID("echo/1")
	b.Libp2p().SetStreamHandler(echo, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.ConnectAddr(ctx, circuit); err != nil {
		t.Fatal(err)
	}
	s, err := a.Libp2p().NewStream(ctx, b.ID(), echo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("through the relay")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "through the relay" {
		t.Fatalf("echo returned %q", got)
	}
	var pb *PeerInfo
	for _, p := range a.Peers() {
		if p.ID == b.ID() {
			pb = &p
		}
	}
	if pb == nil || !pb.Relayed || pb.Limited {
		t.Fatalf("peer b as seen by a: %+v (want relayed, unlimited)", pb)
	}

	topic := topicN(9)
	ta, err := a.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer ta.Close()
	tb, err := b.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if m := publishUntilReceived(t, ctx, ta, tb, []byte("a to b")); m.Author != a.PublicKey() {
		t.Fatalf("b got %+v", m)
	}
	if m := publishUntilReceived(t, ctx, tb, ta, []byte("b to a")); m.Author != b.PublicKey() {
		t.Fatalf("a got %+v", m)
	}
}

// A plain libp2p host (no pandanet protocols, so no network member) cannot reserve a
// slot on our relay: the ACL waits for identify and refuses.
func TestRelayRefusesOtherNetworks(t *testing.T) {
	r := newTestHost(t, func(c *Config) { c.Public, c.RelayService = true, true })
	x, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := client.Reserve(ctx, x, info(r)); err == nil {
		t.Fatal("peer of another network reserved a relay slot")
	}
}

// An always-on node admits at least the connections its connection manager keeps (plus
// churn above them), whatever libp2p's machine-scaled default is; edge nodes keep it.
func TestResourceLimitsFollowConnHigh(t *testing.T) {
	edge := resourceLimits(false, 1200, "").ToPartialLimitConfig().System
	public := resourceLimits(true, 1200, "").ToPartialLimitConfig().System
	if public.ConnsInbound < 1800 || public.Conns < 2700 || public.StreamsInbound < 16*1800 {
		t.Fatalf("public node with ConnHigh 1200: system limits %+v", public)
	}
	if edge.ConnsInbound >= 1800 && edge.ConnsInbound != public.ConnsInbound {
		t.Fatalf("edge limits changed: %+v", edge)
	}
	small := resourceLimits(true, 10, "").ToPartialLimitConfig().System
	if small.ConnsInbound != edge.ConnsInbound || small.Conns != edge.Conns {
		t.Fatalf("a small ConnHigh lowered the scaled defaults: %+v, default %+v", small, edge)
	}
}

// The per-topic protocol (log sync) gets MaxTopicStreamsPerPeer streams per peer and
// direction instead of libp2p's default 64 inbound per protocol and peer; other protocols
// keep the defaults.
func TestResourceLimitsAdmitTopicStreams(t *testing.T) {
	const proto = "/p2panda/test/log-sync/1"
	for _, public := range []bool{false, true} {
		l := resourceLimits(public, 100, proto).ToPartialLimitConfig()
		pp, ok := l.ProtocolPeer[proto]
		if !ok || pp.StreamsInbound < MaxTopicStreamsPerPeer || pp.StreamsOutbound < MaxTopicStreamsPerPeer {
			t.Fatalf("public=%v: per-peer limits of %s: %+v", public, proto, pp)
		}
		if l.PeerDefault.StreamsInbound < MaxTopicStreamsPerPeer || l.System.StreamsInbound < MaxTopicStreamsPerPeer {
			t.Fatalf("public=%v: peer %+v / system %+v limits below %d streams", public, l.PeerDefault, l.System, MaxTopicStreamsPerPeer)
		}
		if d := l.ProtocolPeerDefault.StreamsInbound; d >= MaxTopicStreamsPerPeer {
			t.Fatalf("public=%v: default per-protocol-peer limit raised to %d", public, d)
		}
	}
}
