package fault

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/p2p"
	"github.com/pandanet/pandanet/pkg/policy"
)

// A peer that is not a writer of the topic gets a Refuse, ignores it and floods the log: the
// honest always-on node drops the flood without storing or buffering it, aborts the session
// once the peer exceeded the grace, disconnects the peer and refuses its sessions for a
// while, with its memory flat throughout.
func TestRefusalIgnoredFloodIsCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts (not in -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hkey, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	fails := &failures{}
	cfg := node.NetworkConfig{NetworkID: abuseNetwork, ListenAddrs: loopback(),
		WalkInterval: 100 * time.Millisecond, MaxWalkInterval: time.Second,
		Logger: slog.New(slog.DiscardHandler), OnSyncEvent: fails.add}
	const grace = 1 << 20
	cfg.Sync.Session.RefusalGrace = grace
	cfg.Sync.Penalty = time.Minute
	honest, err := node.New(ctx, node.WithPrivateKey(hkey), node.WithNetwork(cfg),
		node.WithTopicPolicy(abuseTopic, policy.Policy{Writers: []operation.PublicKey{hkey.PublicKey()}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := honest.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	pub, sub, err := honest.Stream(ctx, abuseTopic)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range sub.Events() {
		}
	}()
	for range 3 {
		p, err := pub.Publish(ctx, []byte("honest"))
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
	// Distinct operations of one log, 16 KiB each: the flood is 8 times the grace.
	var flood []*operation.Operation
	var back operation.Hash
	body := string(make([]byte, 16<<10))
	for i := range 512 {
		op := a.sign(uint64(i), back, body)
		flood = append(flood, op)
		back = op.Hash
	}
	before := heapInUse()
	from := fails.len()

	s := a.session(ctx, t)
	if got := s.catchUp(nil); got != 3 {
		t.Fatalf("honest node pushed %d operations, want its 3", got)
	}
	var total uint64
	for _, op := range flood {
		total += uint64(len(op.HeaderBytes) + len(op.Body))
	}
	if err := s.send(&logsync.Message{Kind: logsync.KindPreSync, Ops: uint64(len(flood)), Bytes: total}); err != nil {
		t.Fatal(err)
	}
	if err := s.send(&logsync.Message{Kind: logsync.KindOperation, Header: flood[0].HeaderBytes, Body: flood[0].Body}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.recv()
		if err != nil {
			t.Fatalf("waiting for the refusal: %v", err)
		}
		if m.Kind == logsync.KindRefuse {
			if m.Author != akey.PublicKey() || m.Reason != string(policy.NotWriter) {
				t.Fatalf("refusal %+v", m)
			}
			break
		}
	}
	// Ignore it and flood.
	sent := 1
	for _, op := range flood[1:] {
		if err := s.send(&logsync.Message{Kind: logsync.KindOperation, Header: op.HeaderBytes, Body: op.Body}); err != nil {
			break
		}
		sent++
	}
	s.str.Reset()
	failed := fails.wait(t, from, logsync.ErrIgnoredRefusal)
	if failed.Peer != ah.ID() {
		t.Fatalf("failure for peer %s, want the attacker", failed.Peer)
	}
	testutil.Eventually(t, 30*time.Second, "the honest node did not disconnect the flooder", func() (bool, error) {
		for _, p := range honest.Peers() {
			if p.ID == ah.ID() {
				return false, nil
			}
		}
		return true, nil
	})
	// Rate-limited: reconnecting works, but sessions are refused.
	if err := ah.Libp2p().Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	_, err = a.open(ctx, abuseTopic)
	var rej *logsync.RejectError
	if !errors.As(err, &rej) || rej.Reason != logsync.ReasonRateLimited {
		t.Fatalf("session after the penalty: %v, want a %q rejection", err, logsync.ReasonRateLimited)
	}
	if h := heightsOf(t, honest); len(h) != 1 {
		t.Fatalf("honest node stores logs of %d authors, want only its own", len(h))
	}
	if got := honest.PolicyRefusals()[policy.NotWriter]; got != 1 {
		t.Fatalf("%d operations reached the policy check, want 1 (the session drops the rest)", got)
	}
	after := heapInUse()
	t.Logf("flooder sent %d operations (%d KiB) before the cut-off; heap in use %d KiB before, %d KiB after",
		sent, sent*(16+1), before>>10, after>>10)
	if after > before+8<<20 {
		t.Fatalf("heap grew from %d to %d bytes", before, after)
	}
}
