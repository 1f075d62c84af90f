package node

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
)

// A fresh edge following more topics of one always-on node than any per-peer session or
// stream cap used to admit (64: libp2p's inbound streams per protocol and peer, and the
// sync manager's 32 sessions per peer each way) syncs every operation of every topic: each
// topic keeps its own live session, and all of them are established.
func TestEdgeSyncsManyTopicsOfOneNode(t *testing.T) {
	const topics, opsPerTopic = 150, 4
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "always-on.sqlite")
	names := fillTopics(t, path, topics, opsPerTopic)
	always := newNode(t, WithDatabase(path), WithNetwork(loopbackNetwork(func(c *NetworkConfig) {
		c.Public = true
	})))
	for _, topic := range names {
		if _, _, err := always.Stream(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	waitForwarders(t, always, topics)

	const want = topics * opsPerTopic
	var stored atomic.Int64
	// Registered before the edge, so it runs after the edge closed and ended the streams.
	var drains sync.WaitGroup
	t.Cleanup(drains.Wait)
	edge := newNode(t, WithDatabase(filepath.Join(t.TempDir(), "edge.sqlite")),
		WithObserver(func(r Observation) {
			if r.Outcome == OutcomeStored {
				stored.Add(1)
			}
		}),
		WithNetwork(loopbackNetwork(bootstrapTo(always))))
	for _, topic := range names {
		_, sub, err := edge.Stream(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		drains.Go(func() {
			for range sub.Events() {
			}
		})
	}
	testutil.Eventually(t, 3*time.Minute, fmt.Sprintf("edge stores all %d operations of %d topics", want, topics), func() (bool, error) {
		n := stored.Load()
		if n > want {
			return false, fmt.Errorf("stored %d operations, only %d exist", n, want)
		}
		return n == want, fmt.Errorf("stored %d of %d", n, want)
	})
	// Every topic keeps a live session with the always-on node.
	testutil.Eventually(t, time.Minute, "a live session per topic", func() (bool, error) {
		live := 0
		for _, topic := range names {
			live += len(edge.net.sync.Peers(topic))
		}
		return live == topics, fmt.Errorf("%d live sessions for %d topics", live, topics)
	})
}
