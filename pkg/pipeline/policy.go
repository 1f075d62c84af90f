package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
	"github.com/pandanet/pandanet/pkg/store"
)

// DefaultRetentionInterval is how often topics with a retention age are checked.
const DefaultRetentionInterval = time.Minute

// SetPolicy installs topic's write policy (a zero policy removes it). It runs on the writer,
// between batches, so the usage it reads from the store is exact and every later operation
// is checked against it. It needs Config.Policy.
func (p *Pipeline) SetPolicy(ctx context.Context, topic operation.Topic, pol policy.Policy) error {
	enf := p.cfg.Policy
	if enf == nil {
		return fmt.Errorf("set policy: pipeline has no policy enforcer")
	}
	return p.onWriter(ctx, func() error { return enf.Set(ctx, topic, pol) })
}

// EnforceRetention applies the retention of every topic that has one, now, on the writer.
func (p *Pipeline) EnforceRetention(ctx context.Context) error {
	if p.cfg.Policy == nil {
		return nil
	}
	return p.onWriter(ctx, func() error { return p.retain(ctx, p.cfg.Policy.RetentionTopics(), time.Now()) })
}

// onWriter runs fn on the writer goroutine after everything queued before it is committed,
// and returns its error.
func (p *Pipeline) onWriter(ctx context.Context, fn func() error) error {
	if !p.enter() {
		return ErrClosed
	}
	req := &writeReq{maint: fn, done: make(chan error, 1)}
	select {
	case p.writeCh <- req:
		p.producers.Done()
	case <-ctx.Done():
		p.producers.Done()
		return ctx.Err()
	case <-p.closing:
		p.producers.Done()
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retain drops logs per the topics' retention (on the writer) and forgets our publish heads
// of dropped logs.
func (p *Pipeline) retain(ctx context.Context, topics []operation.Topic, now time.Time) error {
	for _, t := range topics {
		dropped, err := p.cfg.Policy.Retain(ctx, t, now)
		if err != nil {
			return err
		}
		if len(dropped) == 0 {
			continue
		}
		ts := p.topic(t)
		for _, d := range dropped {
			ts.forgetHead(d.Author)
		}
		p.stats.retiredLogs.Add(uint64(len(dropped)))
	}
	return nil
}

// retentionLoop checks retention ages periodically; size limits are also enforced right
// after the batch that crossed them.
func (p *Pipeline) retentionLoop() {
	defer p.background.Done()
	t := time.NewTicker(p.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-p.closing:
			return
		case <-t.C:
			if len(p.cfg.Policy.RetentionTopics()) == 0 {
				continue
			}
			// Bounded by the closing pipeline: onWriter gives up with ErrClosed.
			_ = p.EnforceRetention(context.Background())
		}
	}
}

// policyGate reserves quota for the batch's jobs and fails the refused ones. It returns the
// jobs to write.
func (w *writer) policyGate(jobs []*job) []*job {
	enf := w.p.cfg.Policy
	if enf == nil {
		return jobs
	}
	kept := jobs[:0]
	for _, j := range jobs {
		if err := enf.Reserve(j.topic, policy.CandidateOf(j.op)); err != nil {
			w.p.finish(j, Result{Status: Failed, Stage: StagePolicy, Err: err})
			continue
		}
		kept = append(kept, j)
	}
	clear(jobs[len(kept):])
	return kept
}

// policyAfterCommit returns the quota reserved for operations the store did not insert,
// brings usage up to date after the batch's prunes and enforces retention size limits the
// batch crossed.
func (w *writer) policyAfterCommit(jobs []*job, results []store.InsertResult) {
	enf := w.p.cfg.Policy
	if enf == nil {
		return
	}
	type ta struct {
		topic  operation.Topic
		author operation.PublicKey
	}
	var recount map[ta]struct{}
	var touched map[operation.Topic]struct{}
	for i, j := range jobs {
		if results[i].Outcome != store.Inserted {
			enf.Release(j.topic, policy.CandidateOf(j.op))
			continue
		}
		if touched == nil {
			touched = make(map[operation.Topic]struct{})
		}
		touched[j.topic] = struct{}{}
		if results[i].Pruned > 0 {
			if recount == nil {
				recount = make(map[ta]struct{})
			}
			recount[ta{j.topic, j.op.Author()}] = struct{}{}
		}
	}
	ctx := context.Background()
	for k := range recount {
		if err := enf.Recount(ctx, k.topic, k.author); err != nil {
			w.p.stats.policyErrors.Add(1)
		}
	}
	var over []operation.Topic
	for t := range touched {
		if enf.NeedsRetention(t) {
			over = append(over, t)
		}
	}
	if len(over) > 0 {
		if err := w.p.retain(ctx, over, time.Now()); err != nil {
			w.p.stats.policyErrors.Add(1)
		}
	}
}

// policyRelease returns the quota reserved for a job the store failed to write.
func (w *writer) policyRelease(j *job) {
	if enf := w.p.cfg.Policy; enf != nil {
		enf.Release(j.topic, policy.CandidateOf(j.op))
	}
}
