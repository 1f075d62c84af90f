package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/metrics"
	"github.com/pandanet/pandanet/pkg/operation"
)

// shutdownTimeout bounds the graceful part of shutdown (in-flight admin requests, closing
// topics, flushing the store). A second signal is not needed: after this the process exits.
const shutdownTimeout = 30 * time.Second

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [flags]",
		Short: "Run a node",
		Long: `Run a pandanet node: open (or create) the SQLite store <data-dir>/panda.db and the
identity key, join the network, subscribe to and sync the topics of --topics-file (reloaded
when it changes), and serve metrics and the admin API. When the --config file changes, its
bootstrap and announce keys take effect without a restart; other keys need one.

Every flag can also be set with an environment variable PANDA_<FLAG> (upper case,
dashes as underscores, lists comma-separated) or a key of the same name in the YAML
file given by --config. Precedence: flag > environment > YAML > default.

SIGTERM or SIGINT shuts the node down gracefully: in-flight publishes finish and the store
is flushed before the process exits.`,
		Example: `  # an edge node on a laptop
  panda-node run --topics-file ~/topics.txt

  # an always-on node in a cluster
  panda-node run --public --relay-service --mdns=false \
    --key-file /etc/panda/identity/node-0.key --topics-file /etc/panda/topics/topics \
    --admin-listen 0.0.0.0:7070 --admin-token-file /etc/panda/admin/token`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			load := func() (*config.Config, error) { return config.Load(cmd.Flags(), nil) }
			cfg, err := load()
			if err != nil {
				return err
			}
			return runDaemon(cmd.Context(), cfg, load, cmd.ErrOrStderr())
		},
	}
	config.RegisterFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadKey reads the identity key, creating it (mode 0600) on first start.
func loadKey(cfg *config.Config, log *slog.Logger) (operation.PrivateKey, error) {
	key, created, err := operation.LoadOrCreateKeyFile(cfg.KeyFile)
	if err != nil {
		return operation.PrivateKey{}, &config.Error{Key: "key-file", Source: "flag/env/config or default", Value: cfg.KeyFile, Err: err}
	}
	if created {
		log.Info("created identity key", "key_file", cfg.KeyFile)
	} else if fi, err := os.Stat(cfg.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("identity key file is readable by group or others; chmod 600 it", "key_file", cfg.KeyFile, "mode", fi.Mode().Perm().String())
	}
	return key, nil
}

// runDaemon runs the node until ctx is cancelled (SIGTERM/SIGINT) or a server fails.
// runDaemon runs the node until ctx ends. load builds the configuration again when the
// --config file changes (nil: the file is not watched).
func runDaemon(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return &config.Error{Key: "data-dir", Source: "flag/env/config or default", Value: cfg.DataDir, Err: err}
	}
	key, err := loadKey(cfg, log)
	if err != nil {
		return err
	}
	m := metrics.New()

	// Bind the HTTP ports before starting the node so a taken port fails fast, and so
	// /healthz answers while the node starts (/readyz says "starting" until it is up).
	var metricsLn, adminLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		defer metricsLn.Close()
	}
	if cfg.AdminListen != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("admin-listen %s: %w", cfg.AdminListen, err)
		}
		defer adminLn.Close()
	}

	var running atomic.Pointer[daemonNode]
	ready := func(ctx context.Context) error {
		n := running.Load()
		if n == nil {
			return errors.New("starting")
		}
		return (*n).Ready(ctx)
	}
	serveErr := make(chan error, 2)
	var servers sync.WaitGroup
	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsSrv = &http.Server{Handler: metrics.Handler(m.Registry, ready), ReadHeaderTimeout: 10 * time.Second}
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := metricsSrv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics server: %w", err)
			}
		}()
		log.Info("serving metrics", "addr", metricsLn.Addr().String())
	}
	defer func() {
		if metricsSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = metricsSrv.Shutdown(sctx)
		}
		servers.Wait()
	}()

	node, err := openNode(ctx, nodeParams{cfg: cfg, key: key, log: log, metrics: m, version: version})
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	d := newDaemon(node, log, m, cfg.AckPolicy, version)
	closeNode := func() {
		d.Close()
		if err := node.Close(); err != nil {
			log.Error("close node", "err", err)
		}
	}
	for _, t := range cfg.Topics {
		if _, err := d.ensure(ctx, t, true); err != nil {
			closeNode()
			return err
		}
	}
	running.Store(&node)

	wctx, stopWatch := context.WithCancel(context.Background())
	var watcher sync.WaitGroup
	if cfg.TopicsFile != "" {
		w := config.NewTopicsWatcher(cfg.TopicsFile, cfg.Topics)
		w.OnChange = func(ch config.TopicsChange) {
			log.Info("topics file changed", "added", len(ch.Added), "removed", len(ch.Removed), "topics", len(ch.All))
			d.applyTopics(wctx, ch)
		}
		w.OnError = func(err error) {
			log.Warn("topics file unreadable, keeping current topics", "path", cfg.TopicsFile, "err", err)
		}
		watcher.Add(1)
		go func() { defer watcher.Done(); w.Run(wctx) }()
	}

	if cfg.ConfigFile != "" && load != nil {
		w := config.NewConfigWatcher(cfg, load)
		w.OnChange = func(_, next *config.Config, changed []string) {
			var restart []string
			for _, key := range changed {
				if !slices.Contains(config.Reloadable, key) {
					restart = append(restart, key)
				}
			}
			if len(restart) > 0 {
				log.Warn("config file changed keys that apply only after a restart", "path", cfg.ConfigFile, "keys", restart)
			}
			if len(restart) < len(changed) {
				if err := node.Reconfigure(next); err != nil {
					log.Error("apply reloaded config", "path", cfg.ConfigFile, "err", err)
				}
			}
		}
		w.OnError = func(err error) {
			log.Warn("config file does not load, keeping the current settings", "path", cfg.ConfigFile, "err", err)
		}
		watcher.Add(1)
		go func() { defer watcher.Done(); w.Run(wctx) }()
	}

	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = &http.Server{
			Handler:           admin.NewServer(d, admin.ServerOptions{Token: cfg.AdminToken, Logger: log}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("admin server: %w", err)
			}
		}()
		log.Info("serving admin API", "addr", adminLn.Addr().String(), "auth", cfg.AdminToken != "")
	}

	log.Info("node running", "peer_id", node.PeerID(), "public_key", node.PublicKey().String(),
		"network_id", cfg.NetworkIDName, "addrs", node.Addrs(), "topics", len(cfg.Topics),
		"data_dir", cfg.DataDir, "version", version)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
		log.Error("shutting down after server failure", "err", runErr)
	}

	// Graceful shutdown: end event streams, let in-flight admin requests (publishes)
	// finish, stop watching the topics file, close topics, then close the node, which
	// flushes pending store writes.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	d.detachSubscribers()
	if adminSrv != nil {
		if err := adminSrv.Shutdown(sctx); err != nil {
			log.Warn("admin server shutdown", "err", err)
		}
	}
	stopWatch()
	watcher.Wait()
	running.Store(nil)
	done := make(chan struct{})
	go func() { closeNode(); close(done) }()
	select {
	case <-done:
		log.Info("node stopped")
	case <-sctx.Done():
		return errors.New("shutdown timed out; the store may not have been closed cleanly")
	}
	return runErr
}
