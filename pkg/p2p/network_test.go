package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// Two networks on loopback: a dial succeeds at the transport level, but identify shows
// the other side does not speak our namespaced protocols, so both close the connection,
// report no peer, and neither gossip nor discovery crosses.
func TestNetworksAreIsolated(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, func(c *Config) { c.NetworkID = mustNetworkID("another-network") })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	evA, evB := a.Events(ctx), b.Events(ctx)

	topic := topicN(7)
	ea, err := a.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer ea.Close()
	eb, err := b.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer eb.Close()

	_ = b.Connect(ctx, info(a)) // may or may not return before the gate closes it
	eventually(t, "foreign connection closed", func() bool {
		return a.Libp2p().Network().Connectedness(b.ID()) != network.Connected &&
			b.Libp2p().Network().Connectedness(a.ID()) != network.Connected
	})
	// Whichever side finished identify first closed the connection; the other may have
	// lost its identify round, so at least one side must remember the foreign peer.
	if !a.gate.isForeign(b.ID()) && !b.gate.isForeign(a.ID()) {
		t.Fatal("peers of the other network are not remembered as foreign")
	}
	// A second dial is refused by the gater of whichever side remembers the other (at
	// the latest when the listener checks the secured connection).
	_ = b.Connect(ctx, info(a))
	eventually(t, "re-dialled foreign connection closed", func() bool {
		return a.Libp2p().Network().Connectedness(b.ID()) != network.Connected &&
			b.Libp2p().Network().Connectedness(a.ID()) != network.Connected
	})
	if _, err := b.Discover(ctx, a.ID()); err == nil {
		t.Fatal("discovery session across networks succeeded")
	}
	if err := ea.Publish(ctx, []byte("hello?")); err != nil {
		t.Fatal(err)
	}
	if err := eb.Publish(ctx, []byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(a.Peers(), b.Peers()...) {
		if p.InNetwork {
			t.Fatalf("foreign peer %s reported as in network", p.ID)
		}
	}
	// Nothing arrives (bounded wait: absence cannot be proven faster).
	select {
	case m := <-ea.Messages():
		t.Fatalf("a received %q across networks", m.Body)
	case m := <-eb.Messages():
		t.Fatalf("b received %q across networks", m.Body)
	case <-time.After(500 * time.Millisecond):
	}
	for _, ch := range []<-chan Event{evA, evB} {
	drain:
		for {
			select {
			case e := <-ch:
				switch e.(type) {
				case PeerConnected, TopicPeer, DiscoverySessionEnded:
					t.Fatalf("unexpected event across networks: %#v", e)
				}
			default:
				break drain
			}
		}
	}
}

// Peers of the same network are reported once identified, and disconnection is reported.
func TestPeerEvents(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := a.Events(ctx)
	connect(t, b, a)
	waitEvent(t, ev, func(e Event) bool {
		pc, ok := e.(PeerConnected)
		return ok && pc.Peer == b.ID() && pc.Direction == network.DirInbound && !pc.Relayed
	})
	peers := a.Peers()
	if len(peers) != 1 || peers[0].ID != b.ID() || !peers[0].InNetwork || peers[0].Relayed {
		t.Fatalf("unexpected peers %+v", peers)
	}
	if err := b.Libp2p().Network().ClosePeer(a.ID()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev, func(e Event) bool {
		pd, ok := e.(PeerDisconnected)
		return ok && pd.Peer == b.ID()
	})
}

func waitEvent(tb testing.TB, ch <-chan Event, match func(Event) bool) Event {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				tb.Fatal("event channel closed")
			}
			if match(e) {
				return e
			}
		case <-timeout:
			tb.Fatal("timed out waiting for event")
		}
	}
}
