package p2p

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// addressBook is the random walk's view of the network: which peers exist, which are
// bootstraps and whether the last attempt to reach them failed. Addresses themselves live
// in the libp2p peerstore (signed peer records in its certified address book).
type addressBook struct {
	ps peerstore.Peerstore

	mu      sync.Mutex
	entries map[peer.ID]*bookEntry
}

type bookEntry struct {
	bootstrap     bool
	lastFailed    time.Time
	lastSucceeded time.Time
	added         time.Time
}

// maxBookEntries bounds memory; the oldest non-bootstrap stale entries go first.
const maxBookEntries = 4096

func newAddressBook(ps peerstore.Peerstore) *addressBook {
	return &addressBook{ps: ps, entries: make(map[peer.ID]*bookEntry)}
}

// add records a peer; it reports whether the peer was new.
func (b *addressBook) add(id peer.ID, bootstrap bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[id]; ok {
		e.bootstrap = e.bootstrap || bootstrap
		return false
	}
	if len(b.entries) >= maxBookEntries {
		b.evictLocked()
	}
	b.entries[id] = &bookEntry{bootstrap: bootstrap, added: time.Now()}
	return true
}

func (b *addressBook) evictLocked() {
	var victim peer.ID
	var oldest time.Time
	for id, e := range b.entries {
		if e.bootstrap {
			continue
		}
		stale := e.lastFailed.After(e.lastSucceeded)
		if victim == "" || stale && (oldest.IsZero() || e.added.Before(oldest)) {
			victim, oldest = id, e.added
		}
	}
	if victim != "" {
		delete(b.entries, victim)
	}
}

func (b *addressBook) remove(id peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[id]; ok && !e.bootstrap {
		delete(b.entries, id)
	}
}

// demote makes a bootstrap entry an ordinary one (SetBootstrapPeers removed the peer).
func (b *addressBook) demote(id peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[id]; ok {
		e.bootstrap = false
	}
}

func (b *addressBook) failed(id peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[id]; ok {
		e.lastFailed = time.Now()
	}
}

func (b *addressBook) succeeded(id peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[id]; ok {
		e.lastSucceeded = time.Now()
	}
}

// bookSnapshot is one entry as persisted.
type bookSnapshot struct {
	id                        peer.ID
	lastSucceeded, lastFailed time.Time
}

// snapshot copies every entry.
func (b *addressBook) snapshot() []bookSnapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]bookSnapshot, 0, len(b.entries))
	for id, e := range b.entries {
		out = append(out, bookSnapshot{id: id, lastSucceeded: e.lastSucceeded, lastFailed: e.lastFailed})
	}
	return out
}

// restore adds a persisted peer with its connection history (an existing entry keeps its
// own, newer history).
func (b *addressBook) restore(id peer.ID, lastSucceeded, lastFailed time.Time) {
	if !b.add(id, false) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[id]; ok {
		e.lastSucceeded, e.lastFailed = lastSucceeded, lastFailed
	}
}

// known lists non-stale peers (stale = the last attempt failed after the last success;
// bootstraps are never stale, as in p2panda).
func (b *addressBook) known() []peer.ID {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]peer.ID, 0, len(b.entries))
	for id, e := range b.entries {
		if e.bootstrap || !e.lastFailed.After(e.lastSucceeded) {
			out = append(out, id)
		}
	}
	return out
}

func (b *addressBook) bootstraps() []peer.ID {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []peer.ID
	for id, e := range b.entries {
		if e.bootstrap {
			out = append(out, id)
		}
	}
	return out
}
