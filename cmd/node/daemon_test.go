package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func topicOf(name string) config.Topic {
	t, err := operation.ParseTopic(name)
	if err != nil {
		panic(err)
	}
	return config.Topic{Name: name, Topic: t}
}

func recv(t *testing.T, ch <-chan node.Event) node.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return nil
}

// recvOp receives the next event, which must be a Processed one.
func recvOp(t *testing.T, ch <-chan node.Event) node.ProcessedOperation {
	t.Helper()
	ev := recv(t, ch)
	p, ok := ev.(node.Processed)
	if !ok {
		t.Fatalf("event %T %+v, want Processed", ev, ev)
	}
	return p.Operation
}

func TestDaemonSubscribeFromStartAndLive(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	handled := make(chan node.Event, 100)
	d.afterEvent = func(ev node.Event) { handled <- ev }
	defer d.Close()
	ctx := testCtx(t)
	chat := topicOf("chat").Topic.String()

	for _, m := range []string{"a", "b"} {
		if _, err := d.Publish(ctx, chat, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// One more message is published after the subscriber registered for live events but
	// before history is read: it must arrive exactly once.
	published := make(chan struct{})
	n.beforeHistory = func() {
		if _, err := d.Publish(ctx, chat, []byte("c")); err != nil {
			t.Error(err)
		}
		close(published)
	}
	start, stopStart, err := d.Subscribe(ctx, chat, admin.FromStart)
	if err != nil {
		t.Fatal(err)
	}
	defer stopStart()
	<-published
	for i := 0; i < 3; i++ { // a, b, c fanned out before the frontier subscriber joins
		recv(t, handled)
	}
	live, stopLive, err := d.Subscribe(ctx, chat, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stopLive()
	if _, err := d.Publish(ctx, chat, []byte("d")); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"a", "b", "c", "d"} {
		op := recvOp(t, start)
		if string(op.Message) != want || op.SeqNum != uint64(i) {
			t.Fatalf("from=start event %d = %q seq %d, want %q", i, op.Message, op.SeqNum, want)
		}
	}
	if op := recvOp(t, live); string(op.Message) != "d" {
		t.Fatalf("frontier subscriber got %q first, want d", op.Message)
	}
	if _, err := d.Publish(ctx, chat, []byte("e")); err != nil {
		t.Fatal(err)
	}
	if op := recvOp(t, start); string(op.Message) != "e" {
		t.Fatalf("from=start after live: %q (duplicate?)", op.Message)
	}
	stopStart()
	stopStart() // idempotent
	if _, ok := <-start; ok {
		// drain anything buffered; the channel must end up closed
		for range start {
		}
	}
}

func TestDaemonTopicsFileChanges(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	defer d.Close()
	ctx := testCtx(t)
	a, b, c := topicOf("a"), topicOf("b"), topicOf("c")
	for _, tp := range []config.Topic{a, b} {
		if _, err := d.ensure(ctx, tp, true); err != nil {
			t.Fatal(err)
		}
	}
	// b is also used through the API, so removing it from the file keeps it open.
	if err := d.AddTopic(ctx, b.Topic.String()); err != nil {
		t.Fatal(err)
	}
	d.applyTopics(ctx, config.DiffTopics([]config.Topic{a, b}, []config.Topic{c}))
	if n.isOpen(a.Topic) || !n.isOpen(b.Topic) || !n.isOpen(c.Topic) {
		t.Fatalf("open after change: a=%v b=%v c=%v", n.isOpen(a.Topic), n.isOpen(b.Topic), n.isOpen(c.Topic))
	}
	ts, err := d.Topics(ctx)
	if err != nil || len(ts) != 2 {
		t.Fatalf("Topics = %+v, %v", ts, err)
	}
	// Re-adding a reopens it.
	d.applyTopics(ctx, config.DiffTopics([]config.Topic{c}, []config.Topic{a, c}))
	if !n.isOpen(a.Topic) {
		t.Fatal("a not reopened")
	}
}

// recvMessages receives processed events until it has one per message and checks their
// order.
func recvMessages(t *testing.T, ch <-chan node.Event, want ...string) []node.ProcessedOperation {
	t.Helper()
	var got []node.ProcessedOperation
	for len(got) < len(want) {
		p, ok := recv(t, ch).(node.Processed)
		if !ok {
			continue
		}
		op := p.Operation
		if string(op.Message) != want[len(got)] {
			t.Fatalf("message %d = %q (source %s, replayed %v), want %q", len(got), op.Message, op.Source, op.Replayed, want[len(got)])
		}
		got = append(got, op)
	}
	return got
}

// TestDaemonExplicitAck: under the explicit policy the daemon acknowledges nothing by
// itself. Every frontier subscriber first receives what no client acknowledged (also what
// arrived while nobody listened), and an ack from any client moves the topic's cursor.
func TestDaemonExplicitAck(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckExplicit, "test")
	handled := make(chan node.Event, 10)
	d.afterEvent = func(ev node.Event) { handled <- ev }
	defer d.Close()
	ctx := testCtx(t)
	topic := topicOf("x").Topic.String()
	// Nobody listening.
	for _, m := range []string{"a", "b"} {
		if _, err := d.Publish(ctx, topic, []byte(m)); err != nil {
			t.Fatal(err)
		}
		recv(t, handled)
	}
	first, stopFirst, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stopFirst()
	got := recvMessages(t, first, "a", "b")
	if !got[0].Replayed || got[0].Source != (node.LocalStore{}) {
		t.Fatalf("un-acked operation delivered with source %s (replayed %v), want a replay", got[0].Source, got[0].Replayed)
	}
	if _, err := d.Publish(ctx, topic, []byte("c")); err != nil {
		t.Fatal(err)
	}
	recv(t, handled)
	c := recvMessages(t, first, "c")[0]
	// A second client receives every operation not acknowledged, though the first one
	// received them.
	second, stopSecond, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	recvMessages(t, second, "a", "b", "c")
	stopSecond()
	n.mu.Lock()
	acked := len(n.acked)
	n.mu.Unlock()
	if acked != 0 {
		t.Fatalf("the daemon acknowledged %d operations by itself", acked)
	}
	if err := d.Ack(ctx, topic, got[1].Hash.String()); err != nil {
		t.Fatal(err)
	}
	stopFirst()
	third, stopThird, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stopThird()
	if _, err := d.Publish(ctx, topic, []byte("d")); err != nil {
		t.Fatal(err)
	}
	if ev := recvMessages(t, third, "c", "d"); ev[0].Hash != c.Hash {
		t.Fatalf("replayed %+v, want %s", ev[0], c.Hash)
	}
	if err := d.Ack(ctx, topic, "nothex"); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("ack of a bad hash: %v", err)
	}
}

// waitUnsubscribed waits until the topic's runner dropped every subscriber.
func waitUnsubscribed(t *testing.T, d *daemon, topic operation.Topic) {
	t.Helper()
	d.mu.Lock()
	r := d.topics[topic]
	d.mu.Unlock()
	waitFor(t, 10*time.Second, "slow subscriber disconnected", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.subs) == 0
	})
}

func TestDaemonSlowSubscriberIsDisconnected(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	defer d.Close()
	ctx := testCtx(t)
	topic := topicOf("x").Topic.String()
	slow, stop, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i := 0; i < subscriberQueueEvents+10; i++ {
		if _, err := d.Publish(ctx, topic, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Do not read until the runner has fanned everything out (reading would make room).
	waitUnsubscribed(t, d, topicOf("x").Topic)
	got := 0
	for range slow {
		got++
	}
	if got > 1 { // the event the subscription was already handing over
		t.Fatalf("slow subscriber got %d events after it was disconnected", got)
	}
}

// TestDaemonSlowSubscriberBoundedByBytes: large messages disconnect a stalled subscriber
// long before the event count limit, so its queue never holds more than
// subscriberQueueBytes.
func TestDaemonSlowSubscriberBoundedByBytes(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	defer d.Close()
	ctx := testCtx(t)
	topic := topicOf("big").Topic.String()
	slow, stop, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	msg := make([]byte, 1<<20)
	for i := 0; i < subscriberQueueBytes>>20+4; i++ {
		msg[0] = byte(i)
		if _, err := d.Publish(ctx, topic, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitUnsubscribed(t, d, topicOf("big").Topic)
	for range slow {
	}
}

func TestDaemonRefusesWorkWhenShuttingDown(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	ctx := testCtx(t)
	topic := topicOf("x").Topic.String()
	evs, stop, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	d.detachSubscribers()
	if _, ok := <-evs; ok {
		t.Fatal("subscriber not closed by detachSubscribers")
	}
	if _, _, err := d.Subscribe(ctx, topic, admin.FromFrontier); !errors.Is(err, admin.ErrNotReady) {
		t.Fatalf("Subscribe while closing: %v", err)
	}
	d.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonBadTopic(t *testing.T) {
	d := newDaemon(newMemNode(), quietLog(), nil, config.AckAutomatic, "test")
	defer d.Close()
	if _, err := d.Publish(testCtx(t), "", []byte("x")); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

// TestDaemonAPITopicCap: topics opened through the admin API are capped; topics of the
// topics file do not count and are always opened.
func TestDaemonAPITopicCap(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	d.maxAPITopics = 2
	defer d.Close()
	ctx := testCtx(t)
	if _, err := d.ensure(ctx, topicOf("file"), true); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := d.AddTopic(ctx, topicOf(name).Topic.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.AddTopic(ctx, topicOf("c").Topic.String()); !errors.Is(err, admin.ErrLimit) {
		t.Fatalf("third API topic: %v, want ErrLimit", err)
	}
	if _, err := d.Publish(ctx, topicOf("d").Topic.String(), []byte("x")); !errors.Is(err, admin.ErrLimit) {
		t.Fatalf("publish to a new topic beyond the cap: %v", err)
	}
	// Topics already open stay usable.
	if _, err := d.Publish(ctx, topicOf("a").Topic.String(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ensure(ctx, topicOf("file2"), true); err != nil {
		t.Fatalf("topics file beyond the API cap: %v", err)
	}
}
