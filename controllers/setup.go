package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// Options configure both controllers.
type Options struct {
	// DefaultImage for PandaNetworks without spec.image.
	DefaultImage string
	// Nodes reads node admin APIs; nil uses the HTTP client.
	Nodes NodeStatusClient
	// PollInterval of TopicReplica status polls.
	PollInterval time.Duration
	// MonitoringRecheck caches the "is the PodMonitor CRD served" answer (default 1m).
	MonitoringRecheck time.Duration
}

// CacheOptions limit the informer caches to what the operator manages: pods by the
// node label (instead of every pod in the cluster). Services, ConfigMaps and
// StatefulSets stay unfiltered so a conflicting hand-made object is seen, not re-created.
func CacheOptions() cache.Options {
	podSel := labels.SelectorFromSet(map[string]string{"app.kubernetes.io/name": "panda-node"})
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: podSel},
	}}
}

// Setup registers field indexes and both controllers with the manager.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &pandav1.TopicReplica{}, networkRefIndex,
		func(o client.Object) []string {
			return []string{o.(*pandav1.TopicReplica).Spec.NetworkRef.Name}
		}); err != nil {
		return fmt.Errorf("index topicreplicas by network: %w", err)
	}
	nodes := opts.Nodes
	if nodes == nil {
		nodes = NewHTTPNodeStatusClient()
	}
	if err := (&PandaNetworkReconciler{
		Client: mgr.GetClient(), Scheme: mgr.GetScheme(), APIReader: mgr.GetAPIReader(),
		DefaultImage: opts.DefaultImage, MonitoringRecheck: opts.MonitoringRecheck,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setup pandanetwork controller: %w", err)
	}
	if err := (&TopicReplicaReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Nodes: nodes, PollInterval: opts.PollInterval,
		Recorder: mgr.GetEventRecorder("panda-operator"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setup topicreplica controller: %w", err)
	}
	return nil
}
