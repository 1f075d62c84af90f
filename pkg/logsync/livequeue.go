package logsync

import (
	stdsync "sync"

	"github.com/pandanet/pandanet/pkg/operation"
)

type liveOp struct {
	hash         operation.Hash
	header, body []byte
}

// liveQueue holds the locally stored operations waiting to be forwarded in live mode. It is
// bounded like a buffered channel but, unlike one, costs nothing while empty: a node
// following thousands of topics keeps one live session per topic and peer, most of them
// idle, and a 1,024-slot channel per session (80 KiB) was most of the memory such a node
// used. The backing slice grows with what is actually queued and is dropped again when a
// burst was larger than a few operations.
type liveQueue struct {
	mu    stdsync.Mutex
	ops   []liveOp
	limit int
	// ready has room for one signal: "the queue went from empty to non-empty".
	ready chan struct{}
}

func newLiveQueue(limit int) *liveQueue {
	return &liveQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// push appends op without blocking; it reports false when the queue is full.
func (q *liveQueue) push(op liveOp) bool {
	q.mu.Lock()
	if len(q.ops) >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.ops = append(q.ops, op)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns everything queued, reusing spare for the next pushes when it is
// small (so a steady trickle does not allocate, and a past burst does not pin memory).
func (q *liveQueue) take(spare []liveOp) []liveOp {
	clear(spare)
	if cap(spare) > 64 {
		spare = nil
	}
	q.mu.Lock()
	ops := q.ops
	q.ops = spare[:0]
	q.mu.Unlock()
	return ops
}

// len is the number of operations waiting.
func (q *liveQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ops)
}
