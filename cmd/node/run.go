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
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/metrics"
	"github.com/pandanet/pandanet/pkg/operation"
)

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

// loadKey reads the identity key, creating it (mode 0600) on first start, or in place of an
// empty file that an interrupted creation left.
func loadKey(cfg *config.Config, log *slog.Logger) (operation.PrivateKey, error) {
	if fi, err := os.Stat(cfg.KeyFile); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		log.Warn("identity key file is empty (its creation was interrupted); creating a new key", "key_file", cfg.KeyFile)
	}
	key, created, err := operation.LoadOrCreateKeyFile(cfg.KeyFile)
	if err != nil {
		return operation.PrivateKey{}, &config.Error{Key: "key-file", Source: "flag/env/config or default", Value: cfg.KeyFile, Err: err}
	}
	if created {
		log.Info("created identity key", "key_file", cfg.KeyFile)
	} else if fi, err := os.Stat(cfg.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 && !mountedSecret(cfg.KeyFile, fi.Mode().Perm()) {
		log.Warn("identity key file is readable by group or others; chmod 600 it", "key_file", cfg.KeyFile, "mode", fi.Mode().Perm().String())
	}
	return key, nil
}

// mountedSecret reports whether a key file with group access is a mounted secret: on a
// read-only mount, readable by owner and group only, writable by nobody. That is how the
// kubelet mounts a Secret for a non-root pod (root owns the file, the pod's fsGroup reads
// it, and the kubelet adds group read to whatever mode the pod asks for), so there is
// nothing to chmod and no warning to give. Anything readable by others, or writable, or on
// a writable file system (a laptop, a shared host) still warns.
func mountedSecret(path string, perm os.FileMode) bool {
	return perm&0o337 == 0 && readOnlyMount(path)
}

// readOnlyMount reports whether path lies on a read-only mount (a variable for tests).
// It reads the mount flags with statfs. access(2) with W_OK cannot tell: the kernel checks
// the file's permissions before the mount's read-only flag, so for the pod's non-root user
// a 0440 file on a read-only bind mount (the kubelet's Secret volume) answers EACCES, not
// EROFS — which the real-cluster e2e showed.
var readOnlyMount = func(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Flags&unix.ST_RDONLY != 0
}

// Shutdown and connection timeouts of the daemon's HTTP servers. Variables so tests can
// shorten them.
var (
	// adminDrainTimeout is how long in-flight admin requests (publishes) may take to finish
	// after a shutdown signal; connections still open then are closed.
	adminDrainTimeout = 10 * time.Second
	// nodeCloseTimeout bounds closing the node (topics, network, store flush). It starts
	// when the servers are down, so a slow client cannot use it up.
	nodeCloseTimeout = 30 * time.Second
	// headerTimeout bounds reading a request's headers; idleTimeout how long a keep-alive
	// connection may wait for its next request.
	headerTimeout = 10 * time.Second
	idleTimeout   = 60 * time.Second
	// livenessBound is how long one /healthz check waits for the node to answer before it
	// reports the node hung (the pod's liveness probe allows a little more).
	livenessBound = 5 * time.Second
)

// runDaemon runs the node until ctx ends (SIGTERM/SIGINT) or a server fails. load builds
// the configuration again when the --config file changes (nil: the file is not watched).
func runDaemon(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), stderr io.Writer) error {
	lc := &lifecycle{cfg: cfg, load: load, log: newLogger(cfg, stderr), metrics: metrics.New()}
	slog.SetDefault(lc.log)
	if err := lc.prepare(); err != nil {
		lc.release()
		return err
	}
	defer lc.release()
	return lc.run(ctx)
}

// lifecycle is one run of the daemon: it prepares the data dir, key and listeners, starts
// the HTTP servers, opens the node and its topics, watches the topics and config files, and
// shuts everything down in order.
type lifecycle struct {
	cfg     *config.Config
	load    func() (*config.Config, error)
	log     *slog.Logger
	metrics *metrics.Metrics

	lock               *dataDirLock
	key                operation.PrivateKey
	metricsLn, adminLn net.Listener
	running            atomic.Pointer[daemonNode] // set while the node serves (readiness)
	started            atomic.Bool                // the node has served (liveness)
	metricsSrv         *http.Server
	adminSrv           *http.Server
	adminAPI           *admin.Server
	node               daemonNode
	topics             *daemon
}

// prepare creates and locks the data dir, loads the key and binds the HTTP ports (before
// the node starts, so a taken port fails fast and /healthz answers "starting" meanwhile).
func (lc *lifecycle) prepare() error {
	cfg := lc.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return &config.Error{Key: "data-dir", Source: "flag/env/config or default", Value: cfg.DataDir, Err: err}
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	lc.lock = lock
	if lc.key, err = loadKey(cfg, lc.log); err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		if lc.metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics-listen %s: %w", cfg.MetricsListen, err)
		}
	}
	if cfg.AdminListen != "" {
		if lc.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("admin-listen %s: %w", cfg.AdminListen, err)
		}
	}
	return nil
}

// release closes what prepare opened.
func (lc *lifecycle) release() {
	for _, ln := range []net.Listener{lc.metricsLn, lc.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if lc.lock != nil {
		lc.lock.release()
	}
}

func (lc *lifecycle) ready(ctx context.Context) error {
	n := lc.running.Load()
	if n == nil {
		return errors.New("starting")
	}
	if err := (*n).Ready(ctx); err != nil {
		return err
	}
	return lc.topics.catchUp.err(time.Now())
}

// alive is /healthz: "starting" until the node runs (a pod's startup probe bounds how long
// a start may take, so a start that hangs is restarted too), nil while it stops (the
// termination grace period bounds that), else the node's watchdog within livenessBound.
func (lc *lifecycle) alive(ctx context.Context) error {
	n := lc.running.Load()
	if n == nil {
		if !lc.started.Load() {
			return errors.New("starting")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, livenessBound)
	defer cancel()
	return (*n).Alive(ctx)
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout}
}

// serve runs srv on ln in g; closing the server is not an error.
func serve(g *errgroup.Group, name string, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s server: %w", name, err)
		}
		return nil
	})
}

func (lc *lifecycle) run(ctx context.Context) error {
	cfg, log := lc.cfg, lc.log
	g, gctx := errgroup.WithContext(ctx)
	if lc.metricsLn != nil {
		lc.metricsSrv = newHTTPServer(metrics.Handler(lc.metrics.Registry, lc.ready, lc.alive))
		serve(g, "metrics", lc.metricsSrv, lc.metricsLn)
		log.Info("serving metrics", "addr", lc.metricsLn.Addr().String())
	}
	stopMetrics := func() {
		if lc.metricsSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := lc.metricsSrv.Shutdown(sctx); err != nil {
				_ = lc.metricsSrv.Close()
			}
		}
	}

	node, err := openNode(ctx, nodeParams{cfg: cfg, key: lc.key, log: log, metrics: lc.metrics, version: version})
	if err != nil {
		stopMetrics()
		return errors.Join(fmt.Errorf("start node: %w", err), g.Wait())
	}
	lc.node = node
	lc.topics = newDaemon(node, log, lc.metrics, cfg.AckPolicy, version)
	lc.topics.maxAPITopics = cfg.MaxAPITopics
	// Readiness waits for a catch-up only where there are peers to catch up with: a node
	// without bootstrap peers (a single replica, a laptop) is ready at once.
	if cfg.ReadyCatchUpTimeout > 0 && len(cfg.Bootstrap) > 0 {
		ids := make([]operation.Topic, 0, len(cfg.Topics))
		for _, t := range cfg.Topics {
			ids = append(ids, t.Topic)
		}
		lc.topics.catchUp = newCatchUp(ids, time.Now().Add(cfg.ReadyCatchUpTimeout), log)
	}
	for _, t := range cfg.Topics {
		if _, err := lc.topics.ensure(ctx, t, true); err != nil {
			stopMetrics()
			return errors.Join(err, lc.closeNode(), g.Wait())
		}
	}
	lc.running.Store(&node)
	lc.started.Store(true)

	lc.watchTopicsFile(g, gctx)
	lc.watchConfigFile(g, gctx)
	if lc.adminLn != nil {
		lc.adminAPI = admin.NewServer(lc.topics, admin.ServerOptions{Token: cfg.AdminToken, Logger: log})
		lc.adminSrv = newHTTPServer(lc.adminAPI)
		serve(g, "admin", lc.adminSrv, lc.adminLn)
		log.Info("serving admin API", "addr", lc.adminLn.Addr().String(), "auth", cfg.AdminToken != "")
	}
	log.Info("node running", "peer_id", node.PeerID(), "public_key", node.PublicKey().String(),
		"network_id", cfg.NetworkIDName, "addrs", node.Addrs(), "topics", len(cfg.Topics),
		"data_dir", cfg.DataDir, "version", version)

	<-gctx.Done()
	if ctx.Err() != nil {
		log.Info("shutting down")
	} else {
		log.Error("shutting down after a server failure")
	}
	lc.shutdownAdmin()
	lc.running.Store(nil)
	stopMetrics()
	runErr := g.Wait() // servers are closed; the file watchers ended with gctx
	if err := lc.closeNode(); err != nil {
		return errors.Join(runErr, err)
	}
	log.Info("node stopped")
	return runErr
}

// shutdownAdmin ends the admin API: event streams first (a client that does not read
// would otherwise hold its connection), then in-flight requests get adminDrainTimeout to
// finish, then whatever is left (a publish body trickling in) is cut.
func (lc *lifecycle) shutdownAdmin() {
	lc.topics.detachSubscribers()
	if lc.adminSrv == nil {
		return
	}
	lc.adminAPI.CloseStreams()
	sctx, cancel := context.WithTimeout(context.Background(), adminDrainTimeout)
	defer cancel()
	if err := lc.adminSrv.Shutdown(sctx); err != nil {
		lc.log.Warn("admin requests still running after the drain timeout; closing their connections",
			"timeout", adminDrainTimeout, "err", err)
		_ = lc.adminSrv.Close()
	}
}

// closeNode closes the topics and the node, flushing the store, within nodeCloseTimeout.
func (lc *lifecycle) closeNode() error {
	done := make(chan error, 1)
	go func() {
		lc.topics.Close()
		done <- lc.node.Close()
	}()
	t := time.NewTimer(nodeCloseTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close node: %w", err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("closing the node took longer than %v; the store may not have been closed cleanly", nodeCloseTimeout)
	}
}

func (lc *lifecycle) watchTopicsFile(g *errgroup.Group, ctx context.Context) {
	cfg, log := lc.cfg, lc.log
	if cfg.TopicsFile == "" {
		return
	}
	w := config.NewTopicsWatcher(cfg.TopicsFile, cfg.Topics)
	w.OnChange = func(ch config.TopicsChange) {
		log.Info("topics file changed", "added", len(ch.Added), "removed", len(ch.Removed), "topics", len(ch.All))
		lc.topics.applyTopics(ctx, ch)
	}
	w.OnError = func(err error) {
		log.Warn("topics file unreadable, keeping current topics", "path", cfg.TopicsFile, "err", err)
	}
	g.Go(func() error { w.Run(ctx); return nil })
}

func (lc *lifecycle) watchConfigFile(g *errgroup.Group, ctx context.Context) {
	cfg, log := lc.cfg, lc.log
	if cfg.ConfigFile == "" || lc.load == nil {
		return
	}
	w := config.NewConfigWatcher(cfg, lc.load)
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
			if err := lc.node.Reconfigure(next); err != nil {
				log.Error("apply reloaded config", "path", cfg.ConfigFile, "err", err)
			}
		}
	}
	w.OnError = func(err error) {
		log.Warn("config file does not load, keeping the current settings", "path", cfg.ConfigFile, "err", err)
	}
	g.Go(func() error { w.Run(ctx); return nil })
}
