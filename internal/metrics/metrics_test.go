package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.OperationIngested(SourceLocal)
	m.OperationRejected(operation.ErrSignature)
	m.ObservePipeline(time.Millisecond)
	m.SyncStarted()
	m.SyncEnded(nil)
	m.SyncBytes(Sent, 10)
	m.SetPeers(1)
	m.GossipMessage(Received)
	m.SetRelayReservations(1)
	m.SetStoreSize(1)
	m.SetStoreOperations(1)
	m.SetTopics(1)
}

func TestCounters(t *testing.T) {
	m := New()
	m.OperationIngested(SourceSync)
	m.OperationIngested(SourceSync)
	m.OperationRejected(fmt.Errorf("ingest: %w", operation.ErrFork))
	m.OperationRejected(errors.New("disk full"))
	m.SyncStarted()
	m.SyncEnded(nil)
	m.SyncEnded(errors.New("reset"))
	m.SyncBytes(Received, 100)
	m.SyncBytes(Received, -5) // ignored
	m.SetPeers(3)
	m.ObservePipeline(300 * time.Microsecond)

	checks := []struct {
		got, want float64
		name      string
	}{
		{value(t, m.OperationsIngested.WithLabelValues("sync")), 2, "ingested sync"},
		{value(t, m.OperationsIngested.WithLabelValues("local")), 0, "ingested local"},
		{value(t, m.OperationsRejected.WithLabelValues("fork")), 1, "rejected fork"},
		{value(t, m.OperationsRejected.WithLabelValues("other")), 1, "rejected other"},
		{value(t, m.SyncSessions.WithLabelValues("started")), 1, "sync started"},
		{value(t, m.SyncSessions.WithLabelValues("ended")), 1, "sync ended"},
		{value(t, m.SyncSessions.WithLabelValues("failed")), 1, "sync failed"},
		{value(t, m.SyncBytesTotal.WithLabelValues("received")), 100, "sync bytes"},
		{value(t, m.ConnectedPeers), 3, "peers"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	var h dto.Metric
	if err := m.PipelineLatency.Write(&h); err != nil {
		t.Fatal(err)
	}
	if h.GetHistogram().GetSampleCount() != 1 || h.GetHistogram().GetSampleSum() != 300e-6 {
		t.Errorf("pipeline histogram = %v", h.GetHistogram())
	}
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	m := New()
	m.OperationIngested(SourceLocal)
	var readyErr error = errors.New("store not open")
	var liveErr error
	srv := httptest.NewServer(Handler(m.Registry, func(context.Context) error { return readyErr },
		func(context.Context) error { return liveErr }))
	defer srv.Close()

	code, body := get(t, srv, "/metrics")
	if code != 200 || !strings.Contains(body, `panda_operations_ingested_total{source="local"} 1`) ||
		!strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d\n%s", code, body)
	}
	if code, body := get(t, srv, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	// Liveness follows the node's own check (before: always 200 while HTTP was served).
	liveErr = errors.New("store writer hung")
	if code, body := get(t, srv, "/healthz"); code != 503 || !strings.Contains(body, "store writer hung") {
		t.Errorf("/healthz of a hung node = %d %q", code, body)
	}
	liveErr = nil
	if code, body := get(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "store not open") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	readyErr = nil
	if code, _ := get(t, srv, "/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	if code, _ := get(t, srv, "/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
}

// value reads a counter or gauge (client_golang's testutil would pull in a new dependency).
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestRefusalsByReason(t *testing.T) {
	m := New()
	counts := map[policy.Reason]uint64{policy.NotWriter: 3}
	m.SetRefusalSource(func() map[policy.Reason]uint64 { return counts })
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "panda_operations_refused_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			got[mt.GetLabel()[0].GetValue()] = mt.GetCounter().GetValue()
		}
	}
	if len(got) != len(policy.Reasons) || got["not_writer"] != 3 || got["over_quota"] != 0 || got["retention"] != 0 {
		t.Fatalf("refusal counters %v", got)
	}
}
