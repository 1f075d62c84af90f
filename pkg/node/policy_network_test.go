package node

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// syncEvents records a node's sync events.
type syncEvents struct {
	mu  sync.Mutex
	evs []logsync.Event
}

func (s *syncEvents) add(e logsync.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

func (s *syncEvents) refused() []logsync.Refused {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logsync.Refused
	for _, e := range s.evs {
		if r, ok := e.(logsync.Refused); ok {
			out = append(out, r)
		}
	}
	return out
}

func (s *syncEvents) misbehaving() []logsync.SessionFailed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logsync.SessionFailed
	for _, e := range s.evs {
		if f, ok := e.(logsync.SessionFailed); ok && f.Misbehaving {
			out = append(out, f)
		}
	}
	return out
}

func recordSync(evs *syncEvents) netOpt {
	return func(c *NetworkConfig) { c.OnSyncEvent = evs.add }
}

func waitRefusals(t *testing.T, n *Node, reason policy.Reason, atLeast uint64) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%s refused fewer than %d operations (%s)", n.ID().Short(), atLeast, reason),
		func() (bool, error) { return n.PolicyRefusals()[reason] >= atLeast, nil })
}

// An always-on node with a writers list refuses an outsider's operations, tells the outsider
// (which stops pushing), and never hands them to another edge, while the writer's
// operations flow through it.
func TestPolicyOutsiderNeverReachesOtherEdgesThroughAlwaysOn(t *testing.T) {
	ctx := testCtx(t)
	writerKey := mustKey(t)
	var alwaysEvs, outsiderEvs syncEvents
	always := newNode(t, WithNetwork(loopbackNetwork(recordSync(&alwaysEvs))),
		WithTopicPolicy(topicT, policy.Policy{Writers: []operation.PublicKey{writerKey.PublicKey()}}))
	if _, _, err := always.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	outsider := netNode(t, bootstrapTo(always), recordSync(&outsiderEvs))
	pubO, _, err := outsider.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, pubO, fmt.Sprintf("outsider %d", i))
	}
	waitRefusals(t, always, policy.NotWriter, 1)
	testutil.Eventually(t, 30*time.Second, "the outsider never received a not_writer refusal", func() (bool, error) {
		for _, r := range outsiderEvs.refused() {
			if !r.Outgoing && r.Author == outsider.ID() && r.Reason == string(policy.NotWriter) {
				return true, nil
			}
		}
		return false, nil
	})

	writer := newNode(t, WithPrivateKey(writerKey), WithNetwork(loopbackNetwork(bootstrapTo(always))))
	pubW, _, err := writer.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		publish(t, pubW, fmt.Sprintf("writer %d", i))
	}
	waitStored(t, always, topicT, 2)
	// Only the always-on node stays: whatever a new edge gets, it gets through it.
	if err := outsider.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writer.Close(); err != nil {
		t.Fatal(err)
	}
	edge := netNode(t, bootstrapTo(always))
	if _, _, err := edge.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	// Having the writer's two operations proves the edge completed a sync with the
	// always-on node; the outsider's log must not be among what it got.
	waitStored(t, edge, topicT, 2)
	heights, err := edge.store.LogHeights(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := heights[outsider.ID()]; ok {
		t.Fatal("the outsider's operations reached another edge through the always-on node")
	}
	if h, _ := always.store.LogHeights(ctx, topicT); len(h) != 1 {
		t.Fatalf("always-on node stores logs %v, want only the writer's", h)
	}
	if m := alwaysEvs.misbehaving(); len(m) != 0 {
		t.Fatalf("refusals were treated as misbehaviour: %v", m)
	}
}

// An author over its quota is refused while the topic's other authors keep syncing, through
// the same sessions.
func TestPolicyAuthorOverQuotaOthersKeepSyncing(t *testing.T) {
	ctx := testCtx(t)
	var alwaysEvs syncEvents
	always := newNode(t, WithNetwork(loopbackNetwork(recordSync(&alwaysEvs))),
		WithTopicPolicy(topicT, policy.Policy{PerAuthor: policy.Quota{MaxOps: 3}}))
	if _, _, err := always.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	greedy := netNode(t, bootstrapTo(always))
	pubG, subG, err := greedy.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(t, pubG, fmt.Sprintf("greedy %d", i))
	}
	waitRefusals(t, always, policy.OverQuota, 1)
	waitStored(t, always, topicT, 3)

	modest := netNode(t, bootstrapTo(always))
	pubM, _, err := modest.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		publish(t, pubM, fmt.Sprintf("modest %d", i))
	}
	waitStored(t, always, topicT, 5)
	// Live operations of the modest author keep flowing, also to the greedy edge whose
	// session with the always-on node refused its log.
	publish(t, pubM, "modest live")
	waitStored(t, always, topicT, 6)
	got := collect(t, subG, 8)
	if _, ok := got["modest live"]; !ok {
		t.Fatalf("the greedy edge did not receive the modest author's live operation: %v", keys(got))
	}
	rep, _ := always.TopicPolicy(topicT)
	if rep.Authors[greedy.ID()].Ops != 3 || rep.Authors[modest.ID()].Ops != 3 {
		t.Fatalf("usage per author %+v", rep.Authors)
	}
	if m := alwaysEvs.misbehaving(); len(m) != 0 {
		t.Fatalf("refusals were treated as misbehaviour: %v", m)
	}
}

// Retention on an always-on node drops the least recently written log once the topic is
// over its size; an edge that still holds the dropped log is refused when it offers it
// again, and a new edge gets the remaining logs, complete.
func TestPolicyRetentionOnAlwaysOnNode(t *testing.T) {
	ctx := testCtx(t)
	var edgeEvs syncEvents
	always := newNode(t, WithNetwork(loopbackNetwork()))
	if _, _, err := always.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	old := netNode(t, bootstrapTo(always), recordSync(&edgeEvs))
	pubOld, _, err := old.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		publish(t, pubOld, fmt.Sprintf("old %d", i))
	}
	waitStored(t, always, topicT, 4)
	// Room for about one log of this size: the next log written pushes the old one out.
	rep, _ := always.store.AuthorUsage(ctx, topicT)
	size := rep[old.ID()].Bytes
	if err := always.SetTopicPolicy(ctx, topicT, policy.Policy{Retention: policy.Retention{MaxBytes: size + size/2}}); err != nil {
		t.Fatal(err)
	}
	fresh := netNode(t, bootstrapTo(always))
	pubFresh, _, err := fresh.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		publish(t, pubFresh, fmt.Sprintf("fresh %d", i))
	}
	testutil.Eventually(t, 60*time.Second, "retention did not drop the old log", func() (bool, error) {
		h, err := always.store.LogHeights(ctx, topicT)
		_, hasOld := h[old.ID()]
		_, hasFresh := h[fresh.ID()]
		return !hasOld && hasFresh && h[fresh.ID()][operation.LogIDFromTopic(topicT)] == 3, err
	})
	// The old edge still holds its log and offers it again: refused, not stored.
	publish(t, pubOld, "old after retention")
	waitRefusals(t, always, policy.Retired, 1)
	testutil.Eventually(t, 30*time.Second, "the old edge was not told its log is retired", func() (bool, error) {
		for _, r := range edgeEvs.refused() {
			if !r.Outgoing && r.Author == old.ID() && r.Reason == string(policy.Retired) {
				return true, nil
			}
		}
		return false, nil
	})
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}
	edge := netNode(t, bootstrapTo(always))
	if _, _, err := edge.Stream(ctx, topicT); err != nil {
		t.Fatal(err)
	}
	waitStored(t, edge, topicT, 4)
	h, err := edge.store.LogHeights(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h[old.ID()]; ok || len(h) != 1 {
		t.Fatalf("new edge got logs %v, want only the fresh author's", h)
	}
	verifyLogOf(t, edge, fresh.ID(), 4)
}
