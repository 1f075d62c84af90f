package logsync

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// A log the receiver refuses is answered with Refuse: the pusher stops pushing it, the
// session completes for the other logs, and a later session with the same refusal memory
// does not push the refused log again.
func TestSessionRefusalStopsLogAndSessionContinues(t *testing.T) {
	a, b := newSide(), newSide()
	bad, good := mustKey(t), mustKey(t)
	badLog := makeLog(t, bad, testTopic, 0, 4000, 100)
	goodLog := makeLog(t, good, testTopic, 0, 50, 100)
	fill(a.store, testTopic, badLog)
	fill(a.store, testTopic, goodLog)
	b.sink.refuse = map[operation.PublicKey]string{bad.PublicKey(): "not_writer"}

	mem := newRefusalMemory(DefaultRefusalTTL)
	run := func() (error, error) {
		ca, cb := pipeWithHandshake(t)
		a.sess = NewSession(ca, SessionParams{ID: 1, Topic: testTopic, Peer: peer.ID("B"), Initiator: true,
			Store: a.store, Sink: a.sink, OnEvent: a.events.add, refusals: mem})
		b.sess = NewSession(cb, SessionParams{ID: 2, Topic: testTopic, Peer: peer.ID("A"),
			Store: b.store, Sink: b.sink, OnEvent: b.events.add})
		ea, eb := make(chan error, 1), make(chan error, 1)
		go func() { ea <- a.sess.Run(context.Background()) }()
		go func() { eb <- b.sess.Run(context.Background()) }()
		return wait(t, ea), wait(t, eb)
	}
	errA, errB := run()
	if errA != nil || errB != nil {
		t.Fatalf("session errors: %v / %v", errA, errB)
	}
	want := make([]string, 0, len(goodLog))
	for _, op := range goodLog {
		want = append(want, op.Hash.String())
	}
	slices.Sort(want)
	if got := b.store.hashes(); !slices.Equal(got, want) {
		t.Fatalf("b stores %d operations, want exactly the good author's %d", len(got), len(want))
	}
	if n := b.sink.refused.Load(); n != 1 {
		t.Fatalf("sink saw %d refused operations, want 1 (the rest of the log is dropped by the session)", n)
	}
	got := findEvent[Refused](a.events.all())
	if len(got) != 1 || got[0].Author != bad.PublicKey() || got[0].Reason != "not_writer" || got[0].Outgoing {
		t.Fatalf("pusher's Refused events: %+v", got)
	}
	if out := findEvent[Refused](b.events.all()); len(out) != 1 || !out[0].Outgoing {
		t.Fatalf("receiver's Refused events: %+v", out)
	}
	// The pusher learns of the refusal once its first buffers went out (64 KiB write and
	// read buffers, about 250 operations each), far from the 4000 the log has.
	if sent := a.sess.Stats().SentOps; sent >= uint64(len(badLog)/2) {
		t.Fatalf("pusher sent %d operations: it did not stop pushing the refused log", sent)
	}

	// The next session does not push the refused log at all.
	refusedBefore := b.sink.refused.Load()
	errA, errB = run()
	if errA != nil || errB != nil {
		t.Fatalf("second session errors: %v / %v", errA, errB)
	}
	started := findEvent[SyncStarted](a.events.all())
	if last := started[len(started)-1]; last.OutgoingOps != 0 {
		t.Fatalf("second session announced %d operations, want 0", last.OutgoingOps)
	}
	if b.sink.refused.Load() != refusedBefore {
		t.Fatal("the refused log was pushed again")
	}
}

// A peer that keeps pushing a log after our Refuse is aborted as misbehaving once it has
// sent RefusalGrace bytes of it; nothing of it is stored and the sink saw it once.
func TestSessionIgnoredRefusalAborts(t *testing.T) {
	x := newSide()
	x.cfg.Live = true
	x.cfg.RefusalGrace = 256 << 10
	bad := mustKey(t)
	flood := makeLog(t, bad, testTopic, 0, 2000, 1024)
	x.sink.refuse = map[operation.PublicKey]string{bad.PublicKey(): "over_quota"}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	sc, errc := startScripted(t, x)
	sc.send(&Message{Kind: KindHave})
	var ops, size uint64
	for _, op := range flood {
		ops, size = ops+1, size+uint64(op.Size())
	}
	sc.send(&Message{Kind: KindPreSync, Ops: ops, Bytes: size})
	sc.send(&Message{Kind: KindOperation, Header: flood[0].HeaderBytes, Body: flood[0].Body})
	sc.await(KindRefuse)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, op := range flood[1:] {
			if _, err := writeFrame(sc.conn, &Message{Kind: KindOperation, Header: op.HeaderBytes, Body: op.Body}); err != nil {
				return // the session cut us off
			}
		}
	}()
	err := wait(t, errc)
	sc.conn.Close()
	<-done
	if !errors.Is(err, ErrIgnoredRefusal) || !Misbehaving(err) {
		t.Fatalf("got %v, want ErrIgnoredRefusal (misbehaving)", err)
	}
	if n := x.sink.received.Load(); n != 1 {
		t.Fatalf("sink received %d operations, want only the first", n)
	}
	if x.store.count() != 0 {
		t.Fatalf("%d refused operations stored", x.store.count())
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The flood is over 2 MiB; dropping it must not retain it.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("heap grew by %d bytes during the flood", grew)
	}
}

func TestRefuseMessageRoundTrip(t *testing.T) {
	m := &Message{Kind: KindRefuse, Author: operation.PublicKey{1, 2}, Log: operation.LogID{3}, Reason: "over_quota"}
	b, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessage(b, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != KindRefuse || got.Author != m.Author || got.Log != m.Log || got.Reason != m.Reason {
		t.Fatalf("round trip: %+v", got)
	}
	// A Refuse with a short author is malformed.
	bad, _ := msgEncMode.Marshal(&wireMessage{Kind: uint8(KindRefuse), Author: []byte{1}, Log: make([]byte, 32)})
	if _, err := DecodeMessage(bad, DefaultLimits); !errors.Is(err, ErrProtocol) {
		t.Fatalf("short author: %v", err)
	}
}
