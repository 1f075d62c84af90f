// Command panda-operator runs the PandaNetwork and TopicReplica controllers.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/controllers"
)

// defaultNodeImage is overridden at build time (-ldflags -X main.defaultNodeImage=...)
// so one operator release deploys the matching node release.
var defaultNodeImage = "ghcr.io/pandanet/panda-node:latest"

// cacheOptions restricts the caches to the watched namespaces, if any.
func cacheOptions(watchNamespaces string) cache.Options {
	opts := controllers.CacheOptions()
	for _, ns := range strings.Split(watchNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			if opts.DefaultNamespaces == nil {
				opts.DefaultNamespaces = map[string]cache.Config{}
			}
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

func main() {
	if err := run(ctrl.SetupSignalHandler(), flag.CommandLine, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "panda-operator:", err)
		os.Exit(1)
	}
}

// run parses args into fs and runs the manager until ctx is done. fs must be
// flag.CommandLine in production: controller-runtime registers --kubeconfig there.
func run(ctx context.Context, fs *flag.FlagSet, args []string) error {
	var (
		metricsAddr, probeAddr, nodeImage, leaderElectionNamespace string
		watchNamespaces                                            string
		leaderElect                                                bool
		pollInterval                                               time.Duration
	)
	fs.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the metrics endpoint; \"0\" disables it")
	fs.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&leaderElect, "leader-elect", false, "enable leader election (run more than one replica safely)")
	fs.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&nodeImage, "default-node-image", defaultNodeImage, "panda-node image for PandaNetworks without spec.image")
	fs.DurationVar(&pollInterval, "node-status-interval", 30*time.Second, "how often TopicReplica status is refreshed from node admin APIs")
	fs.StringVar(&watchNamespaces, "watch-namespaces", "", "comma-separated namespaces to watch (namespaced mode: the operator then needs a Role in each, not a ClusterRole); empty watches all")
	opts := zap.Options{}
	opts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(pandav1.AddToScheme(scheme))

	// Plain HTTP metrics (restrict with a NetworkPolicy): the authn/authz filter would pull
	// k8s.io/apiserver into the operator binary for little gain here.
	mopts := metricsserver.Options{BindAddress: metricsAddr}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       mopts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "panda-operator.pandanet.io",
		LeaderElectionNamespace:       leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOptions(watchNamespaces),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := controllers.Setup(mgr, controllers.Options{DefaultImage: nodeImage, PollInterval: pollInterval}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add healthz: %w", err)
	}
	// Ready once the caches have synced, so a new leader does not act on an empty view.
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("caches not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("add readyz: %w", err)
	}
	ctrl.Log.WithName("setup").Info("starting panda-operator", "defaultNodeImage", nodeImage, "leaderElect", leaderElect)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
