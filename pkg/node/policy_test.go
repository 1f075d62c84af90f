package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
	"github.com/pandanet/pandanet/pkg/store"
)

// signLog signs n operations of key's log for topic starting at seq first (after prev),
// with author timestamps ts, ts+1, ...; the first carries the prune flag if prune.
func signLog(t *testing.T, key operation.PrivateKey, topic operation.Topic, prev *operation.Operation, n int, ts uint64, prune bool) []*operation.Operation {
	t.Helper()
	var out []*operation.Operation
	for i := range n {
		d := operation.Draft{LogID: operation.LogIDFromTopic(topic), Timestamp: ts + uint64(i), Body: []byte(fmt.Sprintf("msg %d", i)),
			Prune: prune && i == 0}
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

func mustKey(t *testing.T) operation.PrivateKey {
	t.Helper()
	k, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ingest(t *testing.T, n *Node, topic operation.Topic, op *operation.Operation) error {
	t.Helper()
	return n.ingestRemote(testCtx(t), topic, op.HeaderBytes, op.Body, ExternalStream{})
}

func refusalReason(err error) policy.Reason { return policy.ReasonOf(err) }

// Writers are enforced on every path into the store: remote operations and the node's own
// publishes; an empty writers list lets anyone write.
func TestPolicyWritersOnEveryPath(t *testing.T) {
	ctx := testCtx(t)
	allowed, stranger := mustKey(t), mustKey(t)
	n := newNode(t, WithTopicPolicy(topicT, policy.Policy{Writers: []operation.PublicKey{allowed.PublicKey()}}))

	for _, op := range signLog(t, allowed, topicT, nil, 3, 1, false) {
		if err := ingest(t, n, topicT, op); err != nil {
			t.Fatalf("allowed writer: %v", err)
		}
	}
	err := ingest(t, n, topicT, signLog(t, stranger, topicT, nil, 1, 1, false)[0])
	if refusalReason(err) != policy.NotWriter {
		t.Fatalf("stranger's operation: %v, want a not_writer refusal", err)
	}
	pub, _, err := n.Stream(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pub.Publish(ctx, []byte("own"))
	if err == nil {
		_, err = p.Wait(ctx)
	}
	if refusalReason(err) != policy.NotWriter {
		t.Fatalf("node's own publish: %v, want a not_writer refusal (its key is not a writer)", err)
	}
	waitStored(t, n, topicT, 3)
	if got := n.PolicyRefusals()[policy.NotWriter]; got != 2 {
		t.Fatalf("%d not_writer refusals counted, want 2", got)
	}

	// Opening the topic to anyone (empty writers, a quota left) lets both in.
	if err := n.SetTopicPolicy(ctx, topicT, policy.Policy{PerTopic: policy.Quota{MaxOps: 100}}); err != nil {
		t.Fatal(err)
	}
	if err := ingest(t, n, topicT, signLog(t, stranger, topicT, nil, 1, 1, false)[0]); err != nil {
		t.Fatalf("stranger after opening the topic: %v", err)
	}
	rep, ok := n.TopicPolicy(topicT)
	if !ok || rep.Usage.Ops != 4 || len(rep.Authors) != 2 || rep.Authors[allowed.PublicKey()].Ops != 3 {
		t.Fatalf("report %+v", rep)
	}
}

// An author at its quota is refused while others keep writing; a prune frees its quota; the
// usage read from the store at startup matches what was counted incrementally.
func TestPolicyQuotas(t *testing.T) {
	path := t.TempDir() + "/db.sqlite"
	greedy, other := mustKey(t), mustKey(t)
	pol := policy.Policy{PerAuthor: policy.Quota{MaxOps: 3}, PerTopic: policy.Quota{MaxOps: 5}}
	n := newNode(t, WithDatabase(path), WithTopicPolicy(topicT, pol))

	log := signLog(t, greedy, topicT, nil, 4, 1, false)
	for _, op := range log[:3] {
		if err := ingest(t, n, topicT, op); err != nil {
			t.Fatal(err)
		}
	}
	if err := ingest(t, n, topicT, log[3]); refusalReason(err) != policy.OverQuota {
		t.Fatalf("4th operation of the author: %v, want over_quota", err)
	}
	others := signLog(t, other, topicT, nil, 3, 1, false)
	for _, op := range others[:2] {
		if err := ingest(t, n, topicT, op); err != nil {
			t.Fatalf("another author under quota: %v", err)
		}
	}
	// The topic holds 5 now: its own quota refuses the other author's 3rd.
	if err := ingest(t, n, topicT, others[2]); refusalReason(err) != policy.OverQuota {
		t.Fatalf("operation over the topic quota: %v, want over_quota", err)
	}
	// A prune by the greedy author deletes its earlier entries and is taken although the
	// author is at its limit.
	prune := signLog(t, greedy, topicT, log[2], 1, 10, true)[0]
	if err := ingest(t, n, topicT, prune); err != nil {
		t.Fatalf("prune at the quota: %v", err)
	}
	rep, _ := n.TopicPolicy(topicT)
	if rep.Authors[greedy.PublicKey()].Ops != 1 || rep.Usage.Ops != 3 {
		t.Fatalf("usage after the prune: %+v", rep)
	}
	if err := ingest(t, n, topicT, others[2]); err != nil {
		t.Fatalf("after the prune freed room: %v", err)
	}
	want := rep.Usage.Add(store.Usage{Ops: 1, Bytes: uint64(len(others[2].HeaderBytes) + len(others[2].Body))})
	got, _ := n.TopicPolicy(topicT)
	if got.Usage != want {
		t.Fatalf("usage %+v, want %+v", got.Usage, want)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, the usage comes from the store and matches.
	n2 := newNode(t, WithDatabase(path), WithTopicPolicy(topicT, pol))
	again, _ := n2.TopicPolicy(topicT)
	if again.Usage != want {
		t.Fatalf("usage after restart %+v, want %+v", again.Usage, want)
	}
}

// Retention drops whole logs, least recently written first, until the topic fits; the
// remaining logs are complete and verify; a dropped log is refused when offered again,
// and its author continues with a prune operation.
func TestPolicyRetentionDropsOldestLogs(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t)
	keys := []operation.PrivateKey{mustKey(t), mustKey(t), mustKey(t)}
	logs := make([][]*operation.Operation, len(keys))
	var perLog uint64
	for i, k := range keys {
		// Author i wrote last at timestamp 1000*(i+1): author 0's log is the oldest.
		logs[i] = signLog(t, k, topicT, nil, 5, uint64(1000*(i+1)), false)
		for _, op := range logs[i] {
			if err := ingest(t, n, topicT, op); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, op := range logs[0] {
		perLog += uint64(len(op.HeaderBytes) + len(op.Body))
	}
	// Room for two logs (all logs have the same size): the oldest must go.
	if err := n.SetTopicPolicy(ctx, topicT, policy.Policy{Retention: policy.Retention{MaxBytes: 2*perLog + perLog/2}}); err != nil {
		t.Fatal(err)
	}
	if err := n.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	heights, err := n.store.LogHeights(ctx, topicT)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := heights[keys[0].PublicKey()]; ok || len(heights) != 2 {
		t.Fatalf("heights after retention %v: want the two newest logs", heights)
	}
	for _, k := range keys[1:] {
		verifyLogOf(t, n, k.PublicKey(), 5)
	}
	// Offered again (an edge still holds it), the dropped log is refused.
	if err := ingest(t, n, topicT, logs[0][0]); refusalReason(err) != policy.Retired {
		t.Fatalf("dropped log offered again: %v, want a retention refusal", err)
	}
	if err := ingest(t, n, topicT, signLog(t, keys[0], topicT, logs[0][4], 1, 5000, false)[0]); refusalReason(err) != policy.Retired {
		t.Fatalf("continuation without prune: %v, want a retention refusal", err)
	}
	// Its author continues with a prune operation, which starts the log afresh.
	if err := ingest(t, n, topicT, signLog(t, keys[0], topicT, logs[0][4], 1, 5000, true)[0]); err != nil {
		t.Fatalf("prune after retention: %v", err)
	}
	if err := n.store.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	// Size limits are also enforced by the writer as soon as a batch crosses them: one more
	// log of the same size pushes the oldest remaining one (author 1) out.
	late := mustKey(t)
	for _, op := range signLog(t, late, topicT, nil, 5, 9000, false) {
		if err := ingest(t, n, topicT, op); err != nil {
			t.Fatal(err)
		}
	}
	heights, _ = n.store.LogHeights(ctx, topicT)
	if _, ok := heights[keys[1].PublicKey()]; ok {
		t.Fatalf("author 1's log survived the size limit: %v", heights)
	}
	if st := n.pipe.Stats(); st.RetiredLogs != 2 || st.PolicyErrors != 0 {
		t.Fatalf("pipeline stats %+v", st)
	}
}

// verifyLogOf reads author's log for topicT from seq 0 and checks every entry's signature and
// backlink chain: no holes.
func verifyLogOf(t *testing.T, n *Node, author operation.PublicKey, want int) {
	t.Helper()
	var prev *operation.Operation
	count := 0
	err := n.store.LogRange(context.Background(), author, operation.LogIDFromTopic(topicT), 0, ^uint64(0), func(op *operation.Operation) error {
		if _, err := operation.Decode(op.HeaderBytes, op.Body); err != nil {
			return err
		}
		if err := operation.CheckSequence(prev, op); err != nil {
			return err
		}
		prev = op
		count++
		return nil
	})
	if err != nil || count != want {
		t.Fatalf("log of %s: %d entries, %v", author.Short(), count, err)
	}
}
