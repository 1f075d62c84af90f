package main

import (
	"context"
	"fmt"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// storedResult builds the observation of a stored operation (only the fields the counters
// read).
func storedResult(t *testing.T, topic operation.Topic, key operation.PrivateKey, seq uint64, pruned int64) node.Observation {
	t.Helper()
	return node.Observation{Topic: topic, Outcome: node.OutcomeStored, Pruned: pruned,
		Author: key.PublicKey(), Log: operation.LogIDFromTopic(topic), SeqNum: seq}
}

// TestTopicCountersOverlapWithStartupScan: operations stored while the start-up scan runs
// are counted once, whether the scan saw them or not; prunes subtract.
func TestTopicCountersOverlapWithStartupScan(t *testing.T) {
	topic := topicOf("counted").Topic
	a, _ := operation.GenerateKey()
	b, _ := operation.GenerateKey()
	c := newTopicCounters()
	// Stored during the scan: seq 4 is in the scan, seq 5 is not.
	c.observe(storedResult(t, topic, a, 4, 0))
	c.observe(storedResult(t, topic, a, 5, 0))
	c.load([]node.TopicStat{{Topic: topic, Ops: 5, Authors: 1, Logs: []node.LogStat{
		{Author: a.PublicKey(), Log: operation.LogIDFromTopic(topic), Height: 4, Ops: 5}}}})
	st := c.status(topic)
	if st.Operations != 6 || st.Authors != 1 || len(st.Logs) != 1 || st.Logs[0].Height != 5 {
		t.Fatalf("after load = %+v, want 6 operations, height 5", st)
	}
	c.observe(storedResult(t, topic, b, 0, 0))
	c.observe(storedResult(t, topic, a, 5, 0)) // a duplicate result changes nothing
	c.observe(storedResult(t, topic, a, 6, 6)) // prune: seqs 0..5 deleted
	st = c.status(topic)
	if st.Operations != 2 || st.Authors != 2 || len(st.Logs) != 2 {
		t.Fatalf("after live results = %+v, want 2 operations of 2 authors", st)
	}
	if st := c.status(topicOf("other").Topic); st.Operations != 0 || st.Logs == nil {
		t.Fatalf("unknown topic = %+v", st)
	}
}

func TestUnusedListenAddrs(t *testing.T) {
	m := func(s string) ma.Multiaddr { return ma.StringCast(s) }
	configured := []ma.Multiaddr{m("/ip4/0.0.0.0/tcp/0"), m("/ip4/192.0.2.1/tcp/4001"), m("/ip4/0.0.0.0/udp/4001/quic-v1")}
	actual := []ma.Multiaddr{m("/ip4/0.0.0.0/tcp/38211"), m("/ip4/0.0.0.0/udp/4001/quic-v1")}
	got := unusedListenAddrs(configured, actual)
	if len(got) != 1 || got[0].String() != "/ip4/192.0.2.1/tcp/4001" {
		t.Fatalf("unused = %v", got)
	}
}

// BenchmarkTopicsListing compares GET /v1/topics' backend work at 400 topics and 10,000
// operations: the store scan per topic it used to do, and the counters.
func BenchmarkTopicsListing(b *testing.B) {
	ctx := context.Background()
	n, err := node.New(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	counters := newTopicCounters()
	var topics []operation.Topic
	for i := 0; i < 400; i++ {
		topic := topicOf(fmt.Sprint("topic-", i)).Topic
		topics = append(topics, topic)
		pub, sub, err := n.Stream(ctx, topic)
		if err != nil {
			b.Fatal(err)
		}
		var last *node.Pending
		for j := 0; j < 25; j++ {
			if last, err = pub.Publish(ctx, []byte("m")); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := last.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		sub.Close()
	}
	stats, err := n.Store().TopicStats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	counters.load(stats)
	b.Run("store-scan-per-topic", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, topic := range topics {
				stats, err := n.Store().TopicStats(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for _, ts := range stats {
					if ts.Topic == topic {
						break
					}
				}
			}
		}
	})
	b.Run("counters", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, topic := range topics {
				if st := counters.status(topic); st.Operations != 25 {
					b.Fatalf("%s: %d operations", topic, st.Operations)
				}
			}
		}
	})
}
