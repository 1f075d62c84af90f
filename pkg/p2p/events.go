package p2p

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Event is a node-level networking event. Concrete types: PeerConnected, PeerDisconnected,
// DiscoverySessionStarted, DiscoverySessionEnded, DiscoverySessionFailed, TopicPeer.
type Event interface{ isEvent() }

// Role says which side of a discovery session we were on.
type Role uint8

const (
	// RoleInitiated: we dialled the remote (the walker picked it).
	RoleInitiated Role = iota
	// RoleAccepted: the remote opened the session.
	RoleAccepted
)

func (r Role) String() string {
	if r == RoleInitiated {
		return "initiated"
	}
	return "accepted"
}

// PeerConnected is emitted once a peer of our network has a connection and completed
// identify. Peers of other networks are never reported.
type PeerConnected struct {
	Peer      peer.ID
	Direction network.Direction
	Relayed   bool
}

// PeerDisconnected is emitted when the last connection to a reported peer closed.
type PeerDisconnected struct {
	Peer peer.ID
}

// DiscoverySessionStarted mirrors p2panda's SessionStarted.
type DiscoverySessionStarted struct {
	Peer peer.ID
	Role Role
}

// DiscoverySessionEnded mirrors p2panda's SessionEnded: Topics is the size of the topic
// intersection, Records the number of peer records received.
type DiscoverySessionEnded struct {
	Peer     peer.ID
	Role     Role
	Topics   int
	Records  int
	Duration time.Duration
}

// DiscoverySessionFailed mirrors p2panda's SessionFailed.
type DiscoverySessionFailed struct {
	Peer     peer.ID
	Role     Role
	Duration time.Duration
	Err      error
}

// TopicPeer says that Peer shares Topic with us (learned through private set
// intersection, so both sides had it). The node starts sync sessions with such peers.
// A pair is reported when a discovery session first finds it (again after it was lost);
// DiscoverySessionEnded plus Host.SharedTopics give the whole current set after every
// session.
type TopicPeer struct {
	Topic operation.Topic
	Peer  peer.ID
}

func (PeerConnected) isEvent()           {}
func (PeerDisconnected) isEvent()        {}
func (DiscoverySessionStarted) isEvent() {}
func (DiscoverySessionEnded) isEvent()   {}
func (DiscoverySessionFailed) isEvent()  {}
func (TopicPeer) isEvent()               {}

// eventBus fans events out to subscribers without ever blocking the network code: a
// subscriber that does not keep up loses events (counted and logged). Every discovery
// session ends with a DiscoverySessionEnded, after which Host.SharedTopics is current, so a
// subscriber that reconciles on it recovers lost TopicPeer events at the next walk.
type eventBus struct {
	log     *slog.Logger
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	closed  bool
	dropped atomic.Uint64
}

type subscriber struct {
	ch chan Event
}

const eventBuffer = 1024

func newEventBus(log *slog.Logger) *eventBus {
	return &eventBus{log: log, subs: make(map[*subscriber]struct{})}
}

func (b *eventBus) subscribe(ctx context.Context) <-chan Event {
	s := &subscriber{ch: make(chan Event, eventBuffer)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(s.ch)
		return s.ch
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() { b.unsubscribe(s) })
	return s.ch
}

func (b *eventBus) unsubscribe(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

func (b *eventBus) emit(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			if n := b.dropped.Add(1); n&(n-1) == 0 { // log at powers of two
				b.log.Warn("p2p event subscriber too slow, events dropped", "dropped_total", n)
			}
		}
	}
}

func (b *eventBus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
}
