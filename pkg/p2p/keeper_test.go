package p2p

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Two peers that see each other's mDNS answer at the same moment must end up connected.
// Both listen on fixed TCP ports and libp2p dials from the listen port, so two immediate
// dials would meet as a TCP simultaneous open in which both sides act as the security
// client and both fail; the higher id holds back and the lower id's dial succeeds.
func TestLANPeersFoundAtOnceConnect(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	var wg sync.WaitGroup
	wg.Go(func() { (&mdnsNotifee{p: a}).HandlePeerFound(info(b)) })
	wg.Go(func() { (&mdnsNotifee{p: b}).HandlePeerFound(info(a)) })
	wg.Wait()
	eventually(t, "the LAN peers to connect", func() bool {
		return a.Libp2p().Network().Connectedness(b.ID()) == network.Connected &&
			b.Libp2p().Network().Connectedness(a.ID()) == network.Connected
	})
	// Exactly one side dialed: the lower id.
	lower, higher := a, b
	if b.ID() < a.ID() {
		lower, higher = b, a
	}
	for _, c := range lower.Libp2p().Network().ConnsToPeer(higher.ID()) {
		if c.Stat().Direction != network.DirOutbound {
			t.Errorf("the lower peer id holds an inbound connection; the tie-break did not hold")
		}
	}
}

// A bootstrap peer that is down when the node starts is dialed again, with backoff, until
// it comes up.
func TestBootstrapPeerRedialedUntilReachable(t *testing.T) {
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(addr string) func(*Config) {
		return func(c *Config) {
			c.PrivateKey = key
			c.ListenAddrs = mustAddrs(addr)
		}
	}
	// Learn a free port and the peer id, then take the peer down.
	first := newTestHost(t, withKey("/ip4/127.0.0.1/tcp/0"))
	listen := first.Libp2p().Addrs()[0]
	boot := listen.Encapsulate(ma.StringCast("/p2p/" + first.ID().String()))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	edge := newTestHost(t, func(c *Config) { c.BootstrapPeers = []ma.Multiaddr{boot} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := edge.Events(ctx)
	// The first dials fail while the peer is down; wait for two of them.
	eventually(t, "failed dials of the stopped bootstrap peer", func() bool { return edge.boots.failedDials.Load() >= 2 })
	if edge.Libp2p().Network().Connectedness(first.ID()) == network.Connected {
		t.Fatal("connected to a bootstrap peer that is not running")
	}

	second := newTestHost(t, withKey(listen.String()))
	waitEvent(t, ev, func(e Event) bool {
		pc, ok := e.(PeerConnected)
		return ok && pc.Peer == second.ID()
	})
}

// Bootstrap peers replaced at runtime: an added one is dialed, a removed one is no longer
// redialed once its connection goes.
func TestSetBootstrapPeers(t *testing.T) {
	boot := newTestHost(t, nil)
	edge := newTestHost(t, nil)
	full := boot.Addrs()
	added, removed, err := edge.SetBootstrapPeers(full)
	if err != nil || added != 1 || removed != 0 {
		t.Fatalf("SetBootstrapPeers = %d added, %d removed, %v; want 1, 0, nil", added, removed, err)
	}
	eventually(t, "the added bootstrap peer to be connected", func() bool {
		return edge.Libp2p().Network().Connectedness(boot.ID()) == network.Connected
	})
	// Setting the same list again changes nothing.
	if added, removed, err := edge.SetBootstrapPeers(full); err != nil || added != 0 || removed != 0 {
		t.Fatalf("same list again = %d added, %d removed, %v", added, removed, err)
	}
	if _, _, err := edge.SetBootstrapPeers([]ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}); err == nil {
		t.Fatal("an address without /p2p/ was accepted")
	}

	if added, removed, err := edge.SetBootstrapPeers(nil); err != nil || added != 0 || removed != 1 {
		t.Fatalf("SetBootstrapPeers(nil) = %d added, %d removed, %v; want 0, 1, nil", added, removed, err)
	}
	if err := edge.Libp2p().Network().ClosePeer(boot.ID()); err != nil {
		t.Fatal(err)
	}
	if edge.boots.has(boot.ID()) {
		t.Fatal("the removed bootstrap peer is still kept")
	}
	// Three looks at the kept peers after the connection went, none of them redialing.
	from := edge.boots.rounds.Load()
	edge.boots.wake()
	eventually(t, "three keeper rounds", func() bool { return edge.boots.rounds.Load() >= from+3 })
	if edge.Libp2p().Network().Connectedness(boot.ID()) == network.Connected {
		t.Fatal("a removed bootstrap peer was dialed again")
	}
}

// SetAnnounceAddrs replaces the advertised addresses while the host runs.
func TestSetAnnounceAddrs(t *testing.T) {
	h := newTestHost(t, nil)
	public := ma.StringCast("/ip4/203.0.113.9/tcp/4001")
	h.SetAnnounceAddrs([]ma.Multiaddr{public})
	eventually(t, "the announced address to be advertised", func() bool {
		addrs := h.Libp2p().Addrs()
		return len(addrs) == 1 && addrs[0].Equal(public)
	})
	h.SetAnnounceAddrs(nil)
	eventually(t, "the listen address to be advertised again", func() bool {
		addrs := h.Libp2p().Addrs()
		return len(addrs) == 1 && !addrs[0].Equal(public)
	})
}

// Removing a bootstrap relay and adding it again never runs two reservation keepers for it.
func TestReaddedBootstrapRelayKeepsOneReservationKeeper(t *testing.T) {
	relay := newTestHost(t, func(c *Config) { c.Public, c.RelayService = true, true })
	edge := newTestHost(t, func(c *Config) { c.RelayReservations = true })
	for _, addrs := range [][]ma.Multiaddr{relay.Addrs(), nil, relay.Addrs(), nil, relay.Addrs()} {
		if _, _, err := edge.SetBootstrapPeers(addrs); err != nil {
			t.Fatal(err)
		}
	}
	edge.resMu.Lock()
	n := len(edge.reserving)
	edge.resMu.Unlock()
	if n != 1 {
		t.Fatalf("%d reservation keepers for one relay", n)
	}
	eventually(t, "a reservation on the relay", func() bool {
		edge.resMu.Lock()
		defer edge.resMu.Unlock()
		_, ok := edge.reservations[relay.ID()]
		return ok
	})
}
