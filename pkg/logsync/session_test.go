package logsync

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
)

var testTopic = operation.Topic(operation.HashOf([]byte("test topic")))

type side struct {
	store  *memStore
	sink   *memSink
	events eventLog
	cfg    SessionConfig
	sess   *Session
}

func newSide() *side {
	st := newMemStore()
	return &side{store: st, sink: &memSink{store: st}}
}

// startPair connects a and b over an in-memory pipe, runs the handshake and starts both
// sessions. It returns channels with each side's Run result.
// pipeWithHandshake returns both ends of an in-memory pipe after a successful handshake.
func pipeWithHandshake(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ca, cb := net.Pipe()
	t.Cleanup(func() { ca.Close(); cb.Close() })
	hs := make(chan error, 1)
	go func() {
		_, err := AcceptHandshake(cb, time.Second*5, func(operation.Topic) string { return "" })
		hs <- err
	}()
	if err := InitiateHandshake(ca, testTopic, 5*time.Second); err != nil {
		t.Fatalf("initiate: %v", err)
	}
	if err := <-hs; err != nil {
		t.Fatalf("accept: %v", err)
	}
	return ca, cb
}

func startPair(t *testing.T, ctxA, ctxB context.Context, a, b *side) (<-chan error, <-chan error) {
	t.Helper()
	ca, cb := net.Pipe()
	t.Cleanup(func() { ca.Close(); cb.Close() })
	hs := make(chan error, 1)
	go func() {
		_, err := AcceptHandshake(cb, time.Second*5, func(operation.Topic) string { return "" })
		hs <- err
	}()
	if err := InitiateHandshake(ca, testTopic, 5*time.Second); err != nil {
		t.Fatalf("initiate: %v", err)
	}
	if err := <-hs; err != nil {
		t.Fatalf("accept: %v", err)
	}
	a.sess = NewSession(ca, SessionParams{ID: 1, Topic: testTopic, Peer: peer.ID("B"), Initiator: true,
		Store: a.store, Sink: a.sink, Config: a.cfg, OnEvent: a.events.add})
	b.sess = NewSession(cb, SessionParams{ID: 2, Topic: testTopic, Peer: peer.ID("A"),
		Store: b.store, Sink: b.sink, Config: b.cfg, OnEvent: b.events.add})
	ea, eb := make(chan error, 1), make(chan error, 1)
	go func() { ea <- a.sess.Run(ctxA) }()
	go func() { eb <- b.sess.Run(ctxB) }()
	return ea, eb
}

func wait(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("session did not end")
		return nil
	}
}

func syncOnce(t *testing.T, a, b *side) (error, error) {
	t.Helper()
	ea, eb := startPair(t, context.Background(), context.Background(), a, b)
	return wait(t, ea), wait(t, eb)
}

func findEvent[T Event](events []Event) []T {
	var out []T
	for _, e := range events {
		if v, ok := e.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestSessionEmptyEmpty(t *testing.T) {
	a, b := newSide(), newSide()
	errA, errB := syncOnce(t, a, b)
	if errA != nil || errB != nil {
		t.Fatalf("errors: %v / %v", errA, errB)
	}
	for _, s := range []*side{a, b} {
		started := findEvent[SyncStarted](s.events.all())
		ended := findEvent[SyncEnded](s.events.all())
		if len(started) != 1 || len(ended) != 1 {
			t.Fatalf("want one SyncStarted and one SyncEnded, got %v", s.events.all())
		}
		if started[0].IncomingOps != 0 || started[0].OutgoingOps != 0 || ended[0].Err != nil {
			t.Fatalf("unexpected events %+v %+v", started[0], ended[0])
		}
	}
}

func TestSessionOneSideHasData(t *testing.T) {
	a, b := newSide(), newSide()
	k1, k2 := mustKey(t), mustKey(t)
	fill(a.store, testTopic, makeLog(t, k1, testTopic, 0, 30, 100))
	fill(a.store, testTopic, makeLog(t, k2, testTopic, 0, 20, 0))
	errA, errB := syncOnce(t, a, b)
	if errA != nil || errB != nil {
		t.Fatalf("errors: %v / %v", errA, errB)
	}
	if !slices.Equal(a.store.hashes(), b.store.hashes()) || b.store.count() != 50 {
		t.Fatalf("b has %d ops, want a's 50", b.store.count())
	}
	st := a.sess.Stats()
	if st.SentOps != 50 || st.ReceivedOps != 0 {
		t.Fatalf("a stats %+v", st)
	}
	started := findEvent[SyncStarted](b.events.all())
	if len(started) != 1 || started[0].IncomingOps != 50 || started[0].OutgoingOps != 0 {
		t.Fatalf("b SyncStarted %+v", started)
	}
	if started[0].IncomingBytes != st.SentBytes {
		t.Fatalf("announced %d bytes, sent %d", started[0].IncomingBytes, st.SentBytes)
	}
	ended := findEvent[SyncEnded](b.events.all())
	if len(ended) != 1 || ended[0].ReceivedOps != 50 || ended[0].Err != nil {
		t.Fatalf("b SyncEnded %+v", ended)
	}
}

// Both sides have data the other lacks, including a log both know at different heights:
// one session converges both.
func TestSessionDisjointDataConvergesInOneSession(t *testing.T) {
	a, b := newSide(), newSide()
	ka, kb, kc := mustKey(t), mustKey(t), mustKey(t)
	shared := makeLog(t, kc, testTopic, 0, 10, 10)
	fill(a.store, testTopic, makeLog(t, ka, testTopic, 0, 15, 10))
	fill(b.store, testTopic, makeLog(t, kb, testTopic, 0, 25, 10))
	fill(a.store, testTopic, shared)
	fill(b.store, testTopic, shared[:4])
	errA, errB := syncOnce(t, a, b)
	if errA != nil || errB != nil {
		t.Fatalf("errors: %v / %v", errA, errB)
	}
	if a.store.count() != 50 || !slices.Equal(a.store.hashes(), b.store.hashes()) {
		t.Fatalf("not converged: a %d, b %d", a.store.count(), b.store.count())
	}
	if got := a.sess.Stats().SentOps; got != 15+6 {
		t.Fatalf("a sent %d ops, want 21 (its own log and the 6 missing shared entries)", got)
	}
	if got := b.sess.Stats().SentOps; got != 25 {
		t.Fatalf("b sent %d ops, want 25", got)
	}
}

// A log whose prefix was pruned is sent from its lowest stored entry, which carries the
// prune flag, and the receiver accepts it both when it has nothing and when it has an older
// prefix.
func TestSessionPrunedPrefix(t *testing.T) {
	k := mustKey(t)
	old := makeLog(t, k, testTopic, 0, 3, 5)
	pruned := makeLog(t, k, testTopic, 5, 5, 5) // seqs 5..9, 5 has the prune flag
	for _, name := range []string{"empty receiver", "receiver with old prefix"} {
		t.Run(name, func(t *testing.T) {
			a, b := newSide(), newSide()
			fill(a.store, testTopic, pruned)
			if name != "empty receiver" {
				fill(b.store, testTopic, old)
			}
			errA, errB := syncOnce(t, a, b)
			if errA != nil || errB != nil {
				t.Fatalf("errors: %v / %v", errA, errB)
			}
			got := b.store.rangeOf(k.PublicKey(), operation.LogIDFromTopic(testTopic), 5, 9)
			if len(got) != 5 || !got[0].Prune() {
				t.Fatalf("b has %d of the pruned log's entries", len(got))
			}
		})
	}
}

// --- a scripted peer speaking raw frames ---

type script struct {
	t    *testing.T
	conn net.Conn
	// msgs receives what the session under test sends; closed when reading fails.
	msgs chan *Message
}

func (s *script) send(m *Message) {
	s.t.Helper()
	if _, err := writeFrame(s.conn, m); err != nil {
		s.t.Fatalf("script send %s: %v", m.Kind, err)
	}
}

func (s *script) sendRaw(b []byte) {
	s.t.Helper()
	if _, err := s.conn.Write(b); err != nil {
		s.t.Fatalf("script send raw: %v", err)
	}
}

// read runs in the background, so the session never blocks writing to the synchronous pipe.
func (s *script) read() {
	defer close(s.msgs)
	var buf []byte
	for {
		m, err := readFrame(s.conn, 8<<20, &buf, DefaultLimits)
		if err != nil {
			return
		}
		s.msgs <- m
	}
}

// await returns the kinds received up to and including the first message of kind k.
func (s *script) await(k Kind) []Kind {
	s.t.Helper()
	var kinds []Kind
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				s.t.Fatalf("script: stream ended waiting for %s (got %v)", k, kinds)
			}
			kinds = append(kinds, m.Kind)
			if m.Kind == k {
				return kinds
			}
		case <-timeout:
			s.t.Fatalf("script: no %s (got %v)", k, kinds)
		}
	}
}

// startScripted runs a real session (the acceptor) against a script (the initiator).
func startScripted(t *testing.T, x *side) (*script, <-chan error) {
	t.Helper()
	ca, cb := net.Pipe()
	t.Cleanup(func() { ca.Close(); cb.Close() })
	errc := make(chan error, 1)
	go func() {
		if _, err := AcceptHandshake(cb, 5*time.Second, func(operation.Topic) string { return "" }); err != nil {
			errc <- err
			return
		}
		x.sess = NewSession(cb, SessionParams{ID: 7, Topic: testTopic, Peer: peer.ID("script"),
			Store: x.store, Sink: x.sink, Config: x.cfg, OnEvent: x.events.add})
		errc <- x.sess.Run(context.Background())
	}()
	if err := InitiateHandshake(ca, testTopic, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sc := &script{t: t, conn: ca, msgs: make(chan *Message, 1<<16)}
	go sc.read()
	return sc, errc
}

// Claims of huge heights only mean we push nothing; claims about logs we do not have are
// ignored.
func TestSessionHugeClaimedHeightsAreHarmless(t *testing.T) {
	x := newSide()
	k := mustKey(t)
	ops := makeLog(t, k, testTopic, 0, 5, 10)
	fill(x.store, testTopic, ops)
	sc, errc := startScripted(t, x)
	claim := Heights{
		k.PublicKey():             {operation.LogIDFromTopic(testTopic): math.MaxUint64},
		mustKey(t).PublicKey():    {operation.HashOf([]byte("x")): math.MaxUint64},
		operation.PublicKey{0xff}: {operation.LogID{}: math.MaxUint32},
	}
	sc.send(&Message{Kind: KindHave, Have: claim})
	sc.send(&Message{Kind: KindDone})
	kinds := sc.await(KindClose)
	// Non-live: Have, Done (nothing to push), Close; pings may not appear this quickly.
	if !slices.Equal(kinds, []Kind{KindHave, KindDone, KindClose}) {
		t.Fatalf("session sent %v", kinds)
	}
	sc.send(&Message{Kind: KindClose})
	if err := wait(t, errc); err != nil {
		t.Fatalf("session: %v", err)
	}
	if x.sess.Stats().SentOps != 0 {
		t.Fatal("pushed operations despite the peer claiming to have everything")
	}
}

// Every way a peer can break the protocol aborts the session with a typed error.
func TestSessionAbortsOnMisbehaviour(t *testing.T) {
	k := mustKey(t)
	good := makeLog(t, k, testTopic, 0, 3, 10)
	forged := *good[0]
	forged.HeaderBytes = append([]byte(nil), good[0].HeaderBytes...)
	forged.HeaderBytes[len(forged.HeaderBytes)-70] ^= 1 // inside the signature
	otherTopic := makeLog(t, k, operation.Topic{9}, 0, 1, 10)

	opMsg := func(op *operation.Operation) *Message {
		return &Message{Kind: KindOperation, Header: op.HeaderBytes, Body: op.Body}
	}
	presync := func(ops ...*operation.Operation) *Message {
		m := &Message{Kind: KindPreSync}
		for _, op := range ops {
			m.Ops++
			m.Bytes += uint64(op.Size())
		}
		return m
	}
	cases := []struct {
		name         string
		cfg          SessionConfig
		frames       func(s *script)
		want         error
		afterCatchUp bool
	}{
		{"garbage frame", SessionConfig{}, func(s *script) {
			s.sendRaw([]byte{0, 0, 0, 3, 0xff, 0x00, 0x01})
		}, ErrProtocol, false},
		{"oversized frame", SessionConfig{}, func(s *script) {
			s.sendRaw([]byte{0x7f, 0xff, 0xff, 0xff})
		}, ErrFrameTooLarge, false},
		{"oversized operation frame", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.sendRaw(binary.BigEndian.AppendUint32(nil, 3<<20))
		}, ErrFrameTooLarge, false},
		{"live before have", SessionConfig{}, func(s *script) {
			s.send(opMsg(good[0]))
		}, ErrUnexpectedMessage, false},
		{"operation without presync", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.send(opMsg(good[0]))
		}, ErrUnexpectedMessage, false},
		{"forged signature", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.send(presync(&forged))
			s.send(opMsg(&forged))
		}, ErrInvalidOperation, false},
		{"operation of another topic", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.send(presync(otherTopic[0]))
			s.send(opMsg(otherTopic[0]))
		}, ErrInvalidOperation, false},
		{"more ops than announced", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.send(presync(good[0]))
			s.send(opMsg(good[0]))
			s.send(opMsg(good[1]))
		}, ErrExceedsAnnounced, false},
		{"more bytes than announced", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			m := presync(good[0], good[1])
			m.Bytes--
			s.send(m)
			s.send(opMsg(good[0]))
			s.send(opMsg(good[1]))
		}, ErrExceedsAnnounced, false},
		{"too many logs in have", SessionConfig{Limits: Limits{MaxHaveEntries: 2}}, func(s *script) {
			s.send(&Message{Kind: KindHave, Have: Heights{
				{1}: {{1}: 1, {2}: 2},
				{2}: {{1}: 1},
			}})
		}, ErrTooManyLogs, false},
		{"ping during catch-up", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.send(&Message{Kind: KindPing})
		}, ErrUnexpectedMessage, false},
		{"handshake message mid-session", SessionConfig{}, func(s *script) {
			s.send(&Message{Kind: KindHave})
			s.send(&Message{Kind: KindDone})
			s.await(KindDone)
			s.send(&Message{Kind: KindTopic, Topic: testTopic})
		}, ErrUnexpectedMessage, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newSide()
			x.cfg = c.cfg
			x.cfg.Live = true
			sc, errc := startScripted(t, x)
			c.frames(sc)
			err := wait(t, errc)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !Misbehaving(err) {
				t.Fatalf("%v should count as misbehaviour", err)
			}
			// SyncEnded comes exactly once: with the error, or (for failures in the live
			// phase) earlier, when catch-up completed.
			if ended := findEvent[SyncEnded](x.events.all()); len(ended) != 1 || (ended[0].Err == nil) != c.afterCatchUp {
				t.Fatalf("want one SyncEnded, failed=%v, got %v", !c.afterCatchUp, x.events.all())
			}
		})
	}
}

// A duplicate within the session reaches the sink once; it still counts against PreSync.
func TestSessionDedup(t *testing.T) {
	x := newSide()
	k := mustKey(t)
	ops := makeLog(t, k, testTopic, 0, 2, 10)
	sc, errc := startScripted(t, x)
	sc.send(&Message{Kind: KindHave})
	sc.send(&Message{Kind: KindPreSync, Ops: 3, Bytes: uint64(2*ops[0].Size() + ops[1].Size())})
	for _, op := range []*operation.Operation{ops[0], ops[0], ops[1]} {
		sc.send(&Message{Kind: KindOperation, Header: op.HeaderBytes, Body: op.Body})
	}
	sc.send(&Message{Kind: KindDone})
	// The session is not live: it closes after catch-up and waits for our Close.
	sc.await(KindClose)
	sc.send(&Message{Kind: KindClose})
	if err := wait(t, errc); err != nil {
		t.Fatalf("session: %v", err)
	}
	if got := x.sink.received.Load(); got != 2 {
		t.Fatalf("sink saw %d operations, want 2", got)
	}
	if got := x.sess.Stats().ReceivedOps; got != 3 {
		t.Fatalf("stats count %d received, want 3", got)
	}
}

func TestSessionLiveForwarding(t *testing.T) {
	a, b := newSide(), newSide()
	a.cfg.Live, b.cfg.Live = true, true
	k := mustKey(t)
	ops := makeLog(t, k, testTopic, 0, 6, 10)
	fill(a.store, testTopic, ops[:2])
	// b behaves like a node: what it stores it publishes to its live sessions, which must
	// not echo it back to a.
	b.sink.onStored = func(_ operation.Topic, op *operation.Operation) { b.sess.Enqueue(op.HeaderBytes, op.Body) }
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ea, eb := startPair(t, ctxA, context.Background(), a, b)
	waitFor(t, func() bool { return b.store.count() == 2 })
	for _, op := range ops[2:] {
		fill(a.store, testTopic, []*operation.Operation{op})
		if !a.sess.Enqueue(op.HeaderBytes, op.Body) {
			t.Fatal("enqueue overflowed")
		}
	}
	waitFor(t, func() bool { return b.store.count() == 6 })
	cancelA()
	if err := wait(t, ea); !errors.Is(err, context.Canceled) {
		t.Fatalf("a: %v, want context.Canceled", err)
	}
	if err := wait(t, eb); err != nil {
		t.Fatalf("b: %v", err)
	}
	if got := a.sink.received.Load(); got != 0 {
		t.Fatalf("b echoed %d operations back to a", got)
	}
	if !slices.Equal(a.store.hashes(), b.store.hashes()) {
		t.Fatal("stores differ")
	}
	if st := a.sess.Stats(); st.SentOps != 6 {
		t.Fatalf("a sent %d, want 6", st.SentOps)
	}
}

// A live session whose queue overflows closes (so the retry re-syncs) instead of dropping.
func TestSessionQueueOverflowCloses(t *testing.T) {
	a, b := newSide(), newSide()
	a.cfg = SessionConfig{Live: true, QueueSize: 1}
	b.cfg.Live = true
	k := mustKey(t)
	ops := makeLog(t, k, testTopic, 0, 3, 10)
	// Block b's reading so a's sender stalls and its queue fills.
	release := make(chan struct{})
	b.sink.onStored = func(operation.Topic, *operation.Operation) { <-release }
	ea, eb := startPair(t, context.Background(), context.Background(), a, b)
	waitFor(t, func() bool { return len(findEvent[SyncEnded](a.events.all())) == 1 })
	overflowed := false
	for i := 0; i < 100 && !overflowed; i++ {
		overflowed = !a.sess.Enqueue(ops[i%3].HeaderBytes, ops[i%3].Body)
	}
	close(release)
	if !overflowed {
		t.Fatal("queue never overflowed")
	}
	if err := wait(t, ea); !errors.Is(err, ErrQueueOverflow) {
		t.Fatalf("a: %v, want ErrQueueOverflow", err)
	}
	if err := wait(t, eb); err != nil {
		t.Fatalf("b: %v", err)
	}
}

// A silent peer in live mode is dropped after the idle timeout; two live sessions keep each
// other alive with pings meanwhile.
func TestSessionIdleTimeoutAndPing(t *testing.T) {
	t.Run("pings keep it alive", func(t *testing.T) {
		a, b := newSide(), newSide()
		fast := Timeouts{Idle: 300 * time.Millisecond}
		a.cfg = SessionConfig{Live: true, Timeouts: fast}
		b.cfg = SessionConfig{Live: true, Timeouts: fast}
		ctx, cancel := context.WithCancel(context.Background())
		ea, eb := startPair(t, ctx, context.Background(), a, b)
		select {
		case err := <-ea:
			t.Fatalf("a ended while idle: %v", err)
		case err := <-eb:
			t.Fatalf("b ended while idle: %v", err)
		case <-time.After(1500 * time.Millisecond):
		}
		cancel()
		if err := wait(t, ea); !errors.Is(err, context.Canceled) {
			t.Fatalf("a: %v", err)
		}
		if err := wait(t, eb); err != nil {
			t.Fatalf("b: %v", err)
		}
	})
	t.Run("silent peer times out", func(t *testing.T) {
		x := newSide()
		x.cfg = SessionConfig{Live: true, Timeouts: Timeouts{Idle: 300 * time.Millisecond}}
		sc, errc := startScripted(t, x)
		sc.send(&Message{Kind: KindHave})
		sc.send(&Message{Kind: KindDone})
		err := wait(t, errc)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %v, want a timeout", err)
		}
		if Misbehaving(err) {
			t.Fatal("a timeout is not misbehaviour")
		}
	})
}

func TestSessionStreamEndWithoutClose(t *testing.T) {
	x := newSide()
	x.cfg.Live = true
	sc, errc := startScripted(t, x)
	sc.send(&Message{Kind: KindHave})
	sc.send(&Message{Kind: KindDone})
	sc.await(KindDone)
	sc.conn.Close()
	if err := wait(t, errc); !errors.Is(err, ErrUnexpectedClosure) {
		t.Fatalf("got %v, want ErrUnexpectedClosure", err)
	}
}

func TestHandshakeReject(t *testing.T) {
	ca, cb := net.Pipe()
	defer ca.Close()
	defer cb.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := AcceptHandshake(cb, 5*time.Second, func(operation.Topic) string { return ReasonNotSubscribed })
		errc <- err
	}()
	err := InitiateHandshake(ca, testTopic, 5*time.Second)
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Reason != ReasonNotSubscribed || !errors.Is(err, ErrRejected) {
		t.Fatalf("got %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrRejected) {
		t.Fatalf("acceptor: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	waitForOr(t, cond, func() { t.Fatal("condition not reached") })
}

// waitForOr polls cond until it holds or a generous failure guard expires, then calls fail.
func waitForOr(t *testing.T, cond func() bool, fail func()) {
	t.Helper()
	if err := testutil.PollEvery(context.Background(), 20*time.Second, 5*time.Millisecond,
		func() (bool, error) { return cond(), nil }); err != nil {
		fail()
	}
}

// A queued operation is flushed even when the next queued one is a duplicate that is skipped
// (regression: it used to wait in the buffer for the next Ping).
func TestSessionLiveFlushAfterSkippedDuplicate(t *testing.T) {
	x := newSide()
	x.cfg = SessionConfig{Live: true, Timeouts: Timeouts{Idle: 10 * time.Minute}}
	ops := []*operation.Operation{
		makeLog(t, mustKey(t), testTopic, 0, 1, 10)[0],
		makeLog(t, mustKey(t), testTopic, 0, 1, 10)[0],
	}
	sc, errc := startScripted(t, x)
	sc.send(&Message{Kind: KindHave})
	sc.send(&Message{Kind: KindDone})
	sc.await(KindDone)
	// ops[1] arrives from the peer, so it is in the session's dedup ring.
	sc.send(&Message{Kind: KindLive, Header: ops[1].HeaderBytes, Body: ops[1].Body})
	waitFor(t, func() bool { return x.sink.received.Load() == 1 })
	x.sess.Enqueue(ops[0].HeaderBytes, ops[0].Body)
	x.sess.Enqueue(ops[1].HeaderBytes, ops[1].Body)
	sc.await(KindLive)
	sc.send(&Message{Kind: KindClose})
	sc.await(KindClose)
	if err := wait(t, errc); err != nil {
		t.Fatalf("session: %v", err)
	}
	if st := x.sess.Stats(); st.SentOps != 1 {
		t.Fatalf("sent %d live operations, want 1 (the duplicate is skipped)", st.SentOps)
	}
}

// An idle live session holds no read or write buffer (a node following thousands of topics
// has that many idle sessions per peer), and borrows them again when operations flow.
func TestIdleSessionHoldsNoBuffers(t *testing.T) {
	a, b := newSide(), newSide()
	a.cfg.Live, b.cfg.Live = true, true
	k := mustKey(t)
	ops := makeLog(t, k, testTopic, 0, 101, 1024)
	fill(a.store, testTopic, ops[:100])
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ea, eb := startPair(t, ctxA, context.Background(), a, b)
	waitFor(t, func() bool { return b.store.count() == 100 })
	idle := func() bool { return a.sess.buffers.Load() == 0 && b.sess.buffers.Load() == 0 }
	waitFor(t, idle)
	fill(a.store, testTopic, ops[100:])
	if !a.sess.Enqueue(ops[100].HeaderBytes, ops[100].Body) {
		t.Fatal("enqueue overflowed")
	}
	waitFor(t, func() bool { return b.store.count() == 101 })
	waitFor(t, idle)
	cancelA()
	if err := wait(t, ea); !errors.Is(err, context.Canceled) {
		t.Fatalf("a: %v, want context.Canceled", err)
	}
	if err := wait(t, eb); err != nil {
		t.Fatalf("b: %v", err)
	}
	if a.sess.buffers.Load() != 0 || b.sess.buffers.Load() != 0 {
		t.Fatalf("ended sessions hold %d and %d buffers", a.sess.buffers.Load(), b.sess.buffers.Load())
	}
}
