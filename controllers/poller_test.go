package controllers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// countingNodes counts node requests; release gates them so calls overlap.
type countingNodes struct {
	calls   atomic.Int32
	release chan struct{}
	fail    atomic.Bool
}

func (c *countingNodes) Topics(ctx context.Context, _ NodeEndpoint) ([]NodeTopicStatus, error) {
	c.calls.Add(1)
	select {
	case <-c.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c.fail.Load() {
		return nil, errors.New("unreachable")
	}
	return []NodeTopicStatus{{Topic: strings.Repeat("a", 64), Operations: 3}}, nil
}

// TestSharedPollerOneRequestPerNode: twenty TopicReplicas asking for the same node at
// once cost one request; a fresh answer is reused; a stale one or a failure is not.
func TestSharedPollerOneRequestPerNode(t *testing.T) {
	nodes := &countingNodes{release: make(chan struct{})}
	p := newSharedPoller(nodes, time.Minute)
	clock := time.Unix(1000, 0)
	var clockMu sync.Mutex
	p.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	ep := NodeEndpoint{Namespace: "ns", Network: "net", Pod: "net-0"}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := p.Topics(context.Background(), ep); err != nil || len(got) != 1 {
				t.Errorf("topics = %v, %v", got, err)
			}
		}()
	}
	// Every caller is parked on the one request before it is answered.
	for nodes.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(nodes.release)
	wg.Wait()
	if n := nodes.calls.Load(); n != 1 {
		t.Fatalf("%d node requests for 20 concurrent callers, want 1", n)
	}
	if _, err := p.Topics(context.Background(), ep); err != nil || nodes.calls.Load() != 1 {
		t.Fatalf("fresh answer not reused: calls %d, %v", nodes.calls.Load(), err)
	}
	clockMu.Lock()
	clock = clock.Add(2 * time.Minute)
	clockMu.Unlock()
	if _, err := p.Topics(context.Background(), ep); err != nil || nodes.calls.Load() != 2 {
		t.Fatalf("stale answer reused: calls %d, %v", nodes.calls.Load(), err)
	}
	nodes.fail.Store(true)
	clockMu.Lock()
	clock = clock.Add(2 * time.Minute)
	clockMu.Unlock()
	if _, err := p.Topics(context.Background(), ep); err == nil {
		t.Fatal("failure not reported")
	}
	nodes.fail.Store(false)
	if _, err := p.Topics(context.Background(), ep); err != nil || nodes.calls.Load() != 4 {
		t.Fatalf("a failure was cached: calls %d, %v", nodes.calls.Load(), err)
	}
}

func TestTopicReadyWithZeroReplicas(t *testing.T) {
	c := TopicReadyCondition(1, []string{"chat"}, 0, []pandav1.TopicStatus{{Topic: "chat"}}, nil)
	if c.Status != metav1.ConditionFalse || c.Reason != ReasonNoNodes {
		t.Fatalf("0 replicas: %+v", c)
	}
}

// TestMergeTopicsDeduplicatesIDs: hex case variants and a name beside its own hash are
// one topic in the topics file.
func TestMergeTopicsDeduplicatesIDs(t *testing.T) {
	hash := canonicalID("chat")
	got := MergeTopics([]pandav1.TopicReplica{
		tr("a", pandav1.ReclaimDelete, false, "chat", strings.ToUpper(hash)),
		tr("b", pandav1.ReclaimDelete, false, hash, "news"),
	}, nil)
	if len(got.Topics) != 2 {
		t.Fatalf("topics %v, want chat (once, in one spelling) and news", got.Topics)
	}
	got = MergeTopics(nil, []string{strings.ToUpper(hash), hash})
	if len(got.Topics) != 1 || len(got.Retained) != 1 {
		t.Fatalf("retained case variants not merged: %+v", got)
	}
}
