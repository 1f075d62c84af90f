package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/pipeline"
)

func TestMain(m *testing.M) {
	if crashChild() || serveChild() {
		return
	}
	goleak.VerifyTestMain(m)
}

var topicT = operation.Topic(operation.HashOf([]byte("test topic")))

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newNode(t *testing.T, opts ...Option) *Node {
	t.Helper()
	n, err := New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// expectReplay reads a replay of exactly want, in order, from sub.
func expectReplay(t *testing.T, sub *Subscription, want []operation.Hash) {
	t.Helper()
	if ev, ok := next(t, sub).(ReplayStarted); !ok || ev.Total != int64(len(want)) {
		t.Fatalf("want ReplayStarted{%d}, got %+v", len(want), ev)
	}
	for _, w := range want {
		if got := processed(t, next(t, sub)); got.Hash != w {
			t.Fatalf("replayed %s, want %s", got.Hash.Short(), w.Short())
		}
	}
}

// reopenable returns a function that opens a node on the same database file and key each
// time it is called (a restart); the caller closes what it opens.
func reopenable(t *testing.T, opts ...Option) func() *Node {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.sqlite")
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return func() *Node {
		t.Helper()
		n, err := New(context.Background(), append([]Option{WithDatabase(path), WithPrivateKey(key)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// next returns the next event or fails the test after a generous guard timeout.
func next(t *testing.T, sub *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatal("events channel closed")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
		return nil
	}
}

// noEvent asserts that sub has no event to deliver, without sleeping: it waits until the
// replay finished and the writer committed everything queued, then sends a marker through
// the topic's delivery path (an already stored operation again: a duplicate, in order
// behind every earlier result of the topic and never delivered itself) and waits until it
// was handled. Anything that was going to be delivered is in the channel by then.
func noEvent(t *testing.T, n *Node, sub *Subscription) {
	t.Helper()
	ctx := testCtx(t)
	waitReplayed(t, sub)
	if err := n.pipe.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if marker := latestOf(t, n, sub.Topic()); marker != nil {
		tk, err := n.ingestRemoteAsync(ctx, pipeline.Input{Topic: sub.Topic(), Header: marker.HeaderBytes, Body: marker.Body}, ExternalStream{})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-tk.Delivered():
		case <-ctx.Done():
			t.Fatal("marker not delivered")
		}
		if r := tk.Result(); r.Status != pipeline.Duplicate {
			t.Fatalf("marker %+v, want a duplicate", r)
		}
	}
	select {
	case ev := <-sub.Events():
		t.Fatalf("unexpected event %#v", ev)
	default:
	}
}

// latestOf returns a stored operation of topic (the newest of some log), or nil.
func latestOf(t *testing.T, n *Node, topic operation.Topic) *operation.Operation {
	t.Helper()
	heights, err := n.store.LogHeights(testCtx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	for author, logs := range heights {
		for log := range logs {
			op, err := n.store.Latest(testCtx(t), author, log)
			if err != nil {
				t.Fatal(err)
			}
			if op != nil {
				return op
			}
		}
	}
	return nil
}

// waitReplayed waits until sub's replay finished (an empty replay emits no event).
func waitReplayed(t *testing.T, sub *Subscription) {
	t.Helper()
	select {
	case <-sub.replayDone:
	case <-time.After(20 * time.Second):
		t.Fatal("replay did not finish")
	}
}

func processed(t *testing.T, ev Event) ProcessedOperation {
	t.Helper()
	p, ok := ev.(Processed)
	if !ok {
		t.Fatalf("got %T %+v, want Processed", ev, ev)
	}
	return p.Operation
}

func publish(t *testing.T, pub *Publisher, msg string) operation.Hash {
	t.Helper()
	p, err := pub.Publish(testCtx(t), []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return p.Hash()
}

func TestProcessingOperations(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pub.Publish(ctx, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait(ctx)
	if err != nil || !res.Stored || res.Hash != p.Hash() {
		t.Fatalf("wait: %+v %v", res, err)
	}
	op := processed(t, next(t, sub))
	if op.Hash != p.Hash() || string(op.Message) != "hello" || op.Author != n.ID() || op.SeqNum != 0 || op.Topic != topicT {
		t.Fatalf("processed %+v", op)
	}
	if _, ok := op.Source.(LocalStore); !ok || op.Timestamp == 0 {
		t.Fatalf("source %T timestamp %d", op.Source, op.Timestamp)
	}
	// The same operation signed by another key (swapped verifying key) fails.
	stored, err := n.Store().Get(ctx, p.Hash())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := operation.GenerateKey()
	h := stored.Header
	h.PublicKey = other.PublicKey()
	err = n.ingestRemote(ctx, topicT, h.Encode(), stored.Body, SyncSession{Peer: other.PublicKey(), SessionID: 1, Phase: PhaseSync})
	if !errors.Is(err, operation.ErrSignature) {
		t.Fatalf("swapped key: %v", err)
	}
	if f, ok := next(t, sub).(ProcessingFailed); !ok || !errors.Is(f.Err, operation.ErrSignature) {
		t.Fatalf("want ProcessingFailed, got %+v", f)
	}
	if _, err := pub.Publish(ctx, nil); !errors.Is(err, ErrEmptyMessage) {
		t.Fatalf("empty publish: %v", err)
	}
}

func TestAutomaticAcking(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := publish(t, pub, "one"), publish(t, pub, "two")
	if processed(t, next(t, sub)).Hash != h1 || processed(t, next(t, sub)).Hash != h2 {
		t.Fatal("wrong order")
	}
	if _, _, err := n.Stream(ctx, topicT); !errors.Is(err, ErrStreamOpen) {
		t.Fatalf("second stream: %v", err)
	}
	sub.Close()
	if _, ok := <-sub.Events(); ok {
		t.Fatal("events not closed")
	}
	pub, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	// An empty replay sends no event; wait for it so "three" is not stored before the replay
	// reads the log heights (it would then be replayed rather than delivered live).
	waitReplayed(t, sub)
	h3 := publish(t, pub, "three")
	if op := processed(t, next(t, sub)); op.Hash != h3 {
		t.Fatalf("got %s, want only the new message", op.Hash.Short())
	}
	noEvent(t, n, sub)
}

func TestExplicitAcking(t *testing.T) {
	n := newNode(t, WithAckPolicy(Explicit))
	ctx := testCtx(t)
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := publish(t, pub, "one"), publish(t, pub, "two")
	processed(t, next(t, sub))
	processed(t, next(t, sub))
	if err := sub.Ack(ctx, h1); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	_, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok := next(t, sub).(ReplayStarted); !ok || ev.Total != 1 {
		t.Fatalf("want ReplayStarted{1}, got %+v", ev)
	}
	op := processed(t, next(t, sub))
	if op.Hash != h2 || !op.Replayed {
		t.Fatalf("replayed %+v", op)
	}
	if _, ok := next(t, sub).(ReplayEnded); !ok {
		t.Fatal("want ReplayEnded")
	}
	if err := op.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	// Acking an unknown hash is a no-op, acking another topic's operation is refused.
	if err := sub.Ack(ctx, operation.HashOf([]byte("nothing"))); err != nil {
		t.Fatal(err)
	}
	otherTopic := operation.Topic(operation.HashOf([]byte("other")))
	pubO, subO, err := n.Stream(ctx, otherTopic)
	if err != nil {
		t.Fatal(err)
	}
	hO := publish(t, pubO, "x")
	if err := sub.Ack(ctx, hO); !errors.Is(err, ErrWrongTopic) {
		t.Fatalf("cross-topic ack: %v", err)
	}
	subO.Close()
	sub.Close()
	_, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	noEvent(t, n, sub)
}

func TestReplayStreamFromStartAndCursor(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	hashes := []operation.Hash{publish(t, pub, "1"), publish(t, pub, "2"), publish(t, pub, "3")}
	for range hashes {
		processed(t, next(t, sub))
	}
	sub.Close()

	c := Heights{}
	c.Set(n.ID(), operation.LogIDFromTopic(topicT), 0)
	_, sub, err = n.StreamFrom(ctx, topicT, Cursor(c))
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok := next(t, sub).(ReplayStarted); !ok || ev.Total != 2 {
		t.Fatalf("want ReplayStarted{2}, got %+v", ev)
	}
	for _, want := range hashes[1:] {
		if got := processed(t, next(t, sub)).Hash; got != want {
			t.Fatalf("replayed %s, want %s", got.Short(), want.Short())
		}
	}
	if _, ok := next(t, sub).(ReplayEnded); !ok {
		t.Fatal("want ReplayEnded")
	}
	sub.Close()

	pub, sub, err = n.StreamFrom(ctx, topicT, Start)
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok := next(t, sub).(ReplayStarted); !ok || ev.Total != 3 {
		t.Fatalf("want ReplayStarted{3}, got %+v", ev)
	}
	for _, want := range hashes {
		if got := processed(t, next(t, sub)).Hash; got != want {
			t.Fatalf("replayed %s, want %s", got.Short(), want.Short())
		}
	}
	if _, ok := next(t, sub).(ReplayEnded); !ok {
		t.Fatal("want ReplayEnded")
	}
	h4 := publish(t, pub, "4")
	if got := processed(t, next(t, sub)); got.Hash != h4 || got.Replayed {
		t.Fatalf("live %+v", got)
	}
}

// External operations for the topic, built offline by another author.
func offlineOps(t *testing.T, topic operation.Topic, n int) ([]RawOperation, operation.PrivateKey) {
	key, _ := operation.GenerateKey()
	var out []RawOperation
	var prev *operation.Operation
	for i := 0; i < n; i++ {
		d := operation.Draft{LogID: operation.LogIDFromTopic(topic), Body: []byte(fmt.Sprintf("offline %d", i))}
		if prev != nil {
			d.SeqNum, d.Backlink = prev.SeqNum()+1, prev.Hash
		}
		op, err := operation.Sign(key, d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, RawOperation{Header: op.HeaderBytes, Body: op.Body})
		prev = op
	}
	return out, key
}

func TestImportExternalStream(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	ops, key := offlineOps(t, topicT, 3)
	// Reversed: the out-of-order buffer puts them back in log order.
	rev := []RawOperation{ops[2], ops[1], ops[0]}
	done := make(chan ImportSummary, 1)
	go func() {
		sum, err := pub.Import(ctx, Operations(rev))
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	if ev, ok := next(t, sub).(ImportStarted); !ok || ev.SessionID != 0 {
		t.Fatalf("want ImportStarted{0}, got %+v", ev)
	}
	for i := 0; i < 3; i++ {
		op := processed(t, next(t, sub))
		if op.Author != key.PublicKey() || op.SeqNum != uint64(i) {
			t.Fatalf("import event %d: %+v", i, op)
		}
		if src, ok := op.Source.(ExternalStream); !ok || src.SessionID != 0 {
			t.Fatalf("source %+v", op.Source)
		}
	}
	if ev, ok := next(t, sub).(ImportEnded); !ok || ev.SessionID != 0 || ev.Stored != 3 {
		t.Fatalf("want ImportEnded{0}, got %+v", ev)
	}
	if sum := <-done; sum.Stored != 3 || sum.Failed != 0 {
		t.Fatalf("summary %+v", sum)
	}
	// Importing the same operations again: duplicates are not re-delivered.
	sum, err := pub.Import(ctx, Operations(ops))
	if err != nil || sum.SessionID != 1 || sum.Duplicates != 3 {
		t.Fatalf("second import %+v %v", sum, err)
	}
	if _, ok := next(t, sub).(ImportStarted); !ok {
		t.Fatal("want ImportStarted")
	}
	if _, ok := next(t, sub).(ImportEnded); !ok {
		t.Fatal("want ImportEnded right after (duplicates suppressed)")
	}
}

func TestLogPrefixPruning(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		publish(t, pub, fmt.Sprint(i))
		processed(t, next(t, sub))
	}
	p, err := pub.Prune(ctx, []byte("4"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait(ctx)
	if err != nil || !res.Stored || res.Pruned != 3 {
		t.Fatalf("prune %+v %v", res, err)
	}
	if op := processed(t, next(t, sub)); string(op.Message) != "4" || op.SeqNum != 3 {
		t.Fatalf("prune op %+v", op)
	}
	size, err := n.Store().LogSize(ctx, n.ID(), operation.LogIDFromTopic(topicT), 0, 1<<32)
	if err != nil || size.Ops != 1 {
		t.Fatalf("log after prune %+v %v", size, err)
	}
	// A system-only prune is stored, acknowledged and not delivered.
	p, err = pub.Prune(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Wait(ctx); err != nil || res.Pruned != 1 {
		t.Fatalf("system prune %+v %v", res, err)
	}
	noEvent(t, n, sub)
	sub.Close()
	_, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	noEvent(t, n, sub) // acked, so nothing replays
}

func TestSlowSubscriberDoesNotStopOtherTopic(t *testing.T) {
	n := newNode(t, WithEventBuffer(1))
	ctx := testCtx(t)
	topicA := operation.Topic(operation.HashOf([]byte("A")))
	topicB := operation.Topic(operation.HashOf([]byte("B")))
	pubA, subA, err := n.Stream(ctx, topicA)
	if err != nil {
		t.Fatal(err)
	}
	pubB, subB, err := n.Stream(ctx, topicB)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads A: its buffer fills and its delivery blocks.
	for i := 0; i < 5; i++ {
		if _, err := pubA.Publish(ctx, []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		h := publish(t, pubB, fmt.Sprint(i))
		if op := processed(t, next(t, subB)); op.Hash != h {
			t.Fatalf("B got %s want %s", op.Hash.Short(), h.Short())
		}
	}
	for i := 0; i < 5; i++ {
		processed(t, next(t, subA))
	}
}

func TestRemoteOutOfOrderAndForgedOperations(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	_, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := offlineOps(t, topicT, 4)
	src := SyncSession{SessionID: 7, Phase: PhaseLive}
	var tickets []*pipeline.Ticket
	for _, i := range []int{3, 1, 2, 0} {
		tk, err := n.ingestRemoteAsync(ctx, pipeline.Input{Topic: topicT, Header: ops[i].Header, Body: ops[i].Body}, src)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	for _, tk := range tickets {
		if _, err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		if op := processed(t, next(t, sub)); op.SeqNum != uint64(i) {
			t.Fatalf("delivered seq %d at %d", op.SeqNum, i)
		}
	}
	before, _ := n.Store().TopicStats(ctx)
	bad := append([]byte(nil), ops[1].Header...)
	bad[50] ^= 0xff
	for _, c := range []struct {
		header, body []byte
		want         error
	}{
		{bad, ops[1].Body, operation.ErrSignature},
		{[]byte("garbage"), nil, operation.ErrMalformed},
		{ops[1].Header, []byte("not the body"), operation.ErrPayloadMismatch},
		{ops[1].Header, make([]byte, operation.DefaultMaxPayloadSize+1), operation.ErrTooLarge},
	} {
		if err := n.ingestRemote(ctx, topicT, c.header, c.body, src); !errors.Is(err, c.want) {
			t.Fatalf("got %v, want %v", err, c.want)
		}
		if f, ok := next(t, sub).(ProcessingFailed); !ok || !errors.Is(f.Err, c.want) {
			t.Fatalf("event %+v", f)
		}
	}
	after, _ := n.Store().TopicStats(ctx)
	if len(before) != 1 || len(after) != 1 || before[0].Ops != after[0].Ops || before[0].Bytes != after[0].Bytes {
		t.Fatalf("store changed: %+v -> %+v", before, after)
	}
	// Re-sent operations are duplicates: stored once, delivered once.
	if err := n.ingestRemote(ctx, topicT, ops[2].Header, ops[2].Body, src); err != nil {
		t.Fatal(err)
	}
	noEvent(t, n, sub)
}

func TestReplayAfterRestartAndExplicitAckSurvives(t *testing.T) {
	ctx := testCtx(t)
	open := reopenable(t, WithAckPolicy(Explicit))
	n := open()
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []operation.Hash
	for i := 0; i < 5; i++ {
		hashes = append(hashes, publish(t, pub, fmt.Sprint(i)))
	}
	for i := 0; i < 5; i++ {
		op := processed(t, next(t, sub))
		if i == 1 {
			if err := op.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = open()
	pub, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	expectReplay(t, sub, hashes[2:])
	if _, ok := next(t, sub).(ReplayEnded); !ok {
		t.Fatal("want ReplayEnded")
	}
	// Publishing continues the log after the restart.
	h := publish(t, pub, "after restart")
	op := processed(t, next(t, sub))
	if op.Hash != h || op.SeqNum != 5 {
		t.Fatalf("after restart %+v", op)
	}
	if err := sub.Ack(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open()
	defer n.Close()
	_, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	noEvent(t, n, sub)
}

func TestNetworkSeams(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	tw, err := n.watchTopics()
	if err != nil {
		t.Fatal(err)
	}
	defer tw.Close()
	w, err := n.watchStored(topicT, 16)
	if err != nil {
		t.Fatal(err)
	}
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tw.Next(ctx); err != nil || c.Topic != topicT || !c.Added {
		t.Fatalf("topic change %+v %v", c, err)
	}
	if got := n.streamedTopics(); len(got) != 1 || got[0] != topicT {
		t.Fatalf("streamed %v", got)
	}
	h := publish(t, pub, "x")
	ops, _ := offlineOps(t, topicT, 1)
	peer, _ := operation.GenerateKey()
	if err := n.ingestRemote(ctx, topicT, ops[0].Header, ops[0].Body, SyncSession{Peer: peer.PublicKey(), SessionID: 3}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"local", "remote"} {
		so, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("no stored notification: %v", err)
		}
		_, local := so.Source.(LocalStore)
		if (want == "local") != local || (want == "local" && so.Op.Hash != h) {
			t.Fatalf("stored notification %s: %+v", want, so)
		}
	}
	// Stored notifications fire at commit, before delivery: read both deliveries first so
	// the injected event is known to come after them.
	processed(t, next(t, sub))
	processed(t, next(t, sub))
	if queued, _ := n.emitTopicEvent(topicT, SyncStarted{Peer: peer.PublicKey(), SessionID: 3, IncomingOps: 1}); !queued {
		t.Fatal("emit failed")
	}
	if ev, ok := next(t, sub).(SyncStarted); !ok || ev.SessionID != 3 {
		t.Fatalf("sync event %+v", ev)
	}
	// A watcher that does not keep up is dropped with errLagged, never blocking ingest.
	lag, err := n.watchStored(topicT, 1)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "1")
	publish(t, pub, "2")
	processed(t, next(t, sub))
	processed(t, next(t, sub))
	for {
		if _, err := lag.Next(ctx); err != nil {
			break
		}
	}
	if !errors.Is(lag.Err(), errLagged) {
		t.Fatalf("lag err %v", lag.Err())
	}
	w.Close()
	sub.Close()
	if c, err := tw.Next(ctx); err != nil || c.Added {
		t.Fatalf("topic removal %+v %v", c, err)
	}
}

// Sync status events never block the session reporting them: an app that does not read
// gets them later, in order; past maxPendingNotices the oldest go, reported once per
// overflow; a closed subscription takes none.
func TestSyncEventsQueueWithoutBlocking(t *testing.T) {
	n := newNode(t, WithEventBuffer(0))
	_, sub, err := n.Stream(testCtx(t), topicT)
	if err != nil {
		t.Fatal(err)
	}
	const total = maxPendingNotices + 100
	drops := 0
	for i := range total {
		queued, firstDrop := n.emitTopicEvent(topicT, SyncEnded{SessionID: uint64(i)})
		if !queued {
			t.Fatalf("event %d not queued", i)
		}
		if firstDrop {
			drops++
		}
	}
	if drops != 1 {
		t.Fatalf("overflow reported %d times, want once", drops)
	}
	// The pump may hold one event it took before the overflow; the rest are the newest.
	var got []uint64
	for len(got) == 0 || got[len(got)-1] != total-1 {
		ev, ok := next(t, sub).(SyncEnded)
		if !ok {
			t.Fatalf("unexpected event %T", ev)
		}
		got = append(got, ev.SessionID)
	}
	if len(got) < maxPendingNotices || len(got) > maxPendingNotices+1 {
		t.Fatalf("received %d events, want %d (or one more)", len(got), maxPendingNotices)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order: %d after %d", got[i], got[i-1])
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if queued, _ := n.emitTopicEvent(topicT, SyncEnded{}); queued {
		t.Fatal("event queued for a closed subscription")
	}
}

// The status-event pump runs only while events wait: an idle subscription (an always-on
// node follows tens of thousands) costs no goroutine for it, and the pump ends once the
// app has taken the queue.
func TestNoticePumpOnlyWhileEventsWait(t *testing.T) {
	n := newNode(t, WithEventBuffer(0))
	_, sub, err := n.Stream(testCtx(t), topicT)
	if err != nil {
		t.Fatal(err)
	}
	if got := pumpGoroutines(); got != 0 {
		t.Fatalf("%d notice pumps for an idle subscription, want 0", got)
	}
	for i := range 3 {
		if queued, _ := n.emitTopicEvent(topicT, SyncEnded{SessionID: uint64(i)}); !queued {
			t.Fatalf("event %d not queued", i)
		}
	}
	// The app has not read: one pump waits on the unbuffered channel with the queue. A
	// pump that has not started yet shows in a stack dump as the compiler's notify.gowrap
	// closure, not as pumpNotices, so wait for it to appear, then check it is the only one.
	testutil.Eventually(t, 10*time.Second, "a notice pump while 3 events wait", func() (bool, error) {
		return pumpGoroutines() >= 1, nil
	})
	if got := pumpGoroutines(); got != 1 {
		t.Fatalf("%d notice pumps while 3 events wait, want 1", got)
	}
	for i := range 3 {
		if ev, ok := next(t, sub).(SyncEnded); !ok || ev.SessionID != uint64(i) {
			t.Fatalf("event %d: got %+v", i, ev)
		}
	}
	testutil.Eventually(t, 10*time.Second, "notice pump to end after the queue drained", func() (bool, error) {
		return pumpGoroutines() == 0, nil
	})
}

// pumpGoroutines counts the goroutines running Subscription.pumpNotices.
func pumpGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "(*Subscription).pumpNotices")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// With an unbuffered event channel, Automatic acknowledges exactly what the app received:
// events the app never took are delivered again after a restart.
func TestAutomaticAckWithUnbufferedEventsIsReceipt(t *testing.T) {
	ctx := testCtx(t)
	open := reopenable(t, WithAckPolicy(Automatic), WithEventBuffer(0))
	n := open()
	pub, sub, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []operation.Hash
	for i := range 4 {
		hashes = append(hashes, publish(t, pub, fmt.Sprint(i)))
	}
	for _, want := range hashes[:2] {
		if got := processed(t, next(t, sub)); got.Hash != want {
			t.Fatalf("received %s, want %s", got.Hash.Short(), want.Short())
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = open()
	defer n.Close()
	_, sub, err = n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	expectReplay(t, sub, hashes[2:]) // the two events never received
}

// Test-only entry points.

// ingestRemote validates and stores one raw operation and waits for the result. It blocks
// while the topic is back-pressured. It returns nil for a stored or already known
// operation and a typed error (errors.Is with operation.Err*, pipeline.ErrBufferFull, ...)
// otherwise. An operation that arrives before its predecessor is held until the
// predecessor is stored (or the out-of-order buffer drops it), so callers that send a log
// out of order should use ingestRemoteAsync instead of waiting for each operation.
func (n *Node) ingestRemote(ctx context.Context, topic operation.Topic, header, body []byte, src Source) error {
	t, err := n.ingestRemoteAsync(ctx, pipeline.Input{Topic: topic, Header: header, Body: body}, src)
	if err != nil {
		return err
	}
	if _, err := t.Wait(ctx); err != nil {
		return fmt.Errorf("ingest %s: %w", t.Hash().Short(), err)
	}
	return nil
}

// streamedTopics returns the topics with an open subscription, sorted.
func (n *Node) streamedTopics() []operation.Topic {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]operation.Topic, 0, len(n.streams))
	for t := range n.streams {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i][:]) < string(out[j][:]) })
	return out
}

// Alive answers for a working node, names what is stuck when the node's lock is held past
// the probe's deadline, and returns ErrClosed after Close. (A hung store writer is
// pipeline.TestProbeDetectsHungWriter.)
func TestAlive(t *testing.T) {
	n := newNode(t)
	ctx := testCtx(t)
	if err := n.Alive(ctx); err != nil {
		t.Fatalf("working node: %v", err)
	}
	n.mu.Lock()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := n.Alive(short)
	cancel()
	n.mu.Unlock()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("node lock held: Alive = %v, want a deadline error", err)
	}
	if err := n.Alive(ctx); err != nil {
		t.Fatalf("lock free again: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Alive(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed node: Alive = %v, want ErrClosed", err)
	}
}
