package fault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/p2p"
)

var abuseNetwork = operation.NetworkID(operation.HashOf([]byte("pandanet abuse suite")))

var abuseTopic = operation.Topic(operation.HashOf([]byte("abuse")))

func loopback() []ma.Multiaddr { return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")} }

// failures records the honest node's failed sync sessions.
type failures struct {
	mu  stdsync.Mutex
	evs []logsync.SessionFailed
	// ended counts, per peer, the ended sessions it had opened to us.
	ended map[peer.ID]int
}

func (f *failures) add(ev logsync.Event) {
	switch e := ev.(type) {
	case logsync.SessionFailed:
		f.mu.Lock()
		f.evs = append(f.evs, e)
		f.mu.Unlock()
	case logsync.SessionEnded:
		if !e.Initiator {
			f.mu.Lock()
			if f.ended == nil {
				f.ended = map[peer.ID]int{}
			}
			f.ended[e.Peer]++
			f.mu.Unlock()
		}
	}
}

func (f *failures) endedFrom(p peer.ID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended[p]
}

// wait returns the first misbehaving failure after index from whose error is target.
func (f *failures) wait(t *testing.T, from int, target error) logsync.SessionFailed {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		f.mu.Lock()
		evs := append([]logsync.SessionFailed(nil), f.evs[min(from, len(f.evs)):]...)
		f.mu.Unlock()
		for _, e := range evs {
			if e.Misbehaving && errors.Is(e.Err, target) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no misbehaving session failure wrapping %q; got %v", target, evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *failures) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.evs)
}

// attacker is a raw pandanet host of the same network that speaks log sync by hand.
type attacker struct {
	t      *testing.T
	host   *p2p.Host
	key    operation.PrivateKey
	target peer.ID
	proto  protocol.ID
}

type rawSession struct {
	t   *testing.T
	str network.Stream
}

func (a *attacker) open(ctx context.Context, topic operation.Topic) (*rawSession, error) {
	str, err := a.host.Libp2p().NewStream(ctx, a.target, a.proto)
	if err != nil {
		return nil, err
	}
	if err := logsync.InitiateHandshake(str, topic, 10*time.Second); err != nil {
		str.Reset()
		return nil, err
	}
	return &rawSession{t: a.t, str: str}, nil
}

// session opens a session on the abuse topic or fails t.
func (a *attacker) session(ctx context.Context, t *testing.T) *rawSession {
	t.Helper()
	s, err := a.open(ctx, abuseTopic)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *rawSession) send(m *logsync.Message) error {
	body, err := logsync.EncodeMessage(m)
	if err != nil {
		s.t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	_ = s.str.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = s.str.Write(append(frame, body...))
	return err
}

func (s *rawSession) recv() (*logsync.Message, error) {
	_ = s.str.SetReadDeadline(time.Now().Add(20 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(s.str, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(s.str, body); err != nil {
		return nil, err
	}
	return logsync.DecodeMessage(body, logsync.Limits{MaxFrameSize: 4 << 20, MaxHaveEntries: 200_000})
}

// catchUp sends have, then reads the honest node's Have and everything it pushes until its
// Done; it returns the number of operations pushed to us.
func (s *rawSession) catchUp(have logsync.Heights) int {
	s.t.Helper()
	if err := s.send(&logsync.Message{Kind: logsync.KindHave, Have: have}); err != nil {
		s.t.Fatal(err)
	}
	pushed := 0
	for {
		m, err := s.recv()
		if err != nil {
			s.t.Fatalf("reading the honest node's catch-up: %v", err)
		}
		switch m.Kind {
		case logsync.KindDone:
			return pushed
		case logsync.KindOperation:
			pushed++
		}
	}
}

// push announces and sends ops, then Done.
func (s *rawSession) push(ops ...*operation.Operation) error {
	var n uint64
	for _, op := range ops {
		n += uint64(len(op.HeaderBytes) + len(op.Body))
	}
	if err := s.send(&logsync.Message{Kind: logsync.KindPreSync, Ops: uint64(len(ops)), Bytes: n}); err != nil {
		return err
	}
	for _, op := range ops {
		if err := s.send(&logsync.Message{Kind: logsync.KindOperation, Header: op.HeaderBytes, Body: op.Body}); err != nil {
			return err
		}
	}
	return s.send(&logsync.Message{Kind: logsync.KindDone})
}

// pushInvalid sends bad(0) in the catch-up phase, then keeps sending further distinct
// invalid operations as Live messages until the honest node aborts. The node checks an
// operation's validation result asynchronously and fails the session on the peer's next
// operation (see docs/reliability.md), so a lone invalid operation is dropped but only the
// following one ends the session.
func (s *rawSession) pushInvalid(bad func(i int) *operation.Operation) {
	s.t.Helper()
	if err := s.push(bad(0)); err != nil {
		s.t.Fatal(err)
	}
	for i := 1; i < 500; i++ {
		op := bad(i)
		if err := s.send(&logsync.Message{Kind: logsync.KindLive, Header: op.HeaderBytes, Body: op.Body}); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.expectAbort()
}

// expectAbort waits until the honest node ends the stream (reset or EOF).
func (s *rawSession) expectAbort() {
	s.t.Helper()
	for {
		m, err := s.recv()
		if err != nil {
			s.str.Reset()
			return
		}
		if m.Kind == logsync.KindClose {
			s.t.Fatalf("honest node closed gracefully instead of aborting")
		}
	}
}

// sign makes a valid operation of the attacker's log for abuseTopic.
func (a *attacker) sign(seq uint64, backlink operation.Hash, body string) *operation.Operation {
	a.t.Helper()
	op, err := operation.Sign(a.key, operation.Draft{SeqNum: seq, Backlink: backlink,
		LogID: operation.LogIDFromTopic(abuseTopic), Body: []byte(body)})
	if err != nil {
		a.t.Fatal(err)
	}
	return op
}

// forge returns op with one bit of its signature flipped.
func forge(t *testing.T, op *operation.Operation) *operation.Operation {
	t.Helper()
	h, err := operation.DecodeHeader(op.HeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	h.Signature[0] ^= 1
	return &operation.Operation{Header: *h, HeaderBytes: h.Encode(), Body: op.Body, Hash: h.Hash()}
}

func abuseNode(t *testing.T, fails *failures, bootstrap ...ma.Multiaddr) *node.Node {
	t.Helper()
	cfg := node.NetworkConfig{NetworkID: abuseNetwork, ListenAddrs: loopback(),
		BootstrapPeers: bootstrap, WalkInterval: 100 * time.Millisecond, MaxWalkInterval: time.Second,
		Logger: slog.New(slog.DiscardHandler)}
	if fails != nil {
		cfg.OnSyncEvent = fails.add
	}
	n, err := node.New(context.Background(), node.WithNetwork(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return n
}

func heightsOf(t *testing.T, n *node.Node) map[operation.PublicKey]uint64 {
	t.Helper()
	h, err := n.Store().LogHeights(context.Background(), abuseTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[operation.PublicKey]uint64{}
	for a, logs := range h {
		for _, v := range logs {
			out[a] = v
		}
	}
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A malicious peer speaks the sync protocol by hand to an honest node: forged signatures, a
// forked log, more operations than announced, oversized frames, absurd Have claims, a flood
// of invalid operations and thousands of sessions. The honest node must reject each with a
// typed error, store nothing forged, stay within memory bounds and keep serving an honest
// peer.
func TestMaliciousPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts (not in -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fails := &failures{}
	honest := abuseNode(t, fails)
	pub, sub, err := honest.Stream(ctx, abuseTopic)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range sub.Events() {
		}
	}()
	for i := range 10 {
		p, err := pub.Publish(ctx, []byte(fmt.Sprint("honest ", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}

	akey, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ah, err := p2p.New(ctx, p2p.Config{PrivateKey: akey, NetworkID: abuseNetwork, ListenAddrs: loopback(),
		DisableRandomWalk: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ah.Close() })
	info, err := peer.AddrInfoFromP2pAddr(honest.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := ah.Libp2p().Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	a := &attacker{t: t, host: ah, key: akey, target: info.ID, proto: ah.ProtocolID(node.SyncProtocol)}
	evil := akey.PublicKey()
	op0 := a.sign(0, operation.Hash{}, "evil 0")
	op1 := a.sign(1, op0.Hash, "evil 1")

	t.Run("forged signature", func(t *testing.T) {
		a.t = t
		from := fails.len()
		s := a.session(ctx, t)
		if got := s.catchUp(nil); got != 10 {
			t.Fatalf("honest node pushed %d operations, want its 10", got)
		}
		// One forged operation as the last of the catch-up, then nothing: the node settles
		// its asynchronous checks when the peer's catch-up ends and aborts right there.
		if err := s.push(forge(t, a.sign(0, operation.Hash{}, "forged, sent last"))); err != nil {
			t.Fatal(err)
		}
		s.expectAbort()
		ev := fails.wait(t, from, operation.ErrSignature)
		t.Logf("rejected: %v", ev.Err)
		if _, ok := heightsOf(t, honest)[evil]; ok {
			t.Fatal("the forged operation was stored")
		}
	})

	t.Run("forked log", func(t *testing.T) {
		a.t = t
		s := a.session(ctx, t)
		s.catchUp(nil)
		if err := s.push(op0, op1); err != nil {
			t.Fatal(err)
		}
		waitHeight(t, honest, evil, 1)
		s.send(&logsync.Message{Kind: logsync.KindClose})
		s.str.Close()

		from := fails.len()
		s = a.session(ctx, t)
		s.catchUp(nil)
		s.pushInvalid(func(i int) *operation.Operation {
			return a.sign(1, op0.Hash, fmt.Sprint("evil 1, rewritten ", i))
		})
		ev := fails.wait(t, from, operation.ErrFork)
		t.Logf("rejected: %v", ev.Err)
		got, err := honest.Store().Latest(ctx, evil, operation.LogIDFromTopic(abuseTopic))
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash != op1.Hash {
			t.Fatalf("seq 1 is now %s, want the first-seen %s", got.Hash, op1.Hash)
		}
	})

	t.Run("more than announced", func(t *testing.T) {
		a.t = t
		from := fails.len()
		s := a.session(ctx, t)
		s.catchUp(nil)
		op2 := a.sign(2, op1.Hash, "evil 2")
		op3 := a.sign(3, op2.Hash, "evil 3")
		n := uint64(len(op2.HeaderBytes) + len(op2.Body))
		s.send(&logsync.Message{Kind: logsync.KindPreSync, Ops: 1, Bytes: n})
		s.send(&logsync.Message{Kind: logsync.KindOperation, Header: op2.HeaderBytes, Body: op2.Body})
		s.send(&logsync.Message{Kind: logsync.KindOperation, Header: op3.HeaderBytes, Body: op3.Body})
		s.expectAbort()
		ev := fails.wait(t, from, logsync.ErrExceedsAnnounced)
		t.Logf("rejected: %v", ev.Err)
	})

	t.Run("oversized frame", func(t *testing.T) {
		a.t = t
		from := fails.len()
		s := a.session(ctx, t)
		// Announce a 1 GiB Have; the node must refuse before allocating it.
		before := heapInUse()
		s.str.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
		s.expectAbort()
		ev := fails.wait(t, from, logsync.ErrFrameTooLarge)
		grew := int64(heapInUse()) - int64(before)
		t.Logf("rejected: %v (heap grew %d KiB)", ev.Err, grew>>10)
		if grew > 64<<20 {
			t.Fatalf("heap grew %d MiB on a 1 GiB frame announcement", grew>>20)
		}
	})

	t.Run("huge heights", func(t *testing.T) {
		a.t = t
		s := a.session(ctx, t)
		// Claim 2^64-1 for every log the node holds (its own and the attacker's).
		claim := logsync.Heights{}
		for author := range heightsOf(t, honest) {
			claim[author] = map[operation.LogID]uint64{operation.LogIDFromTopic(abuseTopic): math.MaxUint64}
		}
		if got := s.catchUp(claim); got != 0 {
			t.Fatalf("honest node pushed %d operations to a peer claiming height 2^64-1", got)
		}
		s.send(&logsync.Message{Kind: logsync.KindDone})
		s.send(&logsync.Message{Kind: logsync.KindClose})
		s.str.Close()
		if h := heightsOf(t, honest)[honest.ID()]; h != 9 {
			t.Fatalf("honest log height is %d after the claim, want 9", h)
		}

		// A Have with more entries than the limit is a protocol violation.
		from := fails.len()
		s = a.session(ctx, t)
		big := logsync.Heights{}
		for i := range logsync.DefaultLimits.MaxHaveEntries + 1 {
			var k operation.PublicKey
			binary.BigEndian.PutUint64(k[:], uint64(i)+1)
			big[k] = map[operation.LogID]uint64{{}: math.MaxUint64}
		}
		before := heapInUse()
		s.send(&logsync.Message{Kind: logsync.KindHave, Have: big})
		s.expectAbort()
		ev := fails.wait(t, from, logsync.ErrTooManyLogs)
		t.Logf("rejected: %v (heap in use %d MiB before, %d MiB after)", ev.Err, before>>20, heapInUse()>>20)
	})

	t.Run("flood of invalid operations", func(t *testing.T) {
		a.t = t
		from := fails.len()
		s := a.session(ctx, t)
		s.catchUp(nil)
		evilBefore := heightsOf(t, honest)[evil]
		const flood = 20_000
		forged := make([]*operation.Operation, 0, flood)
		last, err := honest.Store().Latest(ctx, evil, operation.LogIDFromTopic(abuseTopic))
		if err != nil {
			t.Fatal(err)
		}
		prev := last.Hash
		for i := range flood {
			op := a.sign(evilBefore+1+uint64(i), prev, fmt.Sprint("flood ", i))
			prev = op.Hash
			forged = append(forged, forge(t, op))
		}
		sent := 0
		var size uint64
		for _, op := range forged {
			size += uint64(len(op.HeaderBytes) + len(op.Body))
		}
		s.send(&logsync.Message{Kind: logsync.KindPreSync, Ops: flood, Bytes: size})
		for _, op := range forged {
			if err := s.send(&logsync.Message{Kind: logsync.KindOperation, Header: op.HeaderBytes, Body: op.Body}); err != nil {
				break
			}
			sent++
		}
		s.expectAbort()
		ev := fails.wait(t, from, operation.ErrSignature)
		t.Logf("aborted after the attacker could write %d of %d forged operations: %v", sent, flood, ev.Err)
		if h := heightsOf(t, honest)[evil]; h != evilBefore {
			t.Fatalf("attacker log height is %d, want %d (nothing forged stored)", h, evilBefore)
		}
	})

	t.Run("thousands of sessions", func(t *testing.T) {
		a.t = t
		// Serve 40 topics, more than the per-peer cap on handshakes in flight (32): the
		// attacker may hold one established session per served topic (a newer one replaces
		// the older), never more, and its handshakes in flight plus replaced sessions still
		// closing stay capped, so the flood is rejected busy while memory stays flat.
		topics := []operation.Topic{abuseTopic}
		for i := range 39 {
			tp := operation.Topic(operation.HashOf([]byte(fmt.Sprint("abuse extra ", i))))
			_, sub, err := honest.Stream(ctx, tp)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for range sub.Events() {
				}
			}()
			topics = append(topics, tp)
		}
		before := heapInUse()
		const streams = 3000
		self := a.host.Libp2p().ID()
		endedBefore := fails.endedFrom(self)
		var accepted, busy, otherReject, failed, peak atomic.Int64
		// live is how many sessions the attacker opened that the honest node still runs
		// (accepted ones it has not ended yet, including replaced ones still closing).
		live := func() int64 { return accepted.Load() - int64(fails.endedFrom(self)-endedBefore) }
		var held stdsync.Mutex
		var open []*rawSession
		var wg stdsync.WaitGroup
		sem := make(chan struct{}, 64)
		// The first wave opens one session per topic, all at once: no two share a topic, so
		// every one must be accepted (more than the in-flight cap: established sessions are
		// bounded by the topics, not by that cap). Later waves replace them over and over.
		firstWave := int64(-1)
		for i := range streams {
			if i == len(topics) {
				wg.Wait()
				firstWave = accepted.Load()
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s, err := a.open(ctx, topics[i%len(topics)])
				var rej *logsync.RejectError
				switch {
				case err == nil:
					accepted.Add(1)
					for n := live(); ; {
						if p := peak.Load(); n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					held.Lock()
					open = append(open, s)
					held.Unlock()
				case errors.As(err, &rej) && rej.Reason == logsync.ReasonBusy:
					busy.Add(1)
				case errors.As(err, &rej):
					otherReject.Add(1)
				default:
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		grew := int64(heapInUse()) - int64(before)
		t.Logf("%d session attempts: %d accepted (%d of the first wave), %d rejected busy, %d rejected otherwise, %d failed; at most %d running at once; heap +%d MiB",
			streams, accepted.Load(), firstWave, busy.Load(), otherReject.Load(), failed.Load(), peak.Load(), grew>>20)
		if firstWave != int64(len(topics)) {
			t.Fatalf("%d of the first wave's %d sessions (one per served topic) accepted", firstWave, len(topics))
		}
		// Established sessions are at most one per topic; on top, only replaced sessions
		// still closing, which count against the per-peer cap.
		if limit := int64(len(topics) + logsync.DefaultMaxInboundPerPeer); peak.Load() > limit {
			t.Fatalf("%d sessions from one peer running at once, limit %d topics + %d unsettled", peak.Load(), len(topics), logsync.DefaultMaxInboundPerPeer)
		}
		if busy.Load() == 0 {
			t.Fatal("no session was rejected as busy; the per-peer cap on unsettled sessions did not apply")
		}
		// Once the replaced sessions closed, at most one per served topic is left.
		testutil.Eventually(t, 30*time.Second, "replaced sessions to close", func() (bool, error) {
			n := live()
			return n <= int64(len(topics)), fmt.Errorf("%d sessions from one peer still running, want at most one per served topic (%d)", n, len(topics))
		})
		if grew > 128<<20 {
			t.Fatalf("heap grew %d MiB during the session flood", grew>>20)
		}
		// While the attacker still holds its sessions, an honest peer syncs.
		p, err := pub.Publish(ctx, []byte("after the abuse"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		third := abuseNode(t, nil, honest.Addrs()[0])
		_, sub3, err := third.Stream(ctx, abuseTopic)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range sub3.Events() {
			}
		}()
		start := time.Now()
		want := heightsOf(t, honest)
		for {
			got := heightsOf(t, third)
			if len(got) == len(want) && got[honest.ID()] == want[honest.ID()] && got[evil] == want[evil] {
				break
			}
			if time.Since(start) > 60*time.Second {
				t.Fatalf("honest third node holds %v, want %v", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("an honest third node synced %d operations in %v while the attacker held %d sessions",
			want[honest.ID()]+want[evil]+2, time.Since(start).Round(time.Millisecond), len(open))
		for _, s := range open {
			s.str.Reset()
		}
	})
}

func waitHeight(t *testing.T, n *node.Node, author operation.PublicKey, h uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got, ok := heightsOf(t, n)[author]; ok && got >= h {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("height of %s did not reach %d", author.Short(), h)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
