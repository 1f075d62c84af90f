package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// writer owns all store writes and the out-of-order buffers. It runs on one goroutine, so
// none of its state needs locking.
type writer struct {
	p       *Pipeline
	buffers map[operation.Topic]*orderBuffer
	// retry holds buffered jobs whose predecessor was just stored; they go first into the
	// next batch.
	retry []*job
	jobs  []*job
	acks  []store.Ack
	waits []chan error
}

func newWriter(p *Pipeline) *writer {
	return &writer{p: p, buffers: make(map[operation.Topic]*orderBuffer)}
}

func (w *writer) run() {
	defer close(w.p.writerEnd)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	open := true
	for open || len(w.retry) > 0 {
		w.jobs = append(w.jobs[:0], w.retry...)
		w.retry = w.retry[:0]
		if len(w.jobs) == 0 && open {
			// Idle: block for the first request (waking up to expire buffered operations).
			var req *writeReq
			if w.bufferedCount() > 0 {
				timer.Reset(time.Second)
				select {
				case req, open = <-w.p.writeCh:
				case <-timer.C:
				}
				timer.Stop()
			} else {
				req, open = <-w.p.writeCh
			}
			if req != nil {
				w.add(req)
			}
		}
		// Collect until the batch is full or FlushDelay passed.
		if open && len(w.jobs) < w.p.cfg.MaxBatch && (len(w.jobs) > 0 || len(w.waits) > 0) {
			timer.Reset(w.p.cfg.FlushDelay)
		collect:
			for len(w.jobs) < w.p.cfg.MaxBatch {
				select {
				case req, ok := <-w.p.writeCh:
					if !ok {
						open = false
						break collect
					}
					w.add(req)
				case <-timer.C:
					break collect
				}
			}
			timer.Stop()
		}
		w.expire(time.Now())
		if len(w.jobs) > 0 || len(w.waits) > 0 {
			w.flush()
		}
	}
	// Closed: whatever still waits for a predecessor will not get it from us any more.
	for _, b := range w.buffers {
		for _, j := range b.drain() {
			w.p.stats.buffered.Add(-1)
			w.p.finish(j, Result{Status: Failed, Stage: StageBuffer, Err: fmt.Errorf("%w: waiting for seq %d", ErrClosed, j.op.SeqNum()-1)})
		}
	}
}

func (w *writer) add(req *writeReq) {
	if req.job != nil {
		w.jobs = append(w.jobs, req.job)
		return
	}
	if req.maint != nil {
		// Everything queued before it is committed first.
		if len(w.jobs) > 0 || len(w.waits) > 0 {
			w.flush()
			w.jobs = w.jobs[:0]
		}
		req.done <- req.maint()
		return
	}
	w.acks = append(w.acks, req.acks...)
	w.waits = append(w.waits, req.done)
}

func (w *writer) bufferedCount() int64 { return w.p.stats.buffered.Load() }

// flush writes the current batch in one transaction and dispatches the results.
func (w *writer) flush() {
	// Within a batch, apply each log in seq order: parallel verification may have
	// reordered consecutive entries, which would otherwise bounce through the buffer.
	slices.SortStableFunc(w.jobs, func(a, b *job) int {
		if c := bytes.Compare(a.op.Header.PublicKey[:], b.op.Header.PublicKey[:]); c != 0 {
			return c
		}
		la, lb := a.op.LogID(), b.op.LogID()
		if c := bytes.Compare(la[:], lb[:]); c != 0 {
			return c
		}
		return cmpUint(a.op.SeqNum(), b.op.SeqNum())
	})
	w.jobs = w.policyGate(w.jobs)
	inserts := make([]store.Insert, len(w.jobs))
	for i, j := range w.jobs {
		inserts[i] = store.Insert{Topic: j.topic, Op: j.op}
	}
	// The write is never cancelled half-way: what was accepted gets committed, even while
	// the pipeline closes.
	results, err := w.p.store.Write(context.Background(), inserts, w.acks)
	for _, c := range w.waits {
		c <- err
	}
	w.acks, w.waits = w.acks[:0], w.waits[:0]
	w.p.stats.batches.Add(1)
	w.p.stats.batchedOps.Add(uint64(len(w.jobs)))
	if err != nil {
		for _, j := range w.jobs {
			w.policyRelease(j)
			w.p.finish(j, Result{Status: Failed, Stage: StageStore, Err: err})
		}
		clear(w.jobs)
		return
	}
	// Usage is brought up to date before any result is final, so whoever waits for a
	// result sees the usage that includes it.
	w.policyAfterCommit(w.jobs, results)
	for i, j := range w.jobs {
		res := results[i]
		switch res.Outcome {
		case store.Inserted:
			w.p.finish(j, Result{Status: Stored, Stage: StageStore, Pruned: res.Pruned})
			if b := w.buffers[j.topic]; b != nil {
				if j.op.Prune() {
					// Buffered entries below the new log start can never be applied.
					for _, old := range b.takeBelow(j.op.Author(), j.op.LogID(), j.op.SeqNum()) {
						w.p.stats.buffered.Add(-1)
						w.p.finish(old, Result{Status: Failed, Stage: StageBuffer, Err: &operation.ValidationError{
							Kind: operation.ErrSeqNum, Detail: fmt.Sprintf("seq %d was pruned", old.op.SeqNum())}})
					}
				}
				if next := b.takeNext(j.op); next != nil {
					w.p.stats.buffered.Add(-1)
					w.retry = append(w.retry, next)
				}
			}
		case store.AlreadyExists:
			w.p.finish(j, Result{Status: Duplicate, Stage: StageStore})
		case store.MissingBacklink:
			if j.local {
				// Cannot happen for our own publishes unless the store changed under us.
				w.p.finish(j, Result{Status: Failed, Stage: StageStore, Err: res.Err})
				continue
			}
			w.buffer(j, res.Err)
		default:
			w.p.finish(j, Result{Status: Failed, Stage: StageStore, Err: res.Err})
		}
	}
	clear(w.jobs)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// buffer parks a verified operation until its predecessor is stored.
func (w *writer) buffer(j *job, gapErr error) {
	b := w.buffers[j.topic]
	if b == nil {
		b = newOrderBuffer()
		w.buffers[j.topic] = b
	}
	switch existing := b.get(j.op); {
	case existing == nil:
	case existing.hash == j.hash:
		w.p.finish(j, Result{Status: Duplicate, Stage: StageBuffer})
		return
	default:
		w.p.finish(j, Result{Status: Failed, Stage: StageBuffer, Err: &operation.ValidationError{Kind: operation.ErrFork,
			Detail: fmt.Sprintf("seq %d conflicts with buffered %s", j.op.SeqNum(), existing.hash.Short())}})
		return
	}
	// Buffered operations no longer count against the topic's in-flight bound (the buffer
	// has its own), so a stuck log cannot block the topic.
	if j.hasSlot {
		j.hasSlot = false
		j.ts.release(j.cost)
	}
	j.buffered = time.Now()
	b.put(j)
	w.p.stats.buffered.Add(1)
	for b.len() > w.p.cfg.BufferOps || b.bytes > w.p.cfg.BufferBytes {
		old := b.popOldest()
		w.p.stats.buffered.Add(-1)
		w.p.finish(old, Result{Status: Failed, Stage: StageBuffer, Err: fmt.Errorf("%w (topic %s): dropped seq %d of %s: %w",
			ErrBufferFull, j.topic, old.op.SeqNum(), old.op.Author().Short(), gapErr)})
	}
}

func (w *writer) expire(now time.Time) {
	if w.bufferedCount() == 0 {
		return
	}
	for t, b := range w.buffers {
		for {
			old := b.oldest()
			if old == nil || now.Sub(old.buffered) < w.p.cfg.BufferTTL {
				break
			}
			b.popOldest()
			w.p.stats.buffered.Add(-1)
			w.p.finish(old, Result{Status: Failed, Stage: StageBuffer, Err: fmt.Errorf("%w: seq %d of %s",
				ErrBufferExpired, old.op.SeqNum(), old.op.Author().Short())})
		}
		if b.len() == 0 {
			delete(w.buffers, t)
		}
	}
}

// --- out-of-order buffer ---------------------------------------------------------------

type logKey struct {
	author operation.PublicKey
	log    operation.LogID
}

// orderBuffer holds one topic's out-of-order operations, indexed by (author, log, seq) and
// in arrival order for eviction.
type orderBuffer struct {
	byLog map[logKey]map[uint64]*job
	order []*job // arrival order; entries removed from byLog are skipped lazily
	count int
	bytes int
}

func newOrderBuffer() *orderBuffer { return &orderBuffer{byLog: make(map[logKey]map[uint64]*job)} }

func keyOf(op *operation.Operation) logKey { return logKey{op.Author(), op.LogID()} }

func (b *orderBuffer) len() int { return b.count }

func (b *orderBuffer) get(op *operation.Operation) *job { return b.byLog[keyOf(op)][op.SeqNum()] }

func (b *orderBuffer) put(j *job) {
	k := keyOf(j.op)
	m := b.byLog[k]
	if m == nil {
		m = make(map[uint64]*job)
		b.byLog[k] = m
	}
	m[j.op.SeqNum()] = j
	if len(b.order) > 2*b.count+64 {
		// Drop entries taken out of the middle (takeNext) so order stays proportional to
		// what is actually buffered.
		b.order = slices.DeleteFunc(b.order, func(o *job) bool { return b.byLog[keyOf(o.op)][o.op.SeqNum()] != o })
	}
	b.order = append(b.order, j)
	b.count++
	b.bytes += j.size()
}

func (b *orderBuffer) remove(j *job) bool {
	k := keyOf(j.op)
	m := b.byLog[k]
	if m[j.op.SeqNum()] != j {
		return false
	}
	delete(m, j.op.SeqNum())
	if len(m) == 0 {
		delete(b.byLog, k)
	}
	b.count--
	b.bytes -= j.size()
	return true
}

// takeNext removes and returns the buffered successor of a just stored operation.
func (b *orderBuffer) takeNext(stored *operation.Operation) *job {
	j := b.byLog[keyOf(stored)][stored.SeqNum()+1]
	if j == nil || !b.remove(j) {
		return nil
	}
	return j
}

// takeBelow removes and returns the log's buffered operations with seq < seq.
func (b *orderBuffer) takeBelow(author operation.PublicKey, log operation.LogID, seq uint64) []*job {
	var out []*job
	for s, j := range b.byLog[logKey{author, log}] {
		if s < seq {
			out = append(out, j)
		}
	}
	for _, j := range out {
		b.remove(j)
	}
	return out
}

func (b *orderBuffer) oldest() *job {
	for len(b.order) > 0 {
		j := b.order[0]
		if b.byLog[keyOf(j.op)][j.op.SeqNum()] == j {
			return j
		}
		b.order[0] = nil
		b.order = b.order[1:]
	}
	return nil
}

func (b *orderBuffer) popOldest() *job {
	j := b.oldest()
	if j != nil {
		b.remove(j)
	}
	return j
}

func (b *orderBuffer) drain() []*job {
	var out []*job
	for j := b.popOldest(); j != nil; j = b.popOldest() {
		out = append(out, j)
	}
	return out
}
