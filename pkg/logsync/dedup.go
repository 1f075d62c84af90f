package logsync

import (
	stdsync "sync"

	"github.com/pandanet/pandanet/pkg/operation"
)

// DefaultDedupSize is the number of recent operation ids a session remembers. p2panda uses
// 1024; a larger ring costs 32 bytes per entry and catches more live-mode echoes.
const DefaultDedupSize = 4096

// dedupRing remembers the last n operation ids a session sent or received, so an operation is
// neither handed to the sink twice nor echoed back to the peer that sent it. It grows with
// use instead of being allocated at its full size: a node following thousands of mostly
// quiet topics has as many sessions per peer, and a preallocated 4,096-entry ring and set
// (~300 KiB) per session was what made such a node need a gigabyte per thousand topics.
type dedupRing struct {
	mu    stdsync.Mutex
	ring  []operation.Hash
	limit int
	next  int
	set   map[operation.Hash]struct{}
}

func newDedupRing(n int) *dedupRing {
	if n <= 0 {
		n = DefaultDedupSize
	}
	return &dedupRing{limit: n, set: make(map[operation.Hash]struct{})}
}

// add records h and reports whether it was new.
func (d *dedupRing) add(h operation.Hash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, seen := d.set[h]; seen {
		return false
	}
	if len(d.ring) < d.limit {
		d.ring = append(d.ring, h)
	} else {
		delete(d.set, d.ring[d.next])
		d.ring[d.next] = h
		d.next = (d.next + 1) % len(d.ring)
	}
	d.set[h] = struct{}{}
	return true
}
