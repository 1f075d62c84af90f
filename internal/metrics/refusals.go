package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pandanet/pandanet/pkg/policy"
)

// refusals exports panda_operations_refused_total{reason}: operations a topic's write
// policy refused (not a writer, over quota, retention). The node keeps the counts (they
// include refusals decided before an operation reaches the pipeline), so the collector
// reads them on scrape.
type refusals struct {
	desc   *prometheus.Desc
	source atomic.Pointer[func() map[policy.Reason]uint64]
}

func newRefusals() *refusals {
	return &refusals{desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "operations_refused_total"),
		"Operations refused by a topic's write policy, by reason: not_writer, over_quota, retention.",
		[]string{"reason"}, nil)}
}

func (r *refusals) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *refusals) Collect(ch chan<- prometheus.Metric) {
	var counts map[policy.Reason]uint64
	if src := r.source.Load(); src != nil {
		counts = (*src)()
	}
	// Every reason is exported from the start, so rates work before the first refusal.
	for _, reason := range policy.Reasons {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, float64(counts[reason]), string(reason))
	}
}

// SetRefusalSource makes panda_operations_refused_total report src (typically
// node.PolicyRefusals).
func (m *Metrics) SetRefusalSource(src func() map[policy.Reason]uint64) {
	if m == nil {
		return
	}
	m.refusals.source.Store(&src)
}
