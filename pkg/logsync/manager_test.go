package logsync

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pandanet/pandanet/pkg/operation"
)

const testProto = protocol.ID("/pandanet/test/sync/1")

type testNode struct {
	h      host.Host
	m      *Manager
	store  *memStore
	sink   *memSink
	events eventLog
	closed bool
}

func newHost(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}
	if key != nil {
		opts = append(opts, libp2p.Identity(key))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newTestNode starts a host and a manager whose sink, like the node, publishes what it
// stored to the live sessions of the topic.
func newTestNode(t testing.TB, key crypto.PrivKey, cfg Config) *testNode {
	t.Helper()
	n := &testNode{h: newHost(t, key), store: newMemStore()}
	n.sink = &memSink{store: n.store}
	cfg.Protocol, cfg.Store, cfg.Sink, cfg.OnEvent = testProto, n.store, n.sink, n.events.add
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	}
	m, err := NewManager(n.h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	n.sink.onStored = func(topic operation.Topic, op *operation.Operation) { m.Publish(topic, op.HeaderBytes, op.Body) }
	t.Cleanup(n.close)
	return n
}

func (n *testNode) close() {
	if n.closed {
		return
	}
	n.closed = true
	_ = n.m.Close()
	_ = n.h.Close()
}

// know tells a's peerstore how to reach b.
func know(a, b *testNode) {
	a.h.Peerstore().AddAddrs(b.h.ID(), b.h.Addrs(), peerstore.PermanentAddrTTL)
}

func (n *testNode) mustSubscribe(t testing.TB, topic operation.Topic) {
	t.Helper()
	if err := n.m.Subscribe(topic); err != nil {
		t.Fatal(err)
	}
}

func (n *testNode) mustAddPeer(t testing.TB, topic operation.Topic, p peer.ID) {
	t.Helper()
	if err := n.m.AddPeer(topic, p); err != nil {
		t.Fatal(err)
	}
}

// streams counts open sync streams from a to b.
func streams(a, b *testNode) int {
	n := 0
	for _, c := range a.h.Network().ConnsToPeer(b.h.ID()) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == testProto {
				n++
			}
		}
	}
	return n
}

func TestManagerThreeHostsConverge(t *testing.T) {
	nodes := []*testNode{newTestNode(t, nil, Config{}), newTestNode(t, nil, Config{}), newTestNode(t, nil, Config{})}
	a, b, c := nodes[0], nodes[1], nodes[2]
	var all []*operation.Operation
	for _, n := range nodes {
		n.mustSubscribe(t, testTopic)
		ops := makeLog(t, mustKey(t), testTopic, 0, 20, 64)
		fill(n.store, testTopic, ops)
		all = append(all, ops...)
	}
	know(a, b)
	know(b, c)
	know(c, b)
	a.mustAddPeer(t, testTopic, b.h.ID())
	// b and c both initiate: the tie-break must leave one session between them.
	b.mustAddPeer(t, testTopic, c.h.ID())
	c.mustAddPeer(t, testTopic, b.h.ID())

	for i, n := range nodes {
		waitForOr(t, func() bool { return n.store.count() == 60 }, func() {
			for j, n := range nodes {
				t.Logf("node %d (%s) has %d ops; events:", j, n.h.ID(), n.store.count())
				for _, e := range n.events.all() {
					t.Logf("  %T %+v", e, e)
				}
			}
			buf := make([]byte, 1<<22)
			t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
			t.Fatalf("node %d did not converge", i)
		})
	}
	// A new operation at a reaches c through b's live sessions.
	key := mustKey(t)
	extra := makeLog(t, key, testTopic, 0, 1, 10)[0]
	a.store.put(testTopic, extra)
	a.m.Publish(testTopic, extra.HeaderBytes, extra.Body)
	for _, n := range nodes {
		waitFor(t, func() bool { return n.store.count() == 61 })
	}
	if !slices.Equal(a.store.hashes(), c.store.hashes()) || !slices.Equal(a.store.hashes(), b.store.hashes()) {
		t.Fatal("stores differ")
	}
	waitFor(t, func() bool { return streams(b, c) == 1 && streams(c, b) == 1 })
	if p := b.m.Peers(testTopic); len(p) != 2 {
		t.Fatalf("b has sessions with %v, want a and c", p)
	}
	for _, n := range nodes {
		for _, f := range findEvent[SessionFailed](n.events.all()) {
			if f.Misbehaving {
				t.Fatalf("misbehaviour reported between honest peers: %v", f.Err)
			}
		}
	}
}

func TestManagerRejectsUnsubscribedTopic(t *testing.T) {
	a, b := newTestNode(t, nil, Config{}), newTestNode(t, nil, Config{})
	other := operation.Topic{42}
	a.mustSubscribe(t, testTopic)
	b.mustSubscribe(t, other)
	know(a, b)
	a.mustAddPeer(t, testTopic, b.h.ID())
	var failed SessionFailed
	waitFor(t, func() bool {
		f := findEvent[SessionFailed](a.events.all())
		if len(f) > 0 {
			failed = f[0]
		}
		return len(f) > 0
	})
	var rej *RejectError
	if !errors.As(failed.Err, &rej) || rej.Reason != ReasonNotSubscribed {
		t.Fatalf("got %v, want a reject for an unserved topic", failed.Err)
	}
	if failed.Misbehaving || failed.SessionID != 0 || failed.Peer != b.h.ID() {
		t.Fatalf("unexpected failure event %+v", failed)
	}
	if err := a.m.AddPeer(other, b.h.ID()); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("AddPeer on an unsubscribed topic: %v", err)
	}
	if got := b.sink.received.Load(); got != 0 {
		t.Fatalf("b received %d operations", got)
	}
}

func TestManagerRetriesAfterRemoteRestarts(t *testing.T) {
	a := newTestNode(t, nil, Config{})
	a.mustSubscribe(t, testTopic)
	fill(a.store, testTopic, makeLog(t, mustKey(t), testTopic, 0, 30, 32))
	bKey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, bKey, Config{})
	b.mustSubscribe(t, testTopic)
	know(a, b)
	a.mustAddPeer(t, testTopic, b.h.ID())
	waitFor(t, func() bool { return b.store.count() == 30 })

	// b goes away (losing its data) and comes back with the same identity at a new address.
	b.close()
	b2 := newTestNode(t, bKey, Config{})
	b2.mustSubscribe(t, testTopic)
	know(a, b2)
	waitFor(t, func() bool { return b2.store.count() == 30 })
	if !slices.Equal(a.store.hashes(), b2.store.hashes()) {
		t.Fatal("b2 holds other operations than a")
	}
	// The retry's SyncStarted is emitted from a's session goroutine and may be recorded
	// after b2 already stored everything: wait for it rather than look once.
	waitForOr(t, func() bool { return len(findEvent[SyncStarted](a.events.all())) >= 2 }, func() {
		t.Fatalf("a started %d sessions, want a retry after the restart", len(findEvent[SyncStarted](a.events.all())))
	})
}

// RemovePeer ends the session and the retries; the peer is left alone.
func TestManagerRemovePeerAndUnsubscribe(t *testing.T) {
	a, b := newTestNode(t, nil, Config{}), newTestNode(t, nil, Config{})
	a.mustSubscribe(t, testTopic)
	b.mustSubscribe(t, testTopic)
	know(a, b)
	a.mustAddPeer(t, testTopic, b.h.ID())
	waitFor(t, func() bool { return len(a.m.Peers(testTopic)) == 1 && len(b.m.Peers(testTopic)) == 1 })
	a.m.RemovePeer(testTopic, b.h.ID())
	waitFor(t, func() bool { return len(a.m.Peers(testTopic)) == 0 && len(b.m.Peers(testTopic)) == 0 })

	a.mustAddPeer(t, testTopic, b.h.ID())
	waitFor(t, func() bool { return len(b.m.Peers(testTopic)) == 1 })
	b.m.Unsubscribe(testTopic)
	waitFor(t, func() bool { return len(b.m.Peers(testTopic)) == 0 })
	// a keeps retrying and is now rejected.
	waitFor(t, func() bool {
		for _, f := range findEvent[SessionFailed](a.events.all()) {
			var rej *RejectError
			if errors.As(f.Err, &rej) && rej.Reason == ReasonNotSubscribed {
				return true
			}
		}
		return false
	})
}

// In catch-up-only mode a session ends after catch-up and the peer is synced again when it
// is added again (or reconnects).
func TestManagerCatchUpOnly(t *testing.T) {
	a := newTestNode(t, nil, Config{CatchUpOnly: true})
	b := newTestNode(t, nil, Config{CatchUpOnly: true})
	a.mustSubscribe(t, testTopic)
	b.mustSubscribe(t, testTopic)
	fill(a.store, testTopic, makeLog(t, mustKey(t), testTopic, 0, 10, 8))
	know(a, b)
	a.mustAddPeer(t, testTopic, b.h.ID())
	waitFor(t, func() bool { return b.store.count() == 10 })
	waitFor(t, func() bool { return len(a.m.Peers(testTopic)) == 0 })
	// No live forwarding in this mode: the next operation travels on the next AddPeer.
	op := makeLog(t, mustKey(t), testTopic, 0, 1, 8)[0]
	a.store.put(testTopic, op)
	a.m.Publish(testTopic, op.HeaderBytes, op.Body)
	a.mustAddPeer(t, testTopic, b.h.ID())
	waitFor(t, func() bool { return b.store.count() == 11 })
	if !slices.Equal(a.store.hashes(), b.store.hashes()) {
		t.Fatal("b holds other operations than a")
	}
	if f := findEvent[SessionFailed](a.events.all()); len(f) != 0 {
		t.Fatalf("failures: %v", f[0].Err)
	}
	// Every session that started also ended, exactly once, on both sides.
	for _, n := range []*testNode{a, b} {
		waitFor(t, func() bool { return len(n.m.Peers(testTopic)) == 0 })
		ended := map[uint64]int{}
		for _, e := range findEvent[SessionEnded](n.events.all()) {
			ended[e.SessionID]++
		}
		started := findEvent[SyncStarted](n.events.all())
		if len(started) < 2 || len(ended) != len(started) {
			t.Fatalf("%d sessions started, %d ended: %v", len(started), len(ended), ended)
		}
		for _, st := range started {
			if ended[st.SessionID] != 1 {
				t.Fatalf("session %d ended %d times", st.SessionID, ended[st.SessionID])
			}
		}
	}
}

// A peer sharing more topics than MaxInboundPerPeer keeps a live session for every one of
// them (established sessions are bounded by the topics we serve, one per topic), while
// handshakes in flight from one peer stay capped.
func TestManagerManyTopicsBeyondPerPeerCap(t *testing.T) {
	const perPeer, topics = 4, 40
	a := newTestNode(t, nil, Config{MaxInboundPerPeer: perPeer})
	b := newTestNode(t, nil, Config{MaxInboundPerPeer: perPeer})
	key := mustKey(t)
	var names []operation.Topic
	for i := range topics {
		tp := operation.Topic(operation.HashOf([]byte(fmt.Sprint("many topics ", i))))
		names = append(names, tp)
		a.mustSubscribe(t, tp)
		b.mustSubscribe(t, tp)
		fill(a.store, tp, makeLog(t, key, tp, 0, 2, 16))
	}
	know(a, b)
	know(b, a)
	// Both initiate every topic, as two nodes that discovered each other do.
	for _, tp := range names {
		a.mustAddPeer(t, tp, b.h.ID())
		b.mustAddPeer(t, tp, a.h.ID())
	}
	waitForOr(t, func() bool { return b.store.count() == 2*topics }, func() {
		t.Fatalf("b stored %d of %d operations", b.store.count(), 2*topics)
	})
	live := func() int {
		n := 0
		for _, tp := range names {
			n += len(b.m.Peers(tp))
		}
		return n
	}
	waitFor(t, func() bool { return live() == topics })

	// Handshakes in flight: streams that never finish their Topic frame.
	unsettled := func() int {
		a.m.mu.Lock()
		defer a.m.mu.Unlock()
		return a.m.unsettled[b.h.ID()]
	}
	var silent []network.Stream
	for range perPeer {
		s, err := b.h.NewStream(context.Background(), a.h.ID(), testProto)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte{0x05}); err != nil { // a partial frame
			t.Fatal(err)
		}
		silent = append(silent, s)
	}
	waitFor(t, func() bool { return unsettled() == perPeer })
	s, err := b.h.NewStream(context.Background(), a.h.ID(), testProto)
	if err != nil {
		t.Fatal(err)
	}
	var rej *RejectError
	if err := InitiateHandshake(s, names[0], 5*time.Second); !errors.As(err, &rej) || rej.Reason != ReasonBusy {
		t.Fatalf("handshake beyond %d in flight: %v, want rejected busy", perPeer, err)
	}
	_ = s.Reset()
	for _, s := range silent {
		_ = s.Reset()
	}
	waitFor(t, func() bool { return unsettled() == 0 })
	// The established sessions were untouched.
	if n := live(); n != topics {
		t.Fatalf("%d live sessions after the handshake flood, want %d", n, topics)
	}
}
