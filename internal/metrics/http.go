package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc reports whether the node can serve: nil when the store is open and the libp2p
// host is listening, otherwise an error saying what is missing.
type ReadyFunc func(ctx context.Context) error

// readyTimeout bounds one readiness check so a wedged dependency fails the probe instead of
// hanging it.
const readyTimeout = 2 * time.Second

// Handler serves
//
//	/metrics  Prometheus text format from reg
//	/healthz  liveness: 200 "ok" while the process serves HTTP
//	/readyz   readiness: 200 "ok" if ready(ctx) returns nil, else 503 with the error text
//
// ready may be nil, which means always ready.
func Handler(reg *prometheus.Registry, ready ReadyFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
