package p2p

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// memAddressStore is an AddressStore in memory.
type memAddressStore struct {
	mu    sync.Mutex
	peers []store.Peer
	saves int
}

func (m *memAddressStore) LoadPeers(context.Context) ([]store.Peer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.peers), nil
}

func (m *memAddressStore) SavePeers(_ context.Context, peers []store.Peer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers = slices.Clone(peers)
	m.saves++
	return nil
}

// A node that restarts without any bootstrap peer finds the peers it knew before through
// the persisted address book; tampered entries are skipped.
func TestAddressBookSurvivesRestart(t *testing.T) {
	addrStore := &memAddressStore{}
	other := newTestHost(t, nil)
	first := newTestHost(t, func(c *Config) { c.AddressStore = addrStore })
	connect(t, first, other)
	eventually(t, "the peer to enter the address book", func() bool {
		return slices.Contains(first.book.known(), other.ID())
	})
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if len(addrStore.peers) != 1 || addrStore.peers[0].ID != other.ID().String() {
		t.Fatalf("saved address book = %+v, want the one peer it knew", addrStore.peers)
	}

	// A forged entry: the other peer's record stored under a third peer's id, and garbage.
	third := newTestHost(t, nil)
	addrStore.peers = append(addrStore.peers,
		store.Peer{ID: third.ID().String(), Record: addrStore.peers[0].Record},
		store.Peer{ID: "12D3KooWgarbage", Record: []byte("not an envelope")})

	restarted := newTestHost(t, func(c *Config) {
		c.AddressStore = addrStore
		c.DisableRandomWalk = false
	})
	if known := restarted.book.known(); len(known) != 1 || known[0] != other.ID() {
		t.Fatalf("restored address book = %v, want only %s", known, other.ID())
	}
	eventually(t, "the random walk to reach the remembered peer", func() bool {
		return restarted.Libp2p().Network().Connectedness(other.ID()) == network.Connected
	})
}

// A host whose start failed must not overwrite the stored book with an empty one.
func TestFailedStartKeepsStoredAddressBook(t *testing.T) {
	addrStore := &memAddressStore{peers: []store.Peer{{ID: "kept", Record: []byte{1}}}}
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// 192.0.2.1 (TEST-NET-1) is no address of this machine: listening on it fails.
	cfg := Config{PrivateKey: key, NetworkID: testNetwork, ListenAddrs: mustAddrs("/ip4/192.0.2.1/tcp/0"),
		AddressStore: addrStore, Logger: testLogger()}
	if h, err := New(context.Background(), cfg); err == nil {
		h.Close()
		t.Fatal("listening on a foreign address succeeded")
	}
	if addrStore.saves != 0 || len(addrStore.peers) != 1 {
		t.Fatalf("a failed start saved the address book: %+v", addrStore.peers)
	}
}
