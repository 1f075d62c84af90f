// Package metrics holds the Prometheus collectors of a pandanet node and the HTTP handler
// serving /metrics, /healthz and /readyz.
//
// Node packages receive a *Metrics and call its methods; every method is safe on a nil
// *Metrics, so library users who do not want metrics pass nil and pay nothing:
//
//	m := metrics.New()                       // one per node; registers on its own registry
//	m.OperationIngested(metrics.SourceSync)  // pipeline: an operation was stored
//	m.OperationRejected(err)                 // pipeline: label = operation.Reason(err)
//	m.ObservePipeline(time.Since(start))     // pipeline: validate→store→deliver latency
//	m.SyncStarted(); m.SyncEnded(err)        // sync: one session; err != nil counts "failed"
//	m.SyncBytes(metrics.Sent, n)             // sync: wire bytes
//	m.SetPeers(n)                            // p2p: connected peers (gauge)
//	m.GossipMessage(metrics.Received)        // p2p: gossip messages
//	m.SetRelayReservations(n)                // p2p: active relay reservations (gauge)
//	m.SetStoreSize(bytes)                    // store: database size
//	m.SetStoreOperations(n)                  // store: number of stored operations
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Namespace prefixes every metric name.
const Namespace = "panda"

// Direction labels byte and message counters.
type Direction string

const (
	Sent     Direction = "sent"
	Received Direction = "received"
)

// Source labels where an ingested operation came from.
type Source string

const (
	SourceLocal  Source = "local"  // published on this node
	SourceSync   Source = "sync"   // received in a log-sync session
	SourceImport Source = "import" // imported from an external stream
	SourceReplay Source = "replay" // replayed from the local store on stream start
)

// Metrics are the node's collectors. Fields are exported for tests and for callers that need
// a label set not covered by the helper methods; prefer the methods.
type Metrics struct {
	Registry *prometheus.Registry

	OperationsIngested *prometheus.CounterVec // label source
	OperationsRejected *prometheus.CounterVec // label reason (operation.Reason)
	SyncSessions       *prometheus.CounterVec // label event: started, ended, failed
	SyncBytesTotal     *prometheus.CounterVec // label direction
	ConnectedPeers     prometheus.Gauge
	GossipMessages     *prometheus.CounterVec // label direction
	RelayReservations  prometheus.Gauge
	PipelineLatency    prometheus.Histogram
	StoreSizeBytes     prometheus.Gauge
	StoreOperations    prometheus.Gauge
	StoreWritable      prometheus.Gauge
	Topics             prometheus.Gauge

	refusals *refusals
}

// New creates the collectors on a fresh registry that also carries the Go runtime and
// process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return NewWith(reg)
}

// NewWith registers the node collectors on reg (for embedding into an existing registry).
func NewWith(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		Registry: reg,
		OperationsIngested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "operations_ingested_total",
			Help: "Operations validated and stored, by source.",
		}, []string{"source"}),
		OperationsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "operations_rejected_total",
			Help: "Operations that failed validation or storage, by reason.",
		}, []string{"reason"}),
		SyncSessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sync_sessions_total",
			Help: "Log-sync sessions by event: started, ended (cleanly), failed.",
		}, []string{"event"}),
		SyncBytesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sync_bytes_total",
			Help: "Bytes exchanged in log-sync sessions, by direction.",
		}, []string{"direction"}),
		ConnectedPeers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "connected_peers",
			Help: "Peers with at least one open connection.",
		}),
		GossipMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "gossip_messages_total",
			Help: "Gossip (ephemeral) messages, by direction.",
		}, []string{"direction"}),
		RelayReservations: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "relay_reservations",
			Help: "Active circuit relay v2 reservations (held by this node as client, or served as relay).",
		}),
		PipelineLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "pipeline_latency_seconds",
			Help: "Time from an operation entering the pipeline until it was delivered or rejected.",
			// 50µs … ~3.3s: a local operation takes well under a millisecond, a batched
			// write under load a few milliseconds.
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 9),
		}),
		StoreSizeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "store_size_bytes",
			Help: "Size of the SQLite database in bytes.",
		}),
		StoreOperations: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "store_operations",
			Help: "Operations held in the store.",
		}),
		StoreWritable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "store_writable",
			Help: "1 while the store accepts writes, 0 after a write failed (disk full, I/O error) until one succeeds again.",
		}),
		Topics: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "topics",
			Help: "Topics this node subscribes to and syncs.",
		}),
		refusals: newRefusals(),
	}
	reg.MustRegister(m.OperationsIngested, m.OperationsRejected, m.SyncSessions, m.SyncBytesTotal,
		m.ConnectedPeers, m.GossipMessages, m.RelayReservations, m.PipelineLatency,
		m.StoreSizeBytes, m.StoreOperations, m.StoreWritable, m.Topics, m.refusals)
	m.StoreWritable.Set(1)
	// Pre-create the common label values so dashboards see zeros instead of missing series.
	for _, s := range []Source{SourceLocal, SourceSync, SourceImport, SourceReplay} {
		m.OperationsIngested.WithLabelValues(string(s))
	}
	for _, e := range []string{"started", "ended", "failed"} {
		m.SyncSessions.WithLabelValues(e)
	}
	for _, d := range []Direction{Sent, Received} {
		m.SyncBytesTotal.WithLabelValues(string(d))
		m.GossipMessages.WithLabelValues(string(d))
	}
	return m
}

// OperationIngested counts one stored operation.
func (m *Metrics) OperationIngested(src Source) {
	if m != nil {
		m.OperationsIngested.WithLabelValues(string(src)).Inc()
	}
}

// OperationRejected counts one rejected operation, labelled with operation.Reason(err).
func (m *Metrics) OperationRejected(err error) {
	if m != nil {
		m.OperationsRejected.WithLabelValues(operation.Reason(err)).Inc()
	}
}

// ObservePipeline records the pipeline latency of one operation.
func (m *Metrics) ObservePipeline(d time.Duration) {
	if m != nil {
		m.PipelineLatency.Observe(d.Seconds())
	}
}

// SyncStarted counts a sync session that completed its handshake.
func (m *Metrics) SyncStarted() {
	if m != nil {
		m.SyncSessions.WithLabelValues("started").Inc()
	}
}

// SyncEnded counts a finished session: "ended" if err is nil, "failed" otherwise.
func (m *Metrics) SyncEnded(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.SyncSessions.WithLabelValues("failed").Inc()
		return
	}
	m.SyncSessions.WithLabelValues("ended").Inc()
}

// SyncBytes adds n bytes sent or received by the sync protocol.
func (m *Metrics) SyncBytes(d Direction, n int) {
	if m != nil && n > 0 {
		m.SyncBytesTotal.WithLabelValues(string(d)).Add(float64(n))
	}
}

// SetPeers sets the number of connected peers.
func (m *Metrics) SetPeers(n int) {
	if m != nil {
		m.ConnectedPeers.Set(float64(n))
	}
}

// GossipMessage counts one gossip message.
func (m *Metrics) GossipMessage(d Direction) {
	if m != nil {
		m.GossipMessages.WithLabelValues(string(d)).Inc()
	}
}

// SetRelayReservations sets the number of active relay reservations.
func (m *Metrics) SetRelayReservations(n int) {
	if m != nil {
		m.RelayReservations.Set(float64(n))
	}
}

// SetStoreSize sets the database size in bytes.
func (m *Metrics) SetStoreSize(bytes int64) {
	if m != nil {
		m.StoreSizeBytes.Set(float64(bytes))
	}
}

// SetStoreWritable records whether the store accepts writes.
func (m *Metrics) SetStoreWritable(ok bool) {
	if m != nil {
		v := 0.0
		if ok {
			v = 1
		}
		m.StoreWritable.Set(v)
	}
}

// SetStoreOperations sets the number of stored operations.
func (m *Metrics) SetStoreOperations(n int64) {
	if m != nil {
		m.StoreOperations.Set(float64(n))
	}
}

// SetTopics sets the number of subscribed topics.
func (m *Metrics) SetTopics(n int) {
	if m != nil {
		m.Topics.Set(float64(n))
	}
}
