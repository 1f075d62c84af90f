package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

const (
	// networkRefIndex indexes TopicReplicas by spec.networkRef.name.
	networkRefIndex = "spec.networkRef.name"
	restartedAtKey  = "kubectl.kubernetes.io/restartedAt"
)

var podMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}

// PandaNetworkReconciler reconciles a PandaNetwork into a StatefulSet of panda-node pods
// with Services, Secrets, ConfigMaps, a PodDisruptionBudget and (optionally) a PodMonitor.
type PandaNetworkReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// APIReader reads Secrets uncached: caching them would mean list/watch on every
	// Secret in the cluster.
	APIReader client.Reader
	// DefaultImage is used when spec.image is empty.
	DefaultImage string
	// MonitoringRecheck is how long the PodMonitor CRD check is cached (default 1m).
	MonitoringRecheck time.Duration
	// Recorder records Kubernetes events for decisions users need to see; nil records none.
	Recorder events.EventRecorder
	// Nodes reads node admin APIs (safe scale-down); nil skips the check.
	Nodes NodeStatusClient

	monitorMu      sync.Mutex
	monitorChecked time.Time
	monitorPresent bool

	gate upgradeGate

	// TopicsChanged receives the networks whose topicsFrom Secrets changed (sent by the
	// TopicReplica controller, which reads those Secrets at every poll); nil makes one.
	TopicsChanged chan event.GenericEvent
}

func (r *PandaNetworkReconciler) topicsChanged() chan event.GenericEvent {
	if r.TopicsChanged == nil {
		r.TopicsChanged = make(chan event.GenericEvent, 64)
	}
	return r.TopicsChanged
}

// +kubebuilder:rbac:groups=pandanet.io,resources=pandanetworks,verbs=get;list;watch
// +kubebuilder:rbac:groups=pandanet.io,resources=pandanetworks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=pandanet.io,resources=pandanetworks/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=podmonitors,verbs=get;create;update;patch;delete

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// event records a Kubernetes event about pn (action is what the operator did or refused).
func (r *PandaNetworkReconciler) event(pn *pandav1.PandaNetwork, eventType, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(pn, nil, eventType, reason, action, note, args...)
}

// Reconcile implements reconcile.Reconciler.
func (r *PandaNetworkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pn := &pandav1.PandaNetwork{}
	if err := r.Get(ctx, req.NamespacedName, pn); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !pn.DeletionTimestamp.IsZero() {
		// Owned objects go by garbage collection; the identity Secret and PVCs stay by design.
		return ctrl.Result{}, nil
	}

	if pn.Annotations[PausedAnnotation] == "true" {
		return ctrl.Result{}, r.reportPaused(ctx, pn)
	}
	// Addresses the API server's CEL rules could only check by shape: a node given an
	// unparsable one refuses to start, so nothing derived from this spec is written.
	if err := ValidateSpecAddresses(pn); err != nil {
		return ctrl.Result{}, r.reportInvalidSpec(ctx, pn, err)
	}

	// A scale-down waits until the remaining nodes hold the leaving nodes' data; until
	// then every object is built for the current size.
	work := pn
	effective, hold, err := r.scaleDownHold(ctx, pn)
	if err != nil {
		return ctrl.Result{}, err
	}
	if hold != "" {
		r.event(pn, corev1.EventTypeWarning, ReasonScaleDownBlocked, "Scale", "%s", hold)
		work = pn.DeepCopy()
		work.Spec.Replicas = &effective
	}

	// An error still updates the status (Degraded) before it is returned for retry.
	obs, recErr := r.reconcileObjects(ctx, work)
	if obs != nil {
		obs.scaleDownBlocked = hold
	}
	if apierrors.IsConflict(recErr) {
		// A write raced another writer (or our cache lagged): nothing is wrong with the
		// network, so neither Degraded nor an error log; retry with fresh objects.
		log.FromContext(ctx).V(1).Info("write conflict, requeueing", "error", recErr.Error())
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	if err := r.updateStatus(ctx, pn, obs, recErr); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, errors.Join(recErr, err)
	}
	if recErr != nil {
		return ctrl.Result{}, recErr
	}
	if obs.upgradeDeferred {
		return ctrl.Result{RequeueAfter: upgradeRecheck}, nil
	}
	// Periodic refresh: node placement (NodePort addresses) and pod readiness can change
	// without an event on an owned object.
	if meta.IsStatusConditionTrue(pn.Status.Conditions, pandav1.ConditionReady) {
		return ctrl.Result{RequeueAfter: 5 * time.Minute}, nil
	}
	return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
}

// Control annotations on a PandaNetwork (as CloudNativePG has).
const (
	// PausedAnnotation "true" stops the operator from writing any object of the network
	// (for manual surgery); removing it resumes reconciliation.
	PausedAnnotation = "pandanet.io/reconciliation-paused"
	// RestartAnnotation: setting it to a new value (e.g. a timestamp) rolls every node
	// pod once, one at a time, like `kubectl rollout restart`.
	RestartAnnotation = "pandanet.io/restartedAt"
)

// ReasonPaused marks Progressing while reconciliation is paused.
const ReasonPaused = "ReconciliationPaused"

// reportPaused records that reconciliation is paused (Progressing=False) and writes
// nothing else.
func (r *PandaNetworkReconciler) reportPaused(ctx context.Context, pn *pandav1.PandaNetwork) error {
	base := pn.DeepCopy()
	setConditions(&pn.Status.Conditions, metav1.Condition{Type: pandav1.ConditionProgressing, Status: metav1.ConditionFalse,
		Reason: ReasonPaused, Message: "annotation " + PausedAnnotation + "=true: the operator changes nothing until it is removed",
		ObservedGeneration: pn.Generation})
	if equality.Semantic.DeepEqual(base.Status, pn.Status) {
		return nil
	}
	r.event(pn, corev1.EventTypeNormal, ReasonPaused, "Pause", "reconciliation paused by annotation %s", PausedAnnotation)
	if err := r.Status().Patch(ctx, pn, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status of pandanetwork %s: %w", pn.Name, err)
	}
	return nil
}

// upgradeRecheck is how often a network waiting for a staggered upgrade looks again.
const upgradeRecheck = 15 * time.Second

// conflictRetry is how soon a reconcile that lost a write race runs again.
const conflictRetry = time.Second

// reportInvalidSpec records a spec the operator refuses to apply: Ready=False and
// Degraded=True with reason InvalidSpec and a message naming the bad entry. The rest of
// the status (and every object) stays as the last valid spec left it.
func (r *PandaNetworkReconciler) reportInvalidSpec(ctx context.Context, pn *pandav1.PandaNetwork, specErr error) error {
	base := pn.DeepCopy()
	msg := "spec not applied: " + specErr.Error()
	setConditions(&pn.Status.Conditions,
		metav1.Condition{Type: pandav1.ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonInvalidSpec, Message: msg, ObservedGeneration: pn.Generation},
		metav1.Condition{Type: pandav1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: ReasonInvalidSpec, Message: msg, ObservedGeneration: pn.Generation},
	)
	pn.Status.ObservedGeneration = pn.Generation
	if equality.Semantic.DeepEqual(base.Status, pn.Status) {
		return nil
	}
	r.event(pn, corev1.EventTypeWarning, ReasonInvalidSpec, "Reject", msg)
	if err := r.Status().Patch(ctx, pn, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status of pandanetwork %s: %w", pn.Name, err)
	}
	return nil
}

// observed collects what reconcileObjects learned for the status.
type observed struct {
	sts      *appsv1.StatefulSet
	peerIDs  map[int32]string
	services map[int32]*corev1.Service
	public   map[int32][]pandav1.NodeAddress
	pods     map[string]*corev1.Pod
	// upgradeDeferred: the network waits for another's rollout (staggered upgrade).
	upgradeDeferred bool
	// scaleDownBlocked says why a scale-down waits.
	scaleDownBlocked string
	// retainedTopics is status.retainedTopics (secret topics as fingerprints).
	retainedTopics []string
}

func (r *PandaNetworkReconciler) image(pn *pandav1.PandaNetwork) string {
	if pn.Spec.Image != "" {
		return pn.Spec.Image
	}
	return r.DefaultImage
}

func (r *PandaNetworkReconciler) reconcileObjects(ctx context.Context, pn *pandav1.PandaNetwork) (*observed, error) {
	obs := &observed{services: map[int32]*corev1.Service{}, public: map[int32][]pandav1.NodeAddress{}, pods: map[string]*corev1.Pod{}}
	var err error
	// Keys and config first: the StatefulSet must never start a pod whose key or
	// config file does not exist yet.
	if obs.peerIDs, err = r.reconcileIdentity(ctx, pn); err != nil {
		return obs, err
	}
	if err := r.reconcileAdminToken(ctx, pn); err != nil {
		return obs, err
	}
	if obs.retainedTopics, err = r.reconcileTopics(ctx, pn); err != nil {
		return obs, err
	}
	if err := r.reconcileServices(ctx, pn, obs); err != nil {
		return obs, err
	}
	if err := r.observePods(ctx, pn, obs); err != nil {
		return obs, err
	}
	n := desiredReplicas(pn)
	for i := int32(0); i < n; i++ {
		var nodeHost NodeHost
		if exposureType(pn) == pandav1.ExposureNodePort {
			nodeHost = r.nodeHost(ctx, obs.pods[nodeName(pn, i)])
		}
		obs.public[i] = PublicAddrs(pn, i, obs.services[i], nodeHost)
	}
	cfg, err := BuildConfigConfigMap(pn, BuildNodeConfigs(pn, obs.peerIDs, obs.public))
	if err != nil {
		return obs, err
	}
	if err := r.applyConfigMap(ctx, pn, cfg); err != nil {
		return obs, fmt.Errorf("reconcile configmap %s: %w", cfg.Name, err)
	}
	if obs.sts, obs.upgradeDeferred, err = r.reconcileStatefulSet(ctx, pn); err != nil {
		return obs, err
	}
	if err := r.removeLegacyTopicsConfigMap(ctx, pn, obs.sts); err != nil {
		return obs, err
	}
	if err := r.reconcilePDB(ctx, pn); err != nil {
		return obs, err
	}
	if _, err := r.expandVolumes(ctx, pn); err != nil {
		return obs, err
	}
	if err := r.reconcilePodMonitor(ctx, pn); err != nil {
		return obs, err
	}
	return obs, nil
}

// reconcileIdentity makes sure the identity Secret holds a key for every ordinal. The
// Secret has no ownerReference on purpose: it survives deletion of the PandaNetwork, so a
// re-created network (or a reinstalled operator) keeps its peer ids, which edge apps embed
// in their bootstrap lists. Existing keys are never rotated; scale-down keeps keys so
// scaling back up reuses the same peer ids.
func (r *PandaNetworkReconciler) reconcileIdentity(ctx context.Context, pn *pandav1.PandaNetwork) (map[int32]string, error) {
	name := identitySecretName(pn)
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: name}, sec)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return nil, fmt.Errorf("reconcile identity secret %s: %w", name, err)
	}
	if !create {
		if err := checkAdoptable(pn, sec); err != nil {
			return nil, err
		}
	}
	if create {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pn.Namespace, Labels: commonLabels(pn)},
			Type:       corev1.SecretTypeOpaque,
		}
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	changed := false
	ids := map[int32]string{}
	for i := int32(0); i < desiredReplicas(pn); i++ {
		kk, pk := keyFileKey(pn, i), peerIDKey(pn, i)
		seed, ok := sec.Data[kk]
		if !ok {
			s, err := newSeedHex()
			if err != nil {
				return nil, err
			}
			seed = []byte(s + "\n")
			sec.Data[kk] = seed
			changed = true
		}
		id, err := peerIDFromSeedHex(string(seed))
		if err != nil {
			return nil, fmt.Errorf("reconcile identity secret %s: key %s: %w", name, kk, err)
		}
		if string(sec.Data[pk]) != id {
			sec.Data[pk] = []byte(id)
			changed = true
		}
		ids[i] = id
	}
	switch {
	case create:
		if err := r.Create(ctx, sec); err != nil {
			return nil, fmt.Errorf("create identity secret %s: %w", name, err)
		}
	case changed:
		// Update carries resourceVersion: a concurrent writer makes this fail and retry
		// rather than one of two generated keys silently winning.
		if err := r.Update(ctx, sec); err != nil {
			return nil, fmt.Errorf("update identity secret %s: %w", name, err)
		}
	}
	return ids, nil
}

// checkAdoptable refuses a Secret the operator did not create for this network: mounting
// a key or token someone else placed under the expected name would hand a pod an identity
// the operator cannot vouch for. To import keys on purpose, label the Secret
// pandanet.io/network=<network name> and app.kubernetes.io/managed-by=panda-operator.
func checkAdoptable(pn *pandav1.PandaNetwork, sec *corev1.Secret) error {
	if sec.Labels[networkLabel] == pn.Name && sec.Labels["app.kubernetes.io/managed-by"] == "panda-operator" {
		return nil
	}
	return &AdoptionError{Secret: sec.Name}
}

// AdoptionError is an existing Secret the operator refuses to use.
type AdoptionError struct{ Secret string }

func (e *AdoptionError) Error() string {
	return fmt.Sprintf("Secret %s exists but was not created by panda-operator for this network (labels pandanet.io/network and app.kubernetes.io/managed-by missing); refusing to adopt it: delete it, or label it to import its keys on purpose", e.Secret)
}

// reconcileAdminToken creates the owned admin token Secret once; it is never rotated by
// the operator (delete it to rotate, then restart the pods).
func (r *PandaNetworkReconciler) reconcileAdminToken(ctx context.Context, pn *pandav1.PandaNetwork) error {
	name := adminSecretName(pn)
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: name}, sec)
	if err == nil {
		return checkAdoptable(pn, sec)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reconcile admin token secret %s: %w", name, err)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("generate admin token: %w", err)
	}
	sec = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{AdminTokenKey: []byte(hex.EncodeToString(tok))},
	}
	if err := controllerutil.SetControllerReference(pn, sec, r.Scheme); err != nil {
		return fmt.Errorf("reconcile admin token secret %s: %w", name, err)
	}
	if err := r.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create admin token secret %s: %w", name, err)
	}
	return nil
}

// listTopicReplicas returns the TopicReplicas that reference the network.
func listTopicReplicas(ctx context.Context, c client.Reader, namespace, network string) ([]pandav1.TopicReplica, error) {
	var list pandav1.TopicReplicaList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{networkRefIndex: network}); err != nil {
		return nil, fmt.Errorf("list topicreplicas of %s/%s: %w", namespace, network, err)
	}
	return list.Items, nil
}

func (r *PandaNetworkReconciler) applyConfigMap(ctx context.Context, pn *pandav1.PandaNetwork, desired *corev1.ConfigMap) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: desired.Name, Namespace: desired.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, cm, func() error {
		mergeLabels(&cm.ObjectMeta, desired.Labels)
		cm.Data = desired.Data
		return controllerutil.SetControllerReference(pn, cm, r.Scheme)
	})
	return err
}

func mergeLabels(om *metav1.ObjectMeta, want map[string]string) {
	if om.Labels == nil {
		om.Labels = map[string]string{}
	}
	for k, v := range want {
		om.Labels[k] = v
	}
}

func (r *PandaNetworkReconciler) reconcileServices(ctx context.Context, pn *pandav1.PandaNetwork, obs *observed) error {
	if err := r.applyService(ctx, pn, BuildHeadlessService(pn)); err != nil {
		return err
	}
	n := desiredReplicas(pn)
	for i := int32(0); i < n; i++ {
		svc := BuildNodeService(pn, i)
		if err := r.applyService(ctx, pn, svc); err != nil {
			return err
		}
		obs.services[i] = svc
	}
	// Per-node Services of ordinals above replicas go, releasing their LoadBalancers.
	var list corev1.ServiceList
	if err := r.List(ctx, &list, client.InNamespace(pn.Namespace), client.MatchingLabels{networkLabel: pn.Name}); err != nil {
		return fmt.Errorf("list services of %s: %w", pn.Name, err)
	}
	for i := range list.Items {
		svc := &list.Items[i]
		o, ok := svc.Labels[ordinalLabel]
		if !ok || !metav1.IsControlledBy(svc, pn) {
			continue
		}
		if ord, err := strconv.Atoi(o); err == nil && int32(ord) >= n {
			if err := r.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete service %s: %w", svc.Name, err)
			}
		}
	}
	return nil
}

// applyService creates or updates a Service, touching only fields the operator owns and
// keeping allocated values (clusterIP, node ports) so updates are no-ops when nothing changed.
// On return desired holds the live object (including status, e.g. LoadBalancer ingress).
func (r *PandaNetworkReconciler) applyService(ctx context.Context, pn *pandav1.PandaNetwork, desired *corev1.Service) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: desired.Name, Namespace: desired.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, svc, func() error {
		mergeLabels(&svc.ObjectMeta, desired.Labels)
		svc.Annotations = applyManagedAnnotations(svc.Annotations, desired.Annotations)
		if svc.CreationTimestamp.IsZero() {
			svc.Spec.ClusterIP = desired.Spec.ClusterIP
		}
		typeChanged := svc.Spec.Type != desired.Spec.Type
		svc.Spec.Type = desired.Spec.Type
		svc.Spec.Selector = desired.Spec.Selector
		svc.Spec.PublishNotReadyAddresses = desired.Spec.PublishNotReadyAddresses
		ports := make([]corev1.ServicePort, len(desired.Spec.Ports))
		copy(ports, desired.Spec.Ports)
		if desired.Spec.Type == corev1.ServiceTypeNodePort || desired.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for i := range ports {
				for _, old := range svc.Spec.Ports {
					if old.Name == ports[i].Name {
						ports[i].NodePort = old.NodePort
					}
				}
			}
		}
		svc.Spec.Ports = ports
		if desired.Spec.Type == corev1.ServiceTypeClusterIP {
			svc.Spec.ExternalTrafficPolicy = ""
			svc.Spec.LoadBalancerClass = nil
		} else {
			svc.Spec.ExternalTrafficPolicy = desired.Spec.ExternalTrafficPolicy
			if typeChanged || svc.CreationTimestamp.IsZero() {
				// loadBalancerClass is immutable once a LoadBalancer exists.
				svc.Spec.LoadBalancerClass = desired.Spec.LoadBalancerClass
			}
		}
		return controllerutil.SetControllerReference(pn, svc, r.Scheme)
	})
	if err != nil {
		return fmt.Errorf("reconcile service %s: %w", desired.Name, err)
	}
	*desired = *svc
	return nil
}

func (r *PandaNetworkReconciler) observePods(ctx context.Context, pn *pandav1.PandaNetwork, obs *observed) error {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(pn.Namespace), client.MatchingLabels(selectorLabels(pn))); err != nil {
		return fmt.Errorf("list pods of %s: %w", pn.Name, err)
	}
	for i := range pods.Items {
		obs.pods[pods.Items[i].Name] = &pods.Items[i]
	}
	return nil
}

// nodeHost is the address of the Kubernetes node a pod runs on (see NodeHostOf); zero
// when the pod is not placed or the node cannot be read.
func (r *PandaNetworkReconciler) nodeHost(ctx context.Context, pod *corev1.Pod) NodeHost {
	if pod == nil || pod.Spec.NodeName == "" {
		return NodeHost{}
	}
	node := &corev1.Node{}
	if err := r.Get(ctx, types.NamespacedName{Name: pod.Spec.NodeName}, node); err != nil {
		return NodeHost{}
	}
	return NodeHostOf(node)
}

// NodeHostOf is the address under which a NodePort on node is reachable: its ExternalIP,
// else its InternalIP (typed as such: reachable only from networks routed to the
// nodes). A node that is not Ready publishes nothing: its pods' NodePorts do not answer.
func NodeHostOf(node *corev1.Node) NodeHost {
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return NodeHost{}
	}
	for _, want := range []struct {
		node corev1.NodeAddressType
		typ  pandav1.AddressType
	}{{corev1.NodeExternalIP, pandav1.AddressExternalIP}, {corev1.NodeInternalIP, pandav1.AddressInternalIP}} {
		for _, a := range node.Status.Addresses {
			if a.Type == want.node && a.Address != "" {
				return NodeHost{Address: a.Address, Type: want.typ}
			}
		}
	}
	return NodeHost{}
}

// reconcileStatefulSet writes the StatefulSet only when the live object differs from the
// desired one in a field the operator sets (see coveredBy), so a `kubectl set image` or
// `kubectl edit` of the pod template is reverted, while API-server defaults never cause a
// write (and so no 409 storm from racing our own stale cache).
func (r *PandaNetworkReconciler) reconcileStatefulSet(ctx context.Context, pn *pandav1.PandaNetwork) (*appsv1.StatefulSet, bool, error) {
	image, deferred, err := r.imageForRollout(ctx, pn)
	if err != nil {
		return nil, false, err
	}
	desired := BuildStatefulSet(pn, image)
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: desired.Name, Namespace: desired.Namespace}}
	var oldReplicas int32
	rolled := false
	res, err := controllerutil.CreateOrUpdate(ctx, r.Client, sts, func() error {
		mergeLabels(&sts.ObjectMeta, desired.Labels)
		if pn.Spec.Image == "" {
			// Which default image the template carries, for staggered upgrades.
			if sts.Annotations == nil {
				sts.Annotations = map[string]string{}
			}
			sts.Annotations[defaultImageAnnotation] = image
		} else {
			delete(sts.Annotations, defaultImageAnnotation)
		}
		if sts.CreationTimestamp.IsZero() {
			sts.Spec = desired.Spec
			return controllerutil.SetControllerReference(pn, sts, r.Scheme)
		}
		// Only fields the API allows to change; the rest is fixed at creation.
		if sts.Spec.Replicas != nil {
			oldReplicas = *sts.Spec.Replicas
		}
		sts.Spec.Replicas = desired.Spec.Replicas
		if ok, err := coveredBy(desired.Spec.UpdateStrategy, sts.Spec.UpdateStrategy); err != nil {
			return err
		} else if !ok {
			sts.Spec.UpdateStrategy = desired.Spec.UpdateStrategy
		}
		// The rollout pace (see RolloutMinReadySeconds); an int, so equal means no write.
		sts.Spec.MinReadySeconds = desired.Spec.MinReadySeconds
		if ok, err := coveredBy(desired.Spec.PersistentVolumeClaimRetentionPolicy, sts.Spec.PersistentVolumeClaimRetentionPolicy); err != nil {
			return err
		} else if !ok {
			sts.Spec.PersistentVolumeClaimRetentionPolicy = desired.Spec.PersistentVolumeClaimRetentionPolicy
		}
		live := sts.Spec.Template
		same, err := coveredBy(desired.Spec.Template.Spec, live.Spec)
		if err != nil {
			return err
		}
		// Labels and annotations exactly: a key removed from spec.podAnnotations goes.
		// `kubectl rollout restart` (restartedAt) and the restart annotation are kept.
		same = same && equalExcept(desired.Spec.Template.Labels, live.Labels) &&
			equalExcept(desired.Spec.Template.Annotations, live.Annotations, restartedAtKey)
		if !same {
			tmpl := desired.Spec.Template
			if v, ok := live.Annotations[restartedAtKey]; ok {
				if tmpl.Annotations == nil {
					tmpl.Annotations = map[string]string{}
				}
				tmpl.Annotations[restartedAtKey] = v
			}
			sts.Spec.Template = tmpl
			rolled = true
		}
		return controllerutil.SetControllerReference(pn, sts, r.Scheme)
	})
	if err != nil {
		return nil, false, fmt.Errorf("reconcile statefulset %s: %w", desired.Name, err)
	}
	if rolled && pn.Spec.Image == "" {
		r.recordUpgradeStarted(client.ObjectKeyFromObject(pn), sts.Generation)
	}
	switch {
	case res == controllerutil.OperationResultCreated:
		r.event(pn, corev1.EventTypeNormal, "Created", "Create", "created StatefulSet %s with %d replicas", sts.Name, desiredReplicas(pn))
	case res == controllerutil.OperationResultUpdated:
		if oldReplicas != desiredReplicas(pn) {
			r.event(pn, corev1.EventTypeNormal, "Scaled", "Scale", "scaled StatefulSet %s from %d to %d replicas", sts.Name, oldReplicas, desiredReplicas(pn))
		}
		if rolled {
			r.event(pn, corev1.EventTypeNormal, "RollingUpdate", "Update", "pod template of StatefulSet %s changed (image %s): rolling the nodes one at a time",
				sts.Name, image)
		}
	}
	return sts, deferred, nil
}

// imageForRollout is the node image to write. A network on the operator's default image
// whose StatefulSet still runs another image moves to the new default only when no other
// network is mid-rollout (staggered upgrades); until then it keeps its live image and
// deferred is true.
func (r *PandaNetworkReconciler) imageForRollout(ctx context.Context, pn *pandav1.PandaNetwork) (string, bool, error) {
	want := r.image(pn)
	if pn.Spec.Image != "" {
		return want, false, nil
	}
	live := &appsv1.StatefulSet{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: statefulSetName(pn)}, live); err != nil {
		if apierrors.IsNotFound(err) {
			return want, false, nil
		}
		return "", false, fmt.Errorf("get statefulset %s: %w", statefulSetName(pn), err)
	}
	// Only an operator default change is staggered: the live image must be the previous
	// default the operator wrote. Any other difference (a hand edit) is drift, corrected now.
	current := liveNodeImage(live)
	previousDefault := live.Annotations[defaultImageAnnotation]
	if current == "" || current == want || previousDefault == "" || current != previousDefault {
		return want, false, nil
	}
	ok, busy, err := r.mayStartDefaultUpgrade(ctx, client.ObjectKeyFromObject(pn))
	if err != nil {
		return "", false, err
	}
	if ok {
		return want, false, nil
	}
	r.event(pn, corev1.EventTypeNormal, ReasonUpgradeDeferred, "Upgrade",
		"new default node image %s waits until network %s has finished its rollout (staggered upgrade)", want, busy)
	return current, true, nil
}

func (r *PandaNetworkReconciler) reconcilePDB(ctx context.Context, pn *pandav1.PandaNetwork) error {
	desired := BuildPDB(pn)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: desired.Name, Namespace: desired.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, pdb, func() error {
		mergeLabels(&pdb.ObjectMeta, desired.Labels)
		pdb.Spec.MaxUnavailable = desired.Spec.MaxUnavailable
		pdb.Spec.Selector = desired.Spec.Selector
		return controllerutil.SetControllerReference(pn, pdb, r.Scheme)
	})
	if err != nil {
		return fmt.Errorf("reconcile poddisruptionbudget %s: %w", desired.Name, err)
	}
	return nil
}

// monitoringAvailable reports whether the PodMonitor CRD is served. The answer is cached
// for a minute: a miss makes the RESTMapper rediscover the group on every call.
func (r *PandaNetworkReconciler) monitoringAvailable() (bool, error) {
	r.monitorMu.Lock()
	defer r.monitorMu.Unlock()
	recheck := r.MonitoringRecheck
	if recheck <= 0 {
		recheck = time.Minute
	}
	if time.Since(r.monitorChecked) < recheck {
		return r.monitorPresent, nil
	}
	_, err := r.RESTMapper().RESTMapping(podMonitorGVK.GroupKind(), podMonitorGVK.Version)
	switch {
	case err == nil:
		r.monitorPresent = true
	case meta.IsNoMatchError(err):
		r.monitorPresent = false
	default:
		return false, fmt.Errorf("discover %s: %w", podMonitorGVK, err)
	}
	r.monitorChecked = time.Now()
	return r.monitorPresent, nil
}

// reconcilePodMonitor creates a PodMonitor only when prometheus-operator's CRD exists
// and spec.monitoring.enabled is not false, as unstructured so the operator has no
// dependency on prometheus-operator's Go module. Labels are merged: labels others set
// (e.g. a GitOps tool) stay.
func (r *PandaNetworkReconciler) reconcilePodMonitor(ctx context.Context, pn *pandav1.PandaNetwork) error {
	ok, err := r.monitoringAvailable()
	if err != nil || !ok {
		return err
	}
	pm := &unstructured.Unstructured{}
	pm.SetGroupVersionKind(podMonitorGVK)
	pm.SetNamespace(pn.Namespace)
	pm.SetName(pn.Name)
	if en := pn.Spec.Monitoring.Enabled; en != nil && !*en {
		if err := r.Get(ctx, client.ObjectKeyFromObject(pm), pm); err != nil {
			return client.IgnoreNotFound(err)
		}
		if !metav1.IsControlledBy(pm, pn) {
			return nil
		}
		if err := r.Delete(ctx, pm); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete podmonitor %s: %w", pn.Name, err)
		}
		return nil
	}
	_, err = controllerutil.CreateOrUpdate(ctx, r.Client, pm, func() error {
		lbl := pm.GetLabels()
		if lbl == nil {
			lbl = map[string]string{}
		}
		for k, v := range pn.Spec.Monitoring.Labels {
			lbl[k] = v
		}
		for k, v := range commonLabels(pn) {
			lbl[k] = v
		}
		pm.SetLabels(lbl)
		sel := map[string]any{}
		for k, v := range selectorLabels(pn) {
			sel[k] = v
		}
		endpoint := map[string]any{"port": "metrics", "path": "/metrics"}
		if pn.Spec.Monitoring.Interval != "" {
			endpoint["interval"] = pn.Spec.Monitoring.Interval
		}
		if err := unstructured.SetNestedField(pm.Object, map[string]any{
			"selector":            map[string]any{"matchLabels": sel},
			"podMetricsEndpoints": []any{endpoint},
		}, "spec"); err != nil {
			return err
		}
		return controllerutil.SetControllerReference(pn, pm, r.Scheme)
	})
	if err != nil {
		return fmt.Errorf("reconcile podmonitor %s: %w", pn.Name, err)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	if p == nil || !p.DeletionTimestamp.IsZero() {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// BuildNetworkStatus computes the status fields other than conditions.
func BuildNetworkStatus(pn *pandav1.PandaNetwork, obs *observed) pandav1.PandaNetworkStatus {
	st := pandav1.PandaNetworkStatus{
		ObservedGeneration: pn.Generation,
		Selector:           labels.SelectorFromSet(selectorLabels(pn)).String(),
		Conditions:         pn.Status.Conditions,
	}
	if obs == nil {
		return st
	}
	if obs.sts != nil {
		st.Replicas = obs.sts.Status.Replicas
		st.ReadyReplicas = obs.sts.Status.ReadyReplicas
		st.CurrentRevision = obs.sts.Status.CurrentRevision
		st.UpdateRevision = obs.sts.Status.UpdateRevision
	}
	for i := int32(0); i < desiredReplicas(pn); i++ {
		id := obs.peerIDs[i]
		if id == "" {
			continue
		}
		name := nodeName(pn, i)
		public := withPeerTyped(obs.public[i], id)
		cluster := withPeerTyped(clusterAddrs(pn, i), id)
		ns := pandav1.NodeStatus{
			Name: name, Ordinal: i, PeerID: id, Ready: podReady(obs.pods[name]),
			Addresses: append(append([]pandav1.NodeAddress{}, public...), cluster...),
		}
		st.Nodes = append(st.Nodes, ns)
		boot := public
		if exposureType(pn) == pandav1.ExposureNone && len(public) == 0 {
			boot = cluster
		}
		for _, a := range boot {
			st.BootstrapPeers = append(st.BootstrapPeers, a.Address)
			st.BootstrapPeerTypes = append(st.BootstrapPeerTypes, a.Type)
		}
	}
	return st
}

// nodesWithoutBootstrap lists the nodes the status gives an edge no address for yet.
func nodesWithoutBootstrap(pn *pandav1.PandaNetwork, st *pandav1.PandaNetworkStatus) []string {
	have := map[string]bool{}
	for _, n := range st.Nodes {
		for _, a := range n.Addresses {
			if slices.Contains(st.BootstrapPeers, a.Address) {
				have[n.Name] = true
			}
		}
	}
	var missing []string
	for i := int32(0); i < desiredReplicas(pn); i++ {
		if name := nodeName(pn, i); !have[name] {
			missing = append(missing, name)
		}
	}
	return missing
}

func (r *PandaNetworkReconciler) updateStatus(ctx context.Context, pn *pandav1.PandaNetwork, obs *observed, recErr error) error {
	facts := NetworkFacts{Desired: desiredReplicas(pn), ReconcileErr: recErr}
	if obs != nil {
		facts.StatefulSet = obs.sts
		facts.PodProblems = podProblems(obs.pods)
		facts.ScaleDownBlocked = obs.scaleDownBlocked
	}
	st := BuildNetworkStatus(pn, obs)
	if recErr == nil {
		vols, err := r.retainedVolumes(ctx, pn)
		if err != nil {
			return err
		}
		st.RetainedVolumes = vols
		st.RetainedTopics = obs.retainedTopics
	} else {
		st.RetainedVolumes = pn.Status.RetainedVolumes
		st.RetainedTopics = pn.Status.RetainedTopics
	}
	facts.NodesWithoutAddress = nodesWithoutBootstrap(pn, &st)
	st.Conditions = append([]metav1.Condition(nil), pn.Status.Conditions...)
	setConditions(&st.Conditions, NetworkConditions(pn.Generation, facts)...)
	if recErr != nil && obs != nil && obs.sts == nil {
		// Keep what we knew rather than blanking the status on a transient error.
		st.Replicas, st.ReadyReplicas = pn.Status.Replicas, pn.Status.ReadyReplicas
		st.CurrentRevision, st.UpdateRevision = pn.Status.CurrentRevision, pn.Status.UpdateRevision
	}
	if equality.Semantic.DeepEqual(st, pn.Status) {
		return nil
	}
	base := pn.DeepCopy()
	pn.Status = st
	if err := r.Status().Patch(ctx, pn, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status of pandanetwork %s: %w", pn.Name, err)
	}
	return nil
}

// SetupWithManager registers the controller. Topic changes arrive through the
// TopicReplica watch (and, for edits of topicsFrom Secrets, through topicsChanged from the
// TopicReplica controller) and only rewrite the topics Secret.
func (r *PandaNetworkReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		// Annotations too: the pause and restart annotations do not bump the generation.
		For(&pandav1.PandaNetwork{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		// Pods belong to the StatefulSet, not to the network, so Owns cannot see them.
		// Per-node readiness and placement in the status come from pods: without this
		// watch the pod cache can lag the StatefulSet event that triggered the last
		// reconcile and the status would stay stale until the periodic refresh.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToNetwork),
			builder.WithPredicates(podStatusChanged())).
		Watches(&pandav1.TopicReplica{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				tr, ok := o.(*pandav1.TopicReplica)
				if !ok {
					return nil
				}
				return []reconcile.Request{{NamespacedName: types.NamespacedName{
					Namespace: tr.Namespace, Name: tr.Spec.NetworkRef.Name}}}
			}),
			// Status writes of TopicReplicas (every poll) must not rebuild the network;
			// spec changes and deletion (which bumps generation) do.
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.topicsChanged(), &handler.EnqueueRequestForObject{})).
		Named("pandanetwork").
		Complete(r)
}

// podToNetwork maps a node pod to the PandaNetwork it runs for.
func podToNetwork(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[networkLabel]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// podStatusChanged passes pod events that change what the network status reports:
// creation, deletion, readiness, a pod starting or stopping to fail (Degraded) and the
// node a pod is scheduled on.
func podStatusChanged() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldPod, ok1 := e.ObjectOld.(*corev1.Pod)
			newPod, ok2 := e.ObjectNew.(*corev1.Pod)
			if !ok1 || !ok2 {
				return true
			}
			_, oldFailing := podProblem(oldPod.Name, oldPod)
			_, newFailing := podProblem(newPod.Name, newPod)
			return podReady(oldPod) != podReady(newPod) || oldFailing != newFailing ||
				oldPod.Spec.NodeName != newPod.Spec.NodeName ||
				oldPod.DeletionTimestamp.IsZero() != newPod.DeletionTimestamp.IsZero()
		},
	}
}
