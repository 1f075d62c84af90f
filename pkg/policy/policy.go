// Package policy decides who may write to a topic on this node and how much it keeps:
//
//   - writers: the author keys allowed to write; an empty list lets anyone write.
//   - quotas: at most so many operations and bytes per author and per topic. They bound
//     what is stored, so an author prune (which deletes entries) frees quota again.
//   - retention: a maximum age and/or size per topic. Retention deletes whole logs, least
//     recently written first, so no log the node still serves ever has a hole. A dropped log
//     is remembered: its old entries are refused when peers offer them again, and its author
//     continues with a prune operation (which starts a log afresh).
//
// An Enforcer holds the policies and the usage they are checked against. Usage is read from
// the store once per topic when its policy is installed and maintained incrementally by the
// pipeline's writer afterwards, so checking an operation never scans the store.
package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// Quota bounds stored operations and their header plus body bytes. Zero means unlimited.
type Quota struct {
	MaxOps   uint64
	MaxBytes uint64
}

// IsZero reports whether the quota limits nothing.
func (q Quota) IsZero() bool { return q.MaxOps == 0 && q.MaxBytes == 0 }

// Retention bounds what a topic keeps. Zero fields mean unlimited.
type Retention struct {
	// MaxAge drops a log once its newest entry (by the author's timestamp) is older.
	MaxAge time.Duration
	// MaxBytes drops the least recently written logs while the topic stores more.
	MaxBytes uint64
}

// IsZero reports whether retention drops nothing.
func (r Retention) IsZero() bool { return r.MaxAge == 0 && r.MaxBytes == 0 }

// Policy is one topic's write policy. The zero Policy allows everything.
type Policy struct {
	// Writers are the authors allowed to write; empty means anyone.
	Writers []operation.PublicKey
	// PerAuthor bounds each author's stored operations in the topic.
	PerAuthor Quota
	// PerTopic bounds the topic's stored operations, all authors together.
	PerTopic  Quota
	Retention Retention
}

// IsZero reports whether the policy restricts nothing.
func (p Policy) IsZero() bool {
	return len(p.Writers) == 0 && p.PerAuthor.IsZero() && p.PerTopic.IsZero() && p.Retention.IsZero()
}

// Validate rejects policies that cannot be meant: a zero key among the writers, a negative
// retention age.
func (p Policy) Validate() error {
	for i, w := range p.Writers {
		if w == (operation.PublicKey{}) {
			return fmt.Errorf("policy: writer %d is the zero key", i)
		}
	}
	if p.Retention.MaxAge < 0 {
		return fmt.Errorf("policy: retention max age %s is negative", p.Retention.MaxAge)
	}
	return nil
}

// Reason says why an operation was refused. The values are metric labels and go on the
// wire in sync refusals.
type Reason string

const (
	// NotWriter: the author is not in the topic's writers list.
	NotWriter Reason = "not_writer"
	// OverQuota: storing the operation would exceed a per-author or per-topic quota.
	OverQuota Reason = "over_quota"
	// Retired: the operation belongs to a log that retention dropped.
	Retired Reason = "retention"
)

// Reasons lists every Reason, for metrics that pre-create their labels.
var Reasons = []Reason{NotWriter, OverQuota, Retired}

// ErrRefused is wrapped by every RefusedError.
var ErrRefused = errors.New("refused by topic policy")

// RefusedError is an operation the topic's policy refuses. Refusing is not an accusation:
// the operation may be valid, this node just does not take it.
type RefusedError struct {
	Reason Reason
	Topic  operation.Topic
	Author operation.PublicKey
	Log    operation.LogID
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused by topic policy (%s): author %s: %s", e.Reason, e.Author.Short(), e.Detail)
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

// ReasonOf returns the refusal reason of err, or "" if err is no refusal.
func ReasonOf(err error) Reason {
	var r *RefusedError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Report is a topic's policy with its current usage.
type Report struct {
	Topic   operation.Topic
	Policy  Policy
	Usage   store.Usage
	Authors map[operation.PublicKey]store.Usage
	// Refused counts operations refused since the policy was installed, by reason.
	Refused map[Reason]uint64
	// Retired counts logs retention dropped since the policy was installed.
	Retired uint64
}

// Enforcer holds the policies of a node's topics and the usage they are checked against.
// All methods are safe for concurrent use; the pipeline's writer is the only caller of
// Reserve, Release, Recount and Retain, which keeps reservations and commits in step.
type Enforcer struct {
	store *store.Store

	mu      sync.Mutex
	topics  map[operation.Topic]*topicState
	refused map[Reason]uint64 // all topics, since New
}

type topicState struct {
	policy  Policy
	writers map[operation.PublicKey]struct{}
	usage   store.Usage
	authors map[operation.PublicKey]store.Usage
	// retired maps an author whose log retention dropped to the highest dropped seq.
	retired      map[operation.PublicKey]uint64
	refused      map[Reason]uint64
	retiredCount uint64
}

// NewEnforcer returns an enforcer without policies, reading usage from st.
func NewEnforcer(st *store.Store) *Enforcer {
	return &Enforcer{store: st, topics: make(map[operation.Topic]*topicState), refused: make(map[Reason]uint64)}
}

// Set installs (or replaces) topic's policy. The first time, it reads the topic's usage and
// retired logs from the store, so it must not run concurrently with writes to the topic
// (the pipeline runs it on its writer). A zero policy removes the topic's policy.
func (e *Enforcer) Set(ctx context.Context, topic operation.Topic, p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.IsZero() {
		e.mu.Lock()
		delete(e.topics, topic)
		e.mu.Unlock()
		return nil
	}
	writers := make(map[operation.PublicKey]struct{}, len(p.Writers))
	for _, w := range p.Writers {
		writers[w] = struct{}{}
	}
	p.Writers = slices.Clone(p.Writers)
	e.mu.Lock()
	if ts := e.topics[topic]; ts != nil {
		ts.policy, ts.writers = p, writers
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	authors, err := e.store.AuthorUsage(ctx, topic)
	if err != nil {
		return fmt.Errorf("policy for %s: %w", topic, err)
	}
	retired, err := e.store.RetiredLogs(ctx, topic)
	if err != nil {
		return fmt.Errorf("policy for %s: %w", topic, err)
	}
	ts := &topicState{policy: p, writers: writers, authors: authors,
		retired: make(map[operation.PublicKey]uint64, len(retired)), refused: make(map[Reason]uint64)}
	for _, a := range authors {
		ts.usage = ts.usage.Add(a)
	}
	for _, r := range retired {
		ts.retired[r.Author] = r.Seq
	}
	e.mu.Lock()
	if old := e.topics[topic]; old != nil {
		old.policy, old.writers = p, writers
	} else {
		e.topics[topic] = ts
	}
	e.mu.Unlock()
	return nil
}

// Policy returns topic's policy, if it has one.
func (e *Enforcer) Policy(topic operation.Topic) (Policy, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.topics[topic]
	if ts == nil {
		return Policy{}, false
	}
	return ts.policy, true
}

// Candidate is what a check needs to know about an operation; a header suffices, so peers'
// operations can be refused before their signature is verified.
type Candidate struct {
	Author operation.PublicKey
	Log    operation.LogID
	Seq    uint64
	Prune  bool
	// Size is header plus body bytes.
	Size uint64
}

// CandidateOf describes a decoded operation.
func CandidateOf(op *operation.Operation) Candidate {
	return Candidate{Author: op.Author(), Log: op.LogID(), Seq: op.SeqNum(), Prune: op.Prune(),
		Size: uint64(len(op.HeaderBytes) + len(op.Body))}
}

// Check reports whether topic's policy would take c now, without reserving anything. A
// refusal is a *RefusedError and is counted.
func (e *Enforcer) Check(topic operation.Topic, c Candidate) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.topics[topic]
	if ts == nil {
		return nil
	}
	return e.checkLocked(topic, ts, c)
}

// Reserve checks c and, if it is taken, counts it as stored; the caller must Release it if
// the store does not insert it after all.
func (e *Enforcer) Reserve(topic operation.Topic, c Candidate) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.topics[topic]
	if ts == nil {
		return nil
	}
	if err := e.checkLocked(topic, ts, c); err != nil {
		return err
	}
	d := store.Usage{Ops: 1, Bytes: c.Size}
	ts.usage = ts.usage.Add(d)
	ts.authors[c.Author] = ts.authors[c.Author].Add(d)
	return nil
}

// Release undoes a Reserve whose operation was not stored.
func (e *Enforcer) Release(topic operation.Topic, c Candidate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.topics[topic]
	if ts == nil {
		return
	}
	d := store.Usage{Ops: 1, Bytes: c.Size}
	ts.usage = ts.usage.Sub(d)
	ts.authors[c.Author] = ts.authors[c.Author].Sub(d)
}

func (e *Enforcer) checkLocked(topic operation.Topic, ts *topicState, c Candidate) error {
	refuse := func(r Reason, format string, args ...any) error {
		ts.refused[r]++
		e.refused[r]++
		return &RefusedError{Reason: r, Topic: topic, Author: c.Author, Log: c.Log, Detail: fmt.Sprintf(format, args...)}
	}
	p := &ts.policy
	if len(ts.writers) > 0 {
		if _, ok := ts.writers[c.Author]; !ok {
			return refuse(NotWriter, "not among the topic's %d writers", len(ts.writers))
		}
	}
	au := ts.authors[c.Author]
	if dropped, ok := ts.retired[c.Author]; ok {
		if c.Seq <= dropped {
			return refuse(Retired, "seq %d: retention dropped this log up to seq %d", c.Seq, dropped)
		}
		if au.Ops == 0 && !c.Prune {
			return refuse(Retired, "seq %d follows entries retention dropped; continue the log with a prune operation", c.Seq)
		}
	}
	topicUse := ts.usage
	if c.Prune {
		// A prune operation deletes the author's earlier entries (the log is one per author
		// and topic): it is checked against what remains, so pruning frees quota even when
		// the author is at its limit.
		topicUse = topicUse.Sub(au)
		au = store.Usage{}
	}
	if q := p.PerAuthor; q.MaxOps > 0 && au.Ops+1 > q.MaxOps {
		return refuse(OverQuota, "author stores %d of %d operations allowed", au.Ops, q.MaxOps)
	}
	if q := p.PerAuthor; q.MaxBytes > 0 && au.Bytes+c.Size > q.MaxBytes {
		return refuse(OverQuota, "author stores %d bytes, %d more exceed the %d allowed", au.Bytes, c.Size, q.MaxBytes)
	}
	if q := p.PerTopic; q.MaxOps > 0 && topicUse.Ops+1 > q.MaxOps {
		return refuse(OverQuota, "topic stores %d of %d operations allowed", topicUse.Ops, q.MaxOps)
	}
	if q := p.PerTopic; q.MaxBytes > 0 && topicUse.Bytes+c.Size > q.MaxBytes {
		return refuse(OverQuota, "topic stores %d bytes, %d more exceed the %d allowed", topicUse.Bytes, c.Size, q.MaxBytes)
	}
	return nil
}

// Recount re-reads one author's usage from the store after entries were deleted by an
// author prune (the store reports how many entries, not how many bytes). The caller must
// have committed every operation it reserved for that author.
func (e *Enforcer) Recount(ctx context.Context, topic operation.Topic, author operation.PublicKey) error {
	e.mu.Lock()
	_, ok := e.topics[topic]
	e.mu.Unlock()
	if !ok {
		return nil
	}
	u, err := e.store.LogUsage(ctx, author, operation.LogIDFromTopic(topic))
	if err != nil {
		return fmt.Errorf("recount usage of %s: %w", author.Short(), err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ts := e.topics[topic]; ts != nil {
		ts.usage = ts.usage.Sub(ts.authors[author]).Add(u)
		ts.authors[author] = u
	}
	return nil
}

// NeedsRetention reports whether topic's size is over its retention limit.
func (e *Enforcer) NeedsRetention(topic operation.Topic) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.topics[topic]
	return ts != nil && ts.policy.Retention.MaxBytes > 0 && ts.usage.Bytes > ts.policy.Retention.MaxBytes
}

// RetentionTopics returns the topics with a retention limit.
func (e *Enforcer) RetentionTopics() []operation.Topic {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []operation.Topic
	for t, ts := range e.topics {
		if !ts.policy.Retention.IsZero() {
			out = append(out, t)
		}
	}
	return out
}

// Retain applies topic's retention at time now: logs whose newest entry is older than
// MaxAge go, then the least recently written logs while the topic is over MaxBytes. It must
// not run concurrently with writes to the topic (the pipeline runs it on its writer). It
// returns the logs it dropped.
func (e *Enforcer) Retain(ctx context.Context, topic operation.Topic, now time.Time) ([]store.RetiredLog, error) {
	e.mu.Lock()
	ts := e.topics[topic]
	if ts == nil || ts.policy.Retention.IsZero() {
		e.mu.Unlock()
		return nil, nil
	}
	r := ts.policy.Retention
	e.mu.Unlock()
	logs, err := e.store.LogsByAge(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("retention of %s: %w", topic, err)
	}
	var total uint64
	for _, l := range logs {
		total += l.Usage.Bytes
	}
	var cutoff uint64
	if r.MaxAge > 0 {
		if c := now.Add(-r.MaxAge).UnixMicro(); c > 0 {
			cutoff = uint64(c)
		}
	}
	var drop []store.RetiredLog
	var freed []store.Usage
	for _, l := range logs {
		tooOld := r.MaxAge > 0 && l.Newest < cutoff
		tooBig := r.MaxBytes > 0 && total > r.MaxBytes
		if !tooOld && !tooBig {
			break // sorted by age: every later log is newer
		}
		drop = append(drop, store.RetiredLog{Author: l.Author, Log: l.Log, Seq: l.Height})
		freed = append(freed, l.Usage)
		total -= l.Usage.Bytes
	}
	if len(drop) == 0 {
		return nil, nil
	}
	if err := e.store.RetireLogs(ctx, topic, drop); err != nil {
		return nil, fmt.Errorf("retention of %s: %w", topic, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ts := e.topics[topic]; ts != nil {
		for i, d := range drop {
			ts.usage = ts.usage.Sub(freed[i])
			delete(ts.authors, d.Author)
			if old, ok := ts.retired[d.Author]; !ok || d.Seq > old {
				ts.retired[d.Author] = d.Seq
			}
			ts.retiredCount++
		}
	}
	return drop, nil
}

// Report returns topic's policy and usage.
func (e *Enforcer) Report(topic operation.Topic) (Report, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.topics[topic]
	if ts == nil {
		return Report{}, false
	}
	r := Report{Topic: topic, Policy: ts.policy, Usage: ts.usage, Retired: ts.retiredCount,
		Authors: make(map[operation.PublicKey]store.Usage, len(ts.authors)), Refused: make(map[Reason]uint64, len(ts.refused))}
	r.Policy.Writers = slices.Clone(ts.policy.Writers)
	for a, u := range ts.authors {
		if u.Ops > 0 {
			r.Authors[a] = u
		}
	}
	for k, v := range ts.refused {
		r.Refused[k] = v
	}
	return r, true
}

// Refused returns the operations refused on all topics since NewEnforcer, by reason.
func (e *Enforcer) Refused() map[Reason]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[Reason]uint64, len(e.refused))
	for k, v := range e.refused {
		out[k] = v
	}
	return out
}
