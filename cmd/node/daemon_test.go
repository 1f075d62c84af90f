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

func recv(t *testing.T, ch <-chan admin.Event) admin.Event {
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
	return admin.Event{}
}

func TestDaemonSubscribeFromStartAndLive(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	handled := make(chan admin.Event, 100)
	d.afterEvent = func(ev admin.Event) { handled <- ev }
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
		ev := recv(t, start)
		if string(ev.Message) != want || ev.Seq != uint64(i) {
			t.Fatalf("from=start event %d = %q seq %d, want %q", i, ev.Message, ev.Seq, want)
		}
	}
	if ev := recv(t, live); string(ev.Message) != "d" {
		t.Fatalf("frontier subscriber got %q first, want d", ev.Message)
	}
	if _, err := d.Publish(ctx, chat, []byte("e")); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, start); string(ev.Message) != "e" {
		t.Fatalf("from=start after live: %q (duplicate?)", ev.Message)
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

func TestDaemonExplicitAck(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckExplicit, "test")
	handled := make(chan admin.Event, 10)
	d.afterEvent = func(ev admin.Event) { handled <- ev }
	defer d.Close()
	ctx := testCtx(t)
	topic := topicOf("x").Topic.String()
	// Nobody listening: not acked.
	if _, err := d.Publish(ctx, topic, []byte("unseen")); err != nil {
		t.Fatal(err)
	}
	recv(t, handled)
	evs, stop, err := d.Subscribe(ctx, topic, admin.FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res, err := d.Publish(ctx, topic, []byte("seen"))
	if err != nil {
		t.Fatal(err)
	}
	recv(t, evs)
	recv(t, handled)
	n.mu.Lock()
	acked := append([]string(nil), n.acked...)
	n.mu.Unlock()
	if len(acked) != 1 || acked[0] != res.Hash {
		t.Fatalf("acked = %v, want only %s", acked, res.Hash)
	}
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
	for i := 0; i < liveBuffer+10; i++ {
		if _, err := d.Publish(ctx, topic, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Do not read until the runner has fanned everything out (reading would make room).
	d.mu.Lock()
	r := d.topics[topicOf("x").Topic]
	d.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		left := len(r.subs)
		r.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slow subscriber never disconnected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := 0
	for range slow {
		got++
	}
	if got != liveBuffer {
		t.Fatalf("slow subscriber got %d events before being disconnected, want %d", got, liveBuffer)
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
