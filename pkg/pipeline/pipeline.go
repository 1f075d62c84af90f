// Package pipeline turns raw operations into stored, delivered operations:
// validate → store → prune → deliver.
//
//   - validate: header decoding, strict Ed25519 verification and payload checks run on a
//     pool of GOMAXPROCS workers (verification is ~90% of the CPU cost of an operation).
//     An operation that fails here never reaches a later stage: nothing is stored, pruned,
//     acknowledged or forwarded for it.
//   - store + prune: one writer goroutine owns all writes. It batches verified operations of
//     all topics (up to MaxBatch, or FlushDelay after the first one) into a single store
//     transaction, in which pruning happens too, and acknowledgements ride along.
//   - ordering: per (author, log) operations are applied in seq order. An operation whose
//     predecessor is missing is held (already verified) in a bounded per-topic buffer and
//     retried as soon as the missing entry is stored.
//   - deliver: results are handed to Config.Deliver on one goroutine per topic, in commit
//     order. A topic whose consumer is slow only holds back that topic: each topic has its
//     own budget of bytes in flight (TopicInflightBytes), which is where backpressure
//     reaches producers. It is counted in bytes so that it bounds memory whatever the
//     operations' size, and it is large enough for thousands of small operations, so the
//     verifiers keep working while the writer waits for a commit's fsync.
//
// Local publishes are signed here (Publish) and go through the same writer, serialized per
// topic so two concurrent publishes can never fork the author's log.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
	"github.com/pandanet/pandanet/pkg/store"
)

// Errors reported by the pipeline itself (operation errors come from pkg/operation).
var (
	// ErrClosed: the pipeline was closed before the operation was processed.
	ErrClosed = errors.New("pipeline closed")
	// ErrBufferFull: an out-of-order operation was dropped because its topic's buffer was
	// full; it will have to be synced again.
	ErrBufferFull = errors.New("out-of-order buffer full")
	// ErrBufferExpired: an out-of-order operation waited longer than BufferTTL for its
	// predecessor.
	ErrBufferExpired = errors.New("out-of-order operation expired before its predecessor arrived")
)

// Config configures a pipeline. Only Store is required.
type Config struct {
	Store *store.Store
	// Limits bound what is accepted from remote sources.
	Limits operation.Limits
	// Workers verifying signatures; default GOMAXPROCS.
	Workers int
	// MaxBatch is the most operations written per transaction; default 1000.
	MaxBatch int
	// FlushDelay is how long the writer waits for more operations after the first one of a
	// batch; default 1ms. Under load batches fill up while the previous commit runs anyway.
	FlushDelay time.Duration
	// TopicInflightBytes bounds the memory of one topic's operations submitted but not yet
	// delivered: each counts its header and body plus InflightOverhead. Submit and Publish
	// block while it is used up (backpressure, first come first served). An operation
	// larger than the whole budget waits until nothing else of its topic is in flight.
	// Default DefaultTopicInflightBytes.
	TopicInflightBytes int64
	// BufferOps and BufferBytes bound each topic's out-of-order buffer (defaults 1024 and
	// 16 MiB); BufferTTL bounds how long an operation waits there (default 30s).
	BufferOps   int
	BufferBytes int
	BufferTTL   time.Duration
	// Deliver receives every result, on one goroutine per topic, in the order the results
	// became final. It may block (that topic's backpressure); it must not call back into
	// the pipeline in a way that waits for the same topic's deliveries.
	Deliver func(Result)
	// Observe, if set, is called synchronously for every result as soon as it is final
	// (before delivery), from pipeline goroutines. Meant for metrics; must be fast.
	Observe func(Result)
	// Policy, if set, enforces per-topic write policies (see SetPolicy): the writer checks
	// every operation, remote or published, against it right before storing, and applies
	// retention. Refused operations fail at StagePolicy with a *policy.RefusedError.
	Policy *policy.Enforcer
	// RetentionInterval is how often retention ages are checked (default 1m).
	RetentionInterval time.Duration
}

// Status is the final state of one operation.
type Status uint8

const (
	// Stored: the operation was validated and is now stored (and its log pruned if it
	// carried the prune flag).
	Stored Status = iota + 1
	// Duplicate: the operation was stored already; nothing changed.
	Duplicate
	// Failed: the operation was rejected (Err says why) or could not be processed.
	Failed
)

func (s Status) String() string {
	switch s {
	case Stored:
		return "stored"
	case Duplicate:
		return "duplicate"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Stage names where a result was decided.
type Stage uint8

const (
	StageValidate Stage = iota + 1
	StageStore
	StageBuffer
	// StagePolicy: the topic's write policy refused the operation.
	StagePolicy
)

func (s Stage) String() string {
	switch s {
	case StageValidate:
		return "validate"
	case StageStore:
		return "store"
	case StageBuffer:
		return "buffer"
	case StagePolicy:
		return "policy"
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// DefaultTopicInflightBytes lets ~3,800 operations of 1 KiB, or 8 of 1 MiB, be in flight per
// topic. A catch-up needs a few thousand small ones: while the writer commits one batch
// the verifiers must have the next ones to work on, or both cores wait for the fsync. With
// a bound of 256 operations they did (1.3-1.6 of 2 cores busy, ~85 operations per commit);
// counting operations also let 256 large ones take 256 MiB.
const DefaultTopicInflightBytes = 8 << 20

// InflightOverhead is what an operation in flight costs besides its bytes (the job, its
// ticket, the decoded header, the result), as TopicInflightBytes counts it.
const InflightOverhead = 1 << 10

// inflightCost is what an operation of these sizes counts against its topic's budget.
func inflightCost(header, body int) int64 { return int64(header + body + InflightOverhead) }

// Input is a raw operation from any source. The pipeline reads Header and Body after Submit
// returns, so the caller must leave them alone until the result arrives.
type Input struct {
	Topic  operation.Topic
	Header []byte
	Body   []byte
	// Owned hands Header and Body over for good: nothing will change them again (a freshly
	// decoded network frame), so the decoded operation keeps them instead of copying them.
	// Leave it false for buffers the caller may reuse.
	Owned bool
	// Source is opaque to the pipeline and returned in the Result.
	Source any
}

// Result is the outcome for one operation.
type Result struct {
	Topic operation.Topic
	Hash  operation.Hash
	// Op is the decoded operation; nil if decoding failed.
	Op     *operation.Operation
	Status Status
	Stage  Stage
	// Err wraps an operation.Err* sentinel for invalid operations (use operation.Reason
	// for a metrics label), or ErrBufferFull/ErrBufferExpired/ErrClosed or a store error.
	Err error
	// Pruned counts the log entries deleted by this operation's prune flag.
	Pruned int64
	Source any
	// Local is true for operations created by Publish.
	Local bool
	// Latency is the time from submission to the result becoming final.
	Latency time.Duration
}

// Ticket follows one submitted operation.
type Ticket struct {
	hash      operation.Hash
	done      chan struct{}
	delivered chan struct{}
	res       Result
}

func newTicket(h operation.Hash) *Ticket {
	return &Ticket{hash: h, done: make(chan struct{}), delivered: make(chan struct{})}
}

// Hash is the operation id (BLAKE3 of the header bytes), known before validation.
func (t *Ticket) Hash() operation.Hash { return t.hash }

// Done is closed when the result is final: stored (committed to disk), duplicate or failed.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Delivered is closed after Config.Deliver returned for this operation's result.
func (t *Ticket) Delivered() <-chan struct{} { return t.delivered }

// Result returns the final result; only valid after Done is closed.
func (t *Ticket) Result() Result { return t.res }

// Wait blocks until the result is final and returns it, with Err as the error.
func (t *Ticket) Wait(ctx context.Context) (Result, error) {
	select {
	case <-t.done:
		return t.res, t.res.Err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Pipeline is the validate → store → prune → deliver pipeline. Create with New, stop with
// Close.
type Pipeline struct {
	cfg   Config
	store *store.Store

	verifyCh chan *job
	// orderCh carries the same jobs in submission order: verification runs in parallel,
	// but the sequencer hands jobs to the writer in the order they were submitted, so a log
	// sent in order (as sync does) reaches the writer in order and never needs the
	// out-of-order buffer.
	orderCh chan *job
	seqEnd  chan struct{}
	writeCh chan *writeReq

	mu      sync.RWMutex // guards closed; producers hold RLock while registering
	closed  bool
	closing chan struct{}
	// closingCtx ends with closing, for waits that take a context (the in-flight budget).
	closingCtx    context.Context
	cancelClosing context.CancelFunc
	producers     sync.WaitGroup
	workers       sync.WaitGroup
	writerEnd     chan struct{}
	delivery      sync.WaitGroup
	// background runs the retention ticker.
	background sync.WaitGroup

	topicsMu sync.Mutex
	topics   map[operation.Topic]*topicState

	stats stats
}

type job struct {
	topic  operation.Topic
	ts     *topicState
	header []byte
	body   []byte
	owned  bool // header and body are ours to keep (Input.Owned)
	hash   operation.Hash
	op     *operation.Operation
	source any
	local  bool
	start  time.Time
	ticket *Ticket
	// cost is what the job holds of its topic's in-flight budget while hasSlot.
	cost    int64
	hasSlot bool
	// buffered is when the job entered the out-of-order buffer.
	buffered time.Time
	// verified is closed once verification finished (verr says how) or Submit gave up on
	// the job (canceled); only then may the sequencer look at it.
	verified chan struct{}
	verr     error
	canceled bool
}

func (j *job) size() int { return len(j.header) + len(j.body) }

type writeReq struct {
	job  *job
	acks []store.Ack
	// maint runs on the writer between batches (policy changes, retention).
	maint func() error
	done  chan error // for acks and maint; buffered(1)
}

// New starts a pipeline.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Store == nil {
		return nil, errors.New("pipeline: Store is required")
	}
	if cfg.Limits.MaxPayloadSize == 0 {
		cfg.Limits = operation.DefaultLimits
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = time.Millisecond
	}
	if cfg.TopicInflightBytes <= 0 {
		cfg.TopicInflightBytes = DefaultTopicInflightBytes
	}
	if cfg.BufferOps <= 0 {
		cfg.BufferOps = 1024
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = 16 << 20
	}
	if cfg.BufferTTL <= 0 {
		cfg.BufferTTL = 30 * time.Second
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = DefaultRetentionInterval
	}
	if cfg.Deliver == nil {
		cfg.Deliver = func(Result) {}
	}
	p := &Pipeline{
		cfg:       cfg,
		store:     cfg.Store,
		verifyCh:  make(chan *job, 4*cfg.Workers),
		orderCh:   make(chan *job, 2*cfg.MaxBatch),
		seqEnd:    make(chan struct{}),
		writeCh:   make(chan *writeReq, 2*cfg.MaxBatch),
		closing:   make(chan struct{}),
		writerEnd: make(chan struct{}),
		topics:    make(map[operation.Topic]*topicState),
	}
	p.closingCtx, p.cancelClosing = context.WithCancel(context.Background())
	p.stats.rejected = make(map[string]uint64)
	for range cfg.Workers {
		p.workers.Add(1)
		go p.verifyLoop()
	}
	go p.sequenceLoop()
	w := newWriter(p)
	go w.run()
	if cfg.Policy != nil {
		p.background.Add(1)
		go p.retentionLoop()
	}
	return p, nil
}

// Close stops accepting operations, processes everything already accepted (the writer
// flushes its last batch), fails operations still waiting in out-of-order buffers with
// ErrClosed, waits for all deliveries and returns. Deliver must not block forever.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	p.cancelClosing()
	p.mu.Unlock()
	p.producers.Wait()
	p.background.Wait()
	close(p.orderCh)
	close(p.verifyCh)
	p.workers.Wait()
	<-p.seqEnd
	close(p.writeCh)
	<-p.writerEnd
	p.delivery.Wait()
	return nil
}

// enter registers a producer; it fails once Close started.
func (p *Pipeline) enter() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	p.producers.Add(1)
	return true
}

// Submit validates and stores a raw operation from a remote or external source. It blocks
// while the topic has TopicInflight operations in flight or the verifier queue is full
// (backpressure) and returns a Ticket once the operation is queued. The result, including
// validation failures, arrives through the Ticket and Config.Deliver.
func (p *Pipeline) Submit(ctx context.Context, in Input) (*Ticket, error) {
	if !p.enter() {
		return nil, ErrClosed
	}
	defer p.producers.Done()
	ts := p.topic(in.Topic)
	cost := inflightCost(len(in.Header), len(in.Body))
	if err := ts.acquire(ctx, p, cost); err != nil {
		return nil, err
	}
	j := &job{topic: in.Topic, ts: ts, header: in.Header, body: in.Body, owned: in.Owned, hash: operation.HashOf(in.Header),
		source: in.Source, start: time.Now(), cost: cost, hasSlot: true}
	j.ticket = newTicket(j.hash)
	j.verified = make(chan struct{})
	select {
	case p.orderCh <- j:
	case <-ctx.Done():
		ts.release(cost)
		return nil, ctx.Err()
	case <-p.closing:
		ts.release(cost)
		return nil, ErrClosed
	}
	var err error
	select {
	case p.verifyCh <- j:
		p.stats.submitted.Add(1)
		return j.ticket, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-p.closing:
		err = ErrClosed
	}
	// Already queued for the sequencer: tell it to skip the job.
	j.canceled, j.hasSlot = true, false
	ts.release(cost)
	close(j.verified)
	return nil, err
}

// sequenceLoop forwards verified jobs to the writer in submission order.
func (p *Pipeline) sequenceLoop() {
	defer close(p.seqEnd)
	for j := range p.orderCh {
		<-j.verified
		switch {
		case j.canceled:
		case j.verr != nil:
			p.finish(j, Result{Status: Failed, Stage: StageValidate, Err: j.verr, Op: nil})
		default:
			p.writeCh <- &writeReq{job: j}
		}
	}
}

// PublishRequest describes a local operation to create.
type PublishRequest struct {
	Topic operation.Topic
	Key   operation.PrivateKey
	// Body is the message; nil for a system-only operation.
	Body []byte
	// Prune sets the prune flag: once stored, all earlier entries of the author's log for
	// this topic are deleted.
	Prune  bool
	Source any
}

// Publish creates, signs and stores a new operation at the head of the key's log for the
// topic. The next seq and backlink come from the last operation this pipeline published for
// that log, or from the store the first time; publishes to one topic are serialized so they
// never fork. The returned Ticket's Hash is the new operation's id.
func (p *Pipeline) Publish(ctx context.Context, req PublishRequest) (*Ticket, error) {
	if uint64(len(req.Body)) > p.cfg.Limits.MaxPayloadSize {
		return nil, &operation.ValidationError{Kind: operation.ErrTooLarge,
			Detail: fmt.Sprintf("message is %d bytes, at most %d allowed", len(req.Body), p.cfg.Limits.MaxPayloadSize)}
	}
	if !p.enter() {
		return nil, ErrClosed
	}
	defer p.producers.Done()
	ts := p.topic(req.Topic)
	cost := inflightCost(operation.MaxHeaderSize, len(req.Body)) // the header is not made yet
	if err := ts.acquire(ctx, p, cost); err != nil {
		return nil, err
	}
	ts.pubMu.Lock()
	defer ts.pubMu.Unlock()
	author, logID := req.Key.PublicKey(), operation.LogIDFromTopic(req.Topic)
	d := operation.Draft{LogID: logID, Prune: req.Prune, Body: req.Body}
	head, ok := ts.head(author)
	if !ok {
		latest, err := p.store.Latest(ctx, author, logID)
		if err != nil {
			ts.release(cost)
			return nil, fmt.Errorf("publish: %w", err)
		}
		if latest != nil {
			head, ok = headOf(latest), true
		}
	}
	if ok {
		d.SeqNum, d.Backlink = head.seq+1, head.hash
	}
	op, err := operation.Sign(req.Key, d)
	if err != nil {
		ts.release(cost)
		return nil, fmt.Errorf("publish: %w", err)
	}
	j := &job{topic: req.Topic, ts: ts, header: op.HeaderBytes, body: op.Body, hash: op.Hash, op: op,
		source: req.Source, local: true, start: time.Now(), cost: cost, hasSlot: true}
	j.ticket = newTicket(op.Hash)
	p.stats.submitted.Add(1)
	select {
	case p.writeCh <- &writeReq{job: j}:
		ts.setHead(author, headOf(op))
		return j.ticket, nil
	case <-ctx.Done():
		ts.release(cost)
		return nil, ctx.Err()
	case <-p.closing:
		ts.release(cost)
		return nil, ErrClosed
	}
}

// Ack raises ack cursors through the writer, batched with the next transaction. With wait,
// it returns once the acks are committed; otherwise as soon as they are queued.
func (p *Pipeline) Ack(ctx context.Context, acks []store.Ack, wait bool) error {
	if len(acks) == 0 && !wait {
		return nil
	}
	if !p.enter() {
		return ErrClosed
	}
	req := &writeReq{acks: acks, done: make(chan error, 1)}
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
	if !wait {
		return nil
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush returns once every operation and ack queued for the writer before the call is
// committed (a barrier: the writer handles requests in order).
func (p *Pipeline) Flush(ctx context.Context) error { return p.Ack(ctx, nil, true) }

func (p *Pipeline) verifyLoop() {
	defer p.workers.Done()
	jobs := make([]*job, 0, verifyBatch)
	items := make([]operation.Encoded, 0, verifyBatch)
	for j := range p.verifyCh {
		// Take a few more if they are waiting, about this worker's share of the queue:
		// verified together they share one field inversion (operation.DecodeBatch).
		jobs = append(jobs[:0], j)
		want := min(verifyBatch, 1+len(p.verifyCh)/p.cfg.Workers)
	more:
		for len(jobs) < want {
			select {
			case next, ok := <-p.verifyCh:
				if !ok {
					break more
				}
				jobs = append(jobs, next)
			default:
				break more
			}
		}
		items = items[:0]
		for _, j := range jobs {
			items = append(items, operation.Encoded{Header: j.header, Body: j.body, Owned: j.owned})
		}
		p.cfg.Limits.DecodeBatch(items)
		for i, j := range jobs {
			op, err := items[i].Op, items[i].Err
			if err == nil {
				err = checkTopic(op, j.topic)
			}
			if err != nil {
				j.verr = err
			} else {
				j.op = op
				// Keep the decoded operation's copies; drop the caller's buffers.
				j.header, j.body = op.HeaderBytes, op.Body
			}
			close(j.verified)
		}
		clear(items) // drop the references until the next batch
	}
}

// verifyBatch is the most operations a verifier decodes at once.
const verifyBatch = 8

// checkTopic enforces the Node's rules beyond p2panda-core: Node extensions are present and
// the log id is the topic's.
func checkTopic(op *operation.Operation, topic operation.Topic) error {
	if op.Header.Extensions == nil {
		return &operation.ValidationError{Kind: operation.ErrMissingExtensions, Detail: op.Hash.Short()}
	}
	if want := operation.LogIDFromTopic(topic); op.LogID() != want {
		return &operation.ValidationError{Kind: operation.ErrLogIDMismatch,
			Detail: fmt.Sprintf("log id %s, topic's is %s", op.LogID().Short(), want.Short())}
	}
	return nil
}

// finish makes a job's result final: observe, resolve the ticket, queue delivery.
func (p *Pipeline) finish(j *job, r Result) {
	r.Topic, r.Hash, r.Source, r.Local = j.topic, j.hash, j.source, j.local
	if r.Op == nil {
		r.Op = j.op
	}
	r.Latency = time.Since(j.start)
	p.stats.record(r)
	if p.cfg.Observe != nil {
		p.cfg.Observe(r)
	}
	if r.Status == Failed && j.local && r.Op != nil {
		// Our own head is unknown now; re-read it from the store on the next publish.
		j.ts.forgetHead(r.Op.Author())
	}
	j.ticket.res = r
	close(j.ticket.done)
	j.ts.enqueue(p, j, r)
}

// --- per-topic state -------------------------------------------------------------------

type head struct {
	seq  uint64
	hash operation.Hash
}

func headOf(op *operation.Operation) head { return head{seq: op.SeqNum(), hash: op.Hash} }

type topicState struct {
	topic    operation.Topic
	inflight *semaphore.Weighted // the topic's in-flight budget, in bytes (TopicInflightBytes)
	budget   int64

	pubMu   sync.Mutex // serializes Publish per topic
	headsMu sync.Mutex
	heads   map[operation.PublicKey]head

	qMu      sync.Mutex
	queue    []delivery
	draining bool
}

type delivery struct {
	j *job
	r Result
}

func (p *Pipeline) topic(t operation.Topic) *topicState {
	p.topicsMu.Lock()
	defer p.topicsMu.Unlock()
	ts := p.topics[t]
	if ts == nil {
		ts = &topicState{topic: t, inflight: semaphore.NewWeighted(p.cfg.TopicInflightBytes), budget: p.cfg.TopicInflightBytes,
			heads: make(map[operation.PublicKey]head)}
		p.topics[t] = ts
	}
	return ts
}

// acquire takes cost bytes of the topic's in-flight budget (at most the whole budget),
// waiting while they are in use; it gives up when ctx ends or the pipeline closes.
func (ts *topicState) acquire(ctx context.Context, p *Pipeline, cost int64) error {
	cost = min(cost, ts.budget)
	if ts.inflight.TryAcquire(cost) {
		return nil // the common case, without the allocations of waiting
	}
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closingCtx, cancel)
	defer stop()
	if err := ts.inflight.Acquire(wait, cost); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return ErrClosed
	}
	return nil
}

// release gives back what acquire took for cost.
func (ts *topicState) release(cost int64) {
	ts.inflight.Release(min(cost, ts.budget))
}

func (ts *topicState) head(author operation.PublicKey) (head, bool) {
	ts.headsMu.Lock()
	defer ts.headsMu.Unlock()
	h, ok := ts.heads[author]
	return h, ok
}

func (ts *topicState) setHead(author operation.PublicKey, h head) {
	ts.headsMu.Lock()
	ts.heads[author] = h
	ts.headsMu.Unlock()
}

func (ts *topicState) forgetHead(author operation.PublicKey) {
	ts.headsMu.Lock()
	delete(ts.heads, author)
	ts.headsMu.Unlock()
}

// enqueue appends a result to the topic's delivery queue and starts the topic's delivery
// goroutine if it is not running. The goroutine exits when the queue is empty, so idle
// topics cost nothing.
func (ts *topicState) enqueue(p *Pipeline, j *job, r Result) {
	ts.qMu.Lock()
	ts.queue = append(ts.queue, delivery{j, r})
	start := !ts.draining
	if start {
		ts.draining = true
		p.delivery.Add(1)
	}
	ts.qMu.Unlock()
	if start {
		go ts.drain(p)
	}
}

// drain delivers the queue in order. It takes the whole queue at once and gives the queue
// an emptied earlier one in exchange, so a busy topic reuses two slices instead of growing
// a new one for every result.
func (ts *topicState) drain(p *Pipeline) {
	defer p.delivery.Done()
	var batch []delivery
	for {
		ts.qMu.Lock()
		if len(ts.queue) == 0 {
			ts.draining = false
			ts.queue = nil
			ts.qMu.Unlock()
			return
		}
		batch, ts.queue = ts.queue, batch[:0]
		ts.qMu.Unlock()
		for i := range batch {
			d := &batch[i]
			p.cfg.Deliver(d.r)
			close(d.j.ticket.delivered)
			if d.j.hasSlot {
				d.j.hasSlot = false
				ts.release(d.j.cost)
			}
			*d = delivery{} // the result can go as soon as it is delivered
		}
	}
}

// --- statistics ------------------------------------------------------------------------

// Stats is a snapshot of pipeline counters since New.
type Stats struct {
	Submitted  uint64
	Stored     uint64
	Duplicates uint64
	Failed     uint64
	// Rejected counts failures by operation.Reason (plus "buffer_full", "buffer_expired",
	// "closed" and "other" for non-validation failures).
	Rejected map[string]uint64
	Pruned   uint64
	// Buffered is the number of operations currently waiting for a predecessor.
	Buffered int64
	// RetiredLogs counts logs retention dropped; PolicyErrors counts store failures while
	// recounting usage or applying retention (they are retried with the next batch).
	RetiredLogs  uint64
	PolicyErrors uint64
	Batches      uint64
	// BatchedOps / Batches is the mean batch size.
	BatchedOps uint64
}

type stats struct {
	submitted, stored, duplicates, failed, pruned, batches, batchedOps atomic.Uint64
	buffered                                                           atomic.Int64
	retiredLogs, policyErrors                                          atomic.Uint64
	mu                                                                 sync.Mutex
	rejected                                                           map[string]uint64
}

func (s *stats) record(r Result) {
	switch r.Status {
	case Stored:
		s.stored.Add(1)
		s.pruned.Add(uint64(r.Pruned))
	case Duplicate:
		s.duplicates.Add(1)
	case Failed:
		s.failed.Add(1)
		s.mu.Lock()
		s.rejected[FailureReason(r.Err)]++
		s.mu.Unlock()
	}
}

// FailureReason is operation.Reason extended with the pipeline's own failures.
func FailureReason(err error) string {
	switch {
	case errors.Is(err, ErrBufferFull):
		return "buffer_full"
	case errors.Is(err, ErrBufferExpired):
		return "buffer_expired"
	case errors.Is(err, ErrClosed):
		return "closed"
	}
	if r := policy.ReasonOf(err); r != "" {
		return "policy_" + string(r)
	}
	return operation.Reason(err)
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{
		Submitted: p.stats.submitted.Load(), Stored: p.stats.stored.Load(), Duplicates: p.stats.duplicates.Load(),
		Failed: p.stats.failed.Load(), Pruned: p.stats.pruned.Load(), Buffered: p.stats.buffered.Load(),
		Batches: p.stats.batches.Load(), BatchedOps: p.stats.batchedOps.Load(), Rejected: map[string]uint64{},
		RetiredLogs: p.stats.retiredLogs.Load(), PolicyErrors: p.stats.policyErrors.Load(),
	}
	p.stats.mu.Lock()
	for k, v := range p.stats.rejected {
		s.Rejected[k] = v
	}
	p.stats.mu.Unlock()
	return s
}

// --- liveness ----------------------------------------------------------------------------

// probePoll is how often Probe looks for a committed batch while its barrier waits.
const probePoll = 50 * time.Millisecond

// Probe reports whether the writer still makes progress (a liveness check). It queues a
// barrier (Flush) and returns nil as soon as the writer answers it, or, while the barrier
// waits behind a backlog, as soon as the writer finishes any batch: a busy writer is alive.
// A store error answering the barrier (a full disk) counts as an answer: restarting would
// not help, readiness reports it. Otherwise it returns an error once ctx ends, so the
// caller's deadline is the bound on "hung".
func (p *Pipeline) Probe(ctx context.Context) error {
	before := p.stats.batches.Load()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Flush(fctx) }()
	tick := time.NewTicker(probePoll)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			switch {
			case err == nil:
				return nil
			case errors.Is(err, ErrClosed):
				return ErrClosed
			case ctx.Err() != nil: // the barrier gave up waiting
				return p.hung(ctx)
			default: // the writer answered, with a store error
				return nil
			}
		case <-tick.C:
			if p.stats.batches.Load() != before {
				return nil
			}
		case <-ctx.Done():
			return p.hung(ctx)
		}
	}
}

func (p *Pipeline) hung(ctx context.Context) error {
	return fmt.Errorf("store writer hung: it neither answered a barrier nor finished a batch (%d batches so far): %w",
		p.stats.batches.Load(), context.Cause(ctx))
}
