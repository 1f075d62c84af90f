package p2p

import (
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestPeerIDRoundTrip(t *testing.T) {
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := PeerIDFromPublicKey(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	priv, err := Libp2pPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	fromPriv, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if id != fromPriv {
		t.Fatalf("peer id from public key %s != from private key %s", id, fromPriv)
	}
	back, err := PublicKeyFromPeerID(id)
	if err != nil {
		t.Fatal(err)
	}
	if back != key.PublicKey() {
		t.Fatalf("round trip gave %s, want %s", back, key.PublicKey())
	}

	// A signature made with the libp2p key verifies under the operation key: same key.
	msg := []byte("same key")
	sig, err := priv.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey().Verify(msg, operation.Signature(sig)) {
		t.Fatal("libp2p signature does not verify under the operation public key")
	}

	h := newTestHost(t, func(c *Config) { c.PrivateKey = key })
	if h.ID() != id {
		t.Fatalf("host id %s, want %s", h.ID(), id)
	}
	for _, a := range h.Addrs() {
		if _, pid := peer.SplitAddr(a); pid != id {
			t.Fatalf("address %s does not end in /p2p/%s", a, id)
		}
	}
}

func TestPublicKeyFromNonEd25519PeerID(t *testing.T) {
	priv, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PublicKeyFromPeerID(id); !errors.Is(err, ErrNotEd25519) {
		t.Fatalf("got %v, want ErrNotEd25519", err)
	}
}

func TestProtocolIDIsNamespaced(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, func(c *Config) { c.NetworkID = mustNetworkID("other") })
	pa, pb := a.ProtocolID("sync/1"), b.ProtocolID("sync/1")
	if pa == pb {
		t.Fatalf("protocol ids of different networks are equal: %s", pa)
	}
	want := "/p2panda/" + a.NetworkTag() + "/sync/1"
	if string(pa) != want || len(a.NetworkTag()) != 16 {
		t.Fatalf("protocol id %s, want %s", pa, want)
	}
	if a.GossipTopicName(topicN(1), "ephemeral") == b.GossipTopicName(topicN(1), "ephemeral") {
		t.Fatal("gossip topic names of different networks are equal")
	}
}

func TestQUICAndAnnounceAddrs(t *testing.T) {
	announce := mustAddrs("/ip4/127.0.0.1/udp/4242/quic-v1")
	a := newTestHost(t, func(c *Config) {
		c.ListenAddrs = mustAddrs("/ip4/127.0.0.1/udp/0/quic-v1")
		c.AnnounceAddrs = announce
	})
	if got := a.Libp2p().Addrs(); len(got) != 1 || !got[0].Equal(announce[0]) {
		t.Fatalf("announced %v, want %v", got, announce)
	}
	b := newTestHost(t, func(c *Config) { c.ListenAddrs = mustAddrs("/ip4/127.0.0.1/udp/0/quic-v1") })
	connect(t, a, b)
	eventually(t, "identified over quic", func() bool { return a.gate.isMember(b.ID()) })
	if mdnsServiceName(testNetwork) == mdnsServiceName(mustNetworkID("other")) {
		t.Fatal("mdns service name is not network scoped")
	}
}
