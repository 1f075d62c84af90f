package main

import (
	"context"
	"sync"

	"github.com/pandanet/pandanet/pkg/node"
)

// Limits of one admin subscriber's queue of events not yet written to its client. Events
// carry message bodies of up to 1 MiB, so the queue is bounded by bytes as well as by count:
// a client that falls further behind is disconnected (it reconnects, and under the explicit
// ack policy every operation it did not acknowledge is replayed to it from the store).
const (
	subscriberQueueEvents = 256
	subscriberQueueBytes  = 8 << 20
)

// eventQueue is a subscriber's bounded FIFO of events.
type eventQueue struct {
	maxEvents, maxBytes int

	mu     sync.Mutex
	events []node.Event
	bytes  int
	closed bool
	ready  chan struct{} // signalled (capacity 1) when an event is pushed or the queue closes
}

func newEventQueue(maxEvents, maxBytes int) *eventQueue {
	return &eventQueue{maxEvents: maxEvents, maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

// eventBytes is what an event costs in the queue: its message plus a fixed overhead for the
// other fields.
func eventBytes(ev node.Event) int {
	if p, ok := ev.(node.Processed); ok {
		return len(p.Operation.Message) + 256
	}
	return 256
}

// push appends ev. It returns false (and does not queue ev) when the queue is closed or
// full; a full queue is closed by push, so its reader ends.
func (q *eventQueue) push(ev node.Event) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	size := eventBytes(ev)
	// An empty queue always takes one event, so a single large message never disconnects.
	if len(q.events) > 0 && (len(q.events) >= q.maxEvents || q.bytes+size > q.maxBytes) {
		q.closeLocked()
		return false
	}
	q.events = append(q.events, ev)
	q.bytes += size
	q.signal()
	return true
}

func (q *eventQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// close ends the queue; events already queued are dropped.
func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closeLocked()
}

func (q *eventQueue) closeLocked() {
	if !q.closed {
		q.closed = true
		q.events, q.bytes = nil, 0
		q.signal()
	}
}

// pop waits for the next event. ok is false once the queue is closed or ctx ends.
func (q *eventQueue) pop(ctx context.Context) (ev node.Event, ok bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		if len(q.events) > 0 {
			ev = q.events[0]
			q.events[0] = nil // release the message for the collector
			q.events = q.events[1:]
			q.bytes -= eventBytes(ev)
			q.mu.Unlock()
			return ev, true
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, false
		}
	}
}
