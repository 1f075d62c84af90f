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

// LiveFunc reports whether the node still makes progress: nil unless it is hung (a restart
// would help). It bounds its own check.
type LiveFunc func(ctx context.Context) error

// Handler serves
//
//	/metrics  Prometheus text format from reg
//	/healthz  liveness: 200 "ok" if live(ctx) returns nil, else 503 with the error text
//	/readyz   readiness: 200 "ok" if ready(ctx) returns nil, else 503 with the error text
//
// ready and live may be nil, which means always ready or live.
func Handler(reg *prometheus.Registry, ready ReadyFunc, live LiveFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if live != nil {
			if err := live(r.Context()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not live: " + err.Error() + "\n"))
				return
			}
		}
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
