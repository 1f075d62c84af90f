package controllers

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/internal/admin"
)

// topicsOnly is an admin backend that answers only GET /v1/topics, from a fixed listing
// (a node's listing comes from in-memory counters, cmd/node BenchmarkTopicsListing).
type topicsOnly struct {
	admin.Backend
	topics []admin.TopicStatus
}

func (b topicsOnly) Topics(context.Context) ([]admin.TopicStatus, error) { return b.topics, nil }

// BenchmarkTopicReplicaStatus1000Topics3Nodes measures issue 11 item 8's goal, "1,000
// topics × 3 nodes, status complete in under 2 s": one TopicReplica status computation as
// Reconcile does it (without the API write): the three nodes' GET /v1/topics through the
// real admin server and HTTP client, 1,000 topics with 3 author logs each, fetched
// concurrently through a fresh shared poller, then BuildTopicStatuses and the Ready
// condition. Runs without envtest.
func BenchmarkTopicReplicaStatus1000Topics3Nodes(b *testing.B) {
	const topics, nodes = 1000, 3
	names := make([]string, topics)
	listing := make([]admin.TopicStatus, topics)
	for i := range names {
		names[i] = fmt.Sprintf("topic-%04d", i)
		st := admin.TopicStatus{Topic: canonicalID(names[i]), Operations: 30, Authors: 3}
		for a := range 3 {
			st.Logs = append(st.Logs, admin.LogStatus{Author: strings.Repeat(fmt.Sprintf("%02x", a+1), 32), Height: 9})
		}
		listing[i] = st
	}
	var urls []string
	for range nodes {
		srv := httptest.NewServer(admin.NewServer(topicsOnly{topics: listing}, admin.ServerOptions{Token: "t"}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	client := NewHTTPNodeStatusClient()
	client.BaseURL = func(ep NodeEndpoint) string { return urls[ep.Ordinal] }
	defer client.Client.CloseIdleConnections()
	ctx := context.Background()
	var worst time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		poller := newSharedPoller(client, time.Second)
		reports := make([]nodeReport, nodes)
		errs := make([]error, nodes)
		var wg sync.WaitGroup
		for i := range int32(nodes) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ep := NodeEndpoint{Pod: fmt.Sprintf("net-%d", i), Ordinal: i, Token: "t"}
				reports[i].pod = ep.Pod
				reports[i].topics, errs[i] = poller.Topics(ctx, ep)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		st := BuildTopicStatuses(names, reports)
		if c := TopicReadyCondition(1, names, nodes, st, nil); c.Status != metav1.ConditionTrue || c.Reason != pandav1.ReasonAllNodesSynced {
			b.Fatalf("ready = %+v", c)
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
