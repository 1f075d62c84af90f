package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

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

// CacheOptions limit the informer caches to the objects the operator manages, so memory
// does not grow with unrelated objects in the cluster (100 unrelated 500 KB ConfigMaps
// used to cost ~70 MiB): pods by the node label, every other namespaced kind the operator
// writes by the pandanet.io/network label it puts on all of them. A hand-made object
// with an operator name but without the label is invisible to the cache; creating ours
// then fails with AlreadyExists, which the status reports (Degraded), so it is never
// silently adopted. Secrets are never cached (read through the API reader).
func CacheOptions() cache.Options {
	podSel := labels.SelectorFromSet(map[string]string{"app.kubernetes.io/name": "panda-node"})
	managed, err := labels.Parse(networkLabel)
	if err != nil {
		panic(fmt.Sprintf("label selector %q: %v", networkLabel, err))
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}:                   {Label: podSel},
		&corev1.ConfigMap{}:             {Label: managed},
		&corev1.Service{}:               {Label: managed},
		&appsv1.StatefulSet{}:           {Label: managed},
		&policyv1.PodDisruptionBudget{}: {Label: managed},
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
	// The TopicReplica controller reads topicsFrom Secrets at every poll and tells the
	// PandaNetwork controller through this channel when one changed.
	topicsChanged := make(chan event.GenericEvent, 64)
	if err := (&PandaNetworkReconciler{
		Client: mgr.GetClient(), Scheme: mgr.GetScheme(), APIReader: mgr.GetAPIReader(),
		DefaultImage: opts.DefaultImage, MonitoringRecheck: opts.MonitoringRecheck,
		Recorder: mgr.GetEventRecorder("panda-operator"), Nodes: nodes, TopicsChanged: topicsChanged,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setup pandanetwork controller: %w", err)
	}
	if err := (&TopicReplicaReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Nodes: nodes, PollInterval: opts.PollInterval,
		Recorder: mgr.GetEventRecorder("panda-operator"), TopicsChanged: topicsChanged,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setup topicreplica controller: %w", err)
	}
	return nil
}
