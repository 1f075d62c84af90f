package pipeline

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	topicA = operation.Topic(operation.HashOf([]byte("a")))
	topicB = operation.Topic(operation.HashOf([]byte("b")))
)

func newKey(t testing.TB) operation.PrivateKey {
	k, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func chain(t testing.TB, key operation.PrivateKey, topic operation.Topic, n, bodySize int) []*operation.Operation {
	t.Helper()
	var out []*operation.Operation
	var prev *operation.Operation
	for i := 0; i < n; i++ {
		d := operation.Draft{LogID: operation.LogIDFromTopic(topic), Body: make([]byte, bodySize)}
		if bodySize > 0 {
			d.Body[0] = byte(i)
		}
		if prev != nil {
			d.SeqNum, d.Backlink = prev.SeqNum()+1, prev.Hash
		}
		op, err := operation.Sign(key, d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, op)
		prev = op
	}
	return out
}

type recorder struct {
	mu      sync.Mutex
	results []Result
	block   map[operation.Topic]chan struct{}
}

func (r *recorder) deliver(res Result) {
	r.mu.Lock()
	c := r.block[res.Topic]
	r.mu.Unlock()
	if c != nil {
		<-c
	}
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...)
}

func newPipeline(t *testing.T, cfg Config) (*Pipeline, *store.Store, *recorder) {
	t.Helper()
	s, err := store.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{block: map[operation.Topic]chan struct{}{}}
	cfg.Store = s
	if cfg.Deliver == nil {
		cfg.Deliver = rec.deliver
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		s.Close()
	})
	return p, s, rec
}

func submit(t *testing.T, p *Pipeline, topic operation.Topic, op *operation.Operation) *Ticket {
	t.Helper()
	tk, err := p.Submit(context.Background(), Input{Topic: topic, Header: op.HeaderBytes, Body: op.Body})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func wait(t *testing.T, tk *Ticket) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case <-tk.Done():
		return tk.Result()
	case <-ctx.Done():
		t.Fatalf("operation %s never finished", tk.Hash().Short())
		return Result{}
	}
}

func TestOutOfOrderArrivalIsBufferedAndApplied(t *testing.T) {
	p, s, rec := newPipeline(t, Config{})
	key := newKey(t)
	ops := chain(t, key, topicA, 6, 10)
	var tickets []*Ticket
	for _, i := range []int{5, 3, 4, 1, 2, 0} {
		tickets = append(tickets, submit(t, p, topicA, ops[i]))
	}
	for _, tk := range tickets {
		if r := wait(t, tk); r.Status != Stored {
			t.Fatalf("%s: %v %v", tk.Hash().Short(), r.Status, r.Err)
		}
	}
	h, err := s.LogHeights(context.Background(), topicA)
	if err != nil || h[key.PublicKey()][operation.LogIDFromTopic(topicA)] != 5 {
		t.Fatalf("heights %v %v", h, err)
	}
	for _, tk := range tickets {
		<-tk.Delivered()
	}
	// Deliveries of one log come in seq order.
	var seqs []uint64
	for _, r := range rec.snapshot() {
		seqs = append(seqs, r.Op.SeqNum())
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("delivered out of order: %v", seqs)
		}
	}
	if st := p.Stats(); st.Stored != 6 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// An Owned input is kept as handed over; any other is copied, so its caller may reuse the
// buffers as soon as the result is in.
func TestOwnedInputIsKeptOtherInputIsCopied(t *testing.T) {
	p, _, _ := newPipeline(t, Config{})
	ops := chain(t, newKey(t), topicA, 2, 10)
	for i, owned := range []bool{true, false} {
		header, body := bytes.Clone(ops[i].HeaderBytes), bytes.Clone(ops[i].Body)
		tk, err := p.Submit(context.Background(), Input{Topic: topicA, Header: header, Body: body, Owned: owned})
		if err != nil {
			t.Fatal(err)
		}
		r := wait(t, tk)
		if r.Status != Stored {
			t.Fatalf("owned=%v: %v %v", owned, r.Status, r.Err)
		}
		kept := &r.Op.HeaderBytes[0] == &header[0] && &r.Op.Body[0] == &body[0]
		if kept != owned {
			t.Fatalf("owned=%v: the operation kept the submitted buffers: %v", owned, kept)
		}
	}
}

func TestInvalidOperationsAreRejectedAndStoreUnchanged(t *testing.T) {
	p, s, _ := newPipeline(t, Config{Limits: operation.Limits{MaxPayloadSize: 64}, BufferOps: 2})
	ctx := context.Background()
	key := newKey(t)
	ops := chain(t, key, topicA, 2, 10)
	if r := wait(t, submit(t, p, topicA, ops[0])); r.Status != Stored {
		t.Fatal(r.Err)
	}
	sizeBefore, _ := s.LogSize(ctx, key.PublicKey(), operation.LogIDFromTopic(topicA), 0, 100)

	badSig := *ops[1]
	badSig.HeaderBytes = append([]byte(nil), ops[1].HeaderBytes...)
	badSig.HeaderBytes[50] ^= 1                   // inside the signature (bytes 38..101)
	forkOp := chain(t, key, topicA, 1, 11)[0]     // another seq 0
	other := chain(t, newKey(t), topicB, 1, 5)[0] // log id of topic B
	noExt, _ := operation.Sign(key, operation.Draft{NoExtensions: true, Body: []byte("x")})
	// The same author's next op with the prune flag flipped on (last header byte: false→true).
	pruneForged := append([]byte(nil), ops[1].HeaderBytes...)
	pruneForged[len(pruneForged)-1] ^= 1
	cases := []struct {
		name         string
		header, body []byte
		want         error
	}{
		{"bad signature", badSig.HeaderBytes, ops[1].Body, operation.ErrSignature},
		{"payload mismatch", ops[1].HeaderBytes, []byte("0123456789"), operation.ErrPayloadMismatch},
		{"garbage", []byte{0xff, 0x00, 0x13}, nil, operation.ErrMalformed},
		{"oversized", ops[1].HeaderBytes, make([]byte, 65), operation.ErrTooLarge},
		{"fork", forkOp.HeaderBytes, forkOp.Body, operation.ErrFork},
		{"log id of another topic", other.HeaderBytes, other.Body, operation.ErrLogIDMismatch},
		{"no extensions", noExt.HeaderBytes, noExt.Body, operation.ErrMissingExtensions},
		{"forged prune flag", pruneForged, ops[1].Body, operation.ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk, err := p.Submit(ctx, Input{Topic: topicA, Header: c.header, Body: c.body})
			if err != nil {
				t.Fatal(err)
			}
			r := wait(t, tk)
			if r.Status != Failed || !errors.Is(r.Err, c.want) {
				t.Fatalf("got %v %v, want failure %v", r.Status, r.Err, c.want)
			}
		})
	}
	// A gap beyond the buffer: three ops waiting for seq 1 with room for two.
	gapKey := newKey(t)
	gap := chain(t, gapKey, topicA, 5, 1)
	var tks []*Ticket
	for _, op := range gap[2:] {
		tks = append(tks, submit(t, p, topicA, op))
	}
	r := wait(t, tks[0])
	if r.Status != Failed || !errors.Is(r.Err, ErrBufferFull) || !errors.Is(r.Err, operation.ErrSeqNum) {
		t.Fatalf("oldest buffered: %v %v", r.Status, r.Err)
	}
	sizeAfter, _ := s.LogSize(ctx, key.PublicKey(), operation.LogIDFromTopic(topicA), 0, 100)
	if sizeAfter != sizeBefore {
		t.Fatalf("store changed: %+v -> %+v", sizeBefore, sizeAfter)
	}
	if h, _ := s.LogHeights(ctx, topicA); len(h) != 1 {
		t.Fatalf("unexpected logs stored: %v", h)
	}
	if n := p.Stats().Rejected["signature"]; n != 2 {
		t.Fatalf("signature rejections %d", n)
	}
}

func TestBufferedOperationsExpire(t *testing.T) {
	p, _, _ := newPipeline(t, Config{BufferTTL: 10 * time.Millisecond})
	ops := chain(t, newKey(t), topicA, 3, 1)
	r := wait(t, submit(t, p, topicA, ops[2]))
	if r.Status != Failed || !errors.Is(r.Err, ErrBufferExpired) {
		t.Fatalf("%v %v", r.Status, r.Err)
	}
}

func TestSlowTopicDoesNotBlockOthers(t *testing.T) {
	keyA, keyB := newKey(t), newKey(t)
	opsA := chain(t, keyA, topicA, 10, 1)
	var budget int64 // exactly the first four of topic A's operations
	for _, op := range opsA[:4] {
		budget += inflightCost(len(op.HeaderBytes), len(op.Body))
	}
	p, _, rec := newPipeline(t, Config{TopicInflightBytes: budget})
	release := make(chan struct{})
	rec.block[topicA] = release
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	// Fill topic A's in-flight budget; its consumer does not read.
	var aTickets []*Ticket
	for _, op := range opsA[:4] {
		aTickets = append(aTickets, submit(t, p, topicA, op))
	}
	// A fifth submit on A blocks (backpressure) ...
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := p.Submit(ctx, Input{Topic: topicA, Header: opsA[4].HeaderBytes, Body: opsA[4].Body})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit on a full topic: %v", err)
	}
	// ... while topic B flows freely, including its deliveries.
	for _, op := range chain(t, keyB, topicB, 50, 1) {
		tk := submit(t, p, topicB, op)
		if r := wait(t, tk); r.Status != Stored {
			t.Fatal(r.Err)
		}
		<-tk.Delivered()
	}
	close(release)
	for _, tk := range aTickets {
		<-tk.Delivered()
	}
}

// The in-flight budget counts bytes: the room one large operation takes holds several
// small ones, an operation larger than the whole budget still gets in once its topic is
// idle, and a Submit waiting for budget gives up when the pipeline closes.
func TestInflightBudgetCountsBytes(t *testing.T) {
	key := newKey(t)
	small := chain(t, key, topicA, 3, 1)
	large := chain(t, newKey(t), topicA, 1, 4096)[0]
	budget := inflightCost(len(large.HeaderBytes), len(large.Body))
	p, _, rec := newPipeline(t, Config{TopicInflightBytes: budget})
	submitWithin := func(topic operation.Topic, op *operation.Operation) (*Ticket, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return p.Submit(ctx, Input{Topic: topic, Header: op.HeaderBytes, Body: op.Body})
	}

	// Topic A's consumer does not read: three small operations fit, then the large one
	// waits for room until its context ends.
	release := make(chan struct{})
	rec.block[topicA] = release
	var smallTickets []*Ticket
	for _, op := range small {
		tk, err := submitWithin(topicA, op)
		if err != nil {
			t.Fatalf("small operation %d within the budget: %v", op.SeqNum(), err)
		}
		smallTickets = append(smallTickets, tk)
	}
	if _, err := submitWithin(topicA, large); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a large operation on a topic with small ones in flight: %v", err)
	}
	close(release)
	for _, tk := range smallTickets {
		<-tk.Delivered()
	}

	// Larger than the whole budget: admitted alone.
	huge := chain(t, newKey(t), topicB, 1, int(3*budget))[0]
	tk := submit(t, p, topicB, huge)
	if r := wait(t, tk); r.Status != Stored {
		t.Fatalf("an operation larger than the budget: %v %v", r.Status, r.Err)
	}
	<-tk.Delivered()

	// Topic B's budget is taken by an undelivered operation; the next Submit waits and
	// returns ErrClosed when the pipeline closes.
	blockB := make(chan struct{})
	defer close(blockB)
	rec.mu.Lock()
	rec.block[topicB] = blockB
	rec.mu.Unlock()
	next := chain(t, newKey(t), topicB, 2, 4096)
	submit(t, p, topicB, next[0])
	waiting := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), Input{Topic: topicB, Header: next[1].HeaderBytes, Body: next[1].Body})
		waiting <- err
	}()
	// The budget's queue is first come first served: once the Submit waits in it, not even
	// one free byte can be taken.
	ts := p.topic(topicB)
	testutil.Eventually(t, 10*time.Second, "the second Submit waits for budget", func() (bool, error) {
		if ts.inflight.TryAcquire(1) {
			ts.inflight.Release(1)
			return false, nil
		}
		return true, nil
	})
	go p.Close() // waits for the blocked delivery, which the deferred close(blockB) ends
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit waiting for budget when the pipeline closed: %v", err)
	}
}

func TestConcurrentPublishNeverForks(t *testing.T) {
	p, s, _ := newPipeline(t, Config{})
	key := newKey(t)
	var wg sync.WaitGroup
	tickets := make(chan *Ticket, 200)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				tk, err := p.Publish(context.Background(), PublishRequest{Topic: topicA, Key: key, Body: []byte("hi")})
				if err != nil {
					t.Error(err)
					return
				}
				tickets <- tk
			}
		}()
	}
	wg.Wait()
	close(tickets)
	for tk := range tickets {
		if r := wait(t, tk); r.Status != Stored {
			t.Fatal(r.Err)
		}
	}
	sz, err := s.LogSize(context.Background(), key.PublicKey(), operation.LogIDFromTopic(topicA), 0, 1000)
	if err != nil || sz.Ops != 200 {
		t.Fatalf("size %+v %v", sz, err)
	}
	// A prune publish deletes everything before it.
	tk, err := p.Publish(context.Background(), PublishRequest{Topic: topicA, Key: key, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(t, tk); r.Status != Stored || r.Pruned != 200 || r.Op.SeqNum() != 200 {
		t.Fatalf("prune: %+v", r)
	}
}

func TestCloseFlushesAcceptedOperations(t *testing.T) {
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := New(Config{Store: s, FlushDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	var tks []*Ticket
	for i := 0; i < 20; i++ {
		tk, err := p.Publish(context.Background(), PublishRequest{Topic: topicA, Key: key, Body: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		tks = append(tks, tk)
	}
	p.Close()
	for _, tk := range tks {
		if r := tk.Result(); r.Status != Stored {
			t.Fatalf("after close: %v %v", r.Status, r.Err)
		}
	}
	if _, err := p.Submit(context.Background(), Input{Topic: topicA}); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after close: %v", err)
	}
}

// A writer stuck in one transaction (a hung disk, a lock that never comes) fails Probe
// within the caller's deadline; once it moves again Probe passes.
func TestProbeDetectsHungWriter(t *testing.T) {
	p, _, _ := newPipeline(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Probe(ctx); err != nil {
		t.Fatalf("idle writer: %v", err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	stuck := make(chan error, 1)
	go func() {
		stuck <- p.onWriter(context.Background(), func() error { close(entered); <-release; return nil })
	}()
	<-entered
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err := p.Probe(short)
	cancelShort()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung writer: Probe = %v, want a deadline error", err)
	}
	close(release)
	if err := <-stuck; err != nil {
		t.Fatal(err)
	}
	if err := p.Probe(ctx); err != nil {
		t.Fatalf("writer moving again: %v", err)
	}
	p.Close()
	if err := p.Probe(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed pipeline: Probe = %v, want ErrClosed", err)
	}
}
