package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// TopicCleanupFinalizer holds back deletion of a reclaimPolicy=Delete TopicReplica until
// its topics are gone from the network's topics file, so `kubectl delete --wait` returning
// means "unsubscription written". Retain replicas get no finalizer.
const TopicCleanupFinalizer = "pandanet.io/topic-cleanup"

// TopicReplicaReconciler validates TopicReplicas and reports which nodes hold their topics.
// The topics themselves reach the nodes through the PandaNetwork controller, which watches
// TopicReplicas and rewrites the network's topics Secret.
type TopicReplicaReconciler struct {
	client.Client
	// APIReader reads the admin token Secret uncached.
	APIReader client.Reader
	// Nodes reads node admin APIs.
	Nodes NodeStatusClient
	// PollInterval between node status polls (default 30s).
	PollInterval time.Duration
	// MaxConcurrentReconciles of this controller (default 4).
	MaxConcurrentReconciles int
	// Recorder records the QuotaNearlyFull event; nil records none.
	Recorder recorder.EventRecorder

	// TopicsChanged is where the controller tells the PandaNetwork controller that a
	// topicsFrom Secret's content changed (nil: nobody listens).
	TopicsChanged chan<- event.GenericEvent

	pollerOnce sync.Once
	shared     *sharedPoller
	// sourceSeen maps a TopicReplica to a digest of what its topicsFrom Secret gave at the
	// last reconcile.
	sourceSeen sync.Map
}

// poller is the one node poller all TopicReplicas share: answers at most half a poll
// period old are reused, so a node sees about two listings per period however many
// TopicReplicas its network has.
func (r *TopicReplicaReconciler) poller() *sharedPoller {
	r.pollerOnce.Do(func() { r.shared = newSharedPoller(r.Nodes, r.pollInterval()/2) })
	return r.shared
}

// +kubebuilder:rbac:groups=pandanet.io,resources=topicreplicas,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=pandanet.io,resources=topicreplicas/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=pandanet.io,resources=topicreplicas/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *TopicReplicaReconciler) pollInterval() time.Duration {
	if r.PollInterval <= 0 {
		return 30 * time.Second
	}
	return r.PollInterval
}

// Reconcile implements reconcile.Reconciler.
func (r *TopicReplicaReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	tr := &pandav1.TopicReplica{}
	if err := r.Get(ctx, req.NamespacedName, tr); err != nil {
		r.sourceSeen.Delete(req.NamespacedName)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	pn := &pandav1.PandaNetwork{}
	err := r.Get(ctx, types.NamespacedName{Namespace: tr.Namespace, Name: tr.Spec.NetworkRef.Name}, pn)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("get pandanetwork %s: %w", tr.Spec.NetworkRef.Name, err)
	}
	networkFound := err == nil && pn.DeletionTimestamp.IsZero()

	if !tr.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, tr, pn, networkFound)
	}
	wantFinalizer := tr.Spec.ReclaimPolicy == pandav1.ReclaimDelete
	if wantFinalizer != controllerutil.ContainsFinalizer(tr, TopicCleanupFinalizer) {
		if wantFinalizer {
			controllerutil.AddFinalizer(tr, TopicCleanupFinalizer)
		} else {
			controllerutil.RemoveFinalizer(tr, TopicCleanupFinalizer)
		}
		if err := r.Update(ctx, tr); err != nil {
			return ctrl.Result{}, fmt.Errorf("update finalizers of topicreplica %s: %w", tr.Name, err)
		}
	}

	rr, err := r.resolve(ctx, tr, pn, networkFound)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := pandav1.TopicReplicaStatus{ObservedGeneration: tr.Generation}
	st.Conditions = append([]metav1.Condition(nil), tr.Status.Conditions...)
	if !networkFound {
		setConditions(&st.Conditions, metav1.Condition{
			Type: pandav1.ConditionReady, Status: metav1.ConditionFalse, Reason: pandav1.ReasonNetworkNotFound,
			Message: fmt.Sprintf("PandaNetwork %q not found in namespace %s", tr.Spec.NetworkRef.Name, tr.Namespace), ObservedGeneration: tr.Generation,
		})
	} else {
		reports, errs := r.pollNodes(ctx, pn)
		st.Topics = buildTopicStatuses(tr, rr.Topics, reports)
		ready := TopicReadyCondition(tr.Generation, displayNames(tr, rr.Topics), desiredReplicas(pn), st.Topics, errs)
		if se := rr.SourceErr; se != nil {
			ready = metav1.Condition{Type: pandav1.ConditionReady, Status: metav1.ConditionFalse, Reason: se.Reason,
				ObservedGeneration: tr.Generation,
				Message:            fmt.Sprintf("%s; the nodes keep the %d topics last read from it", se.Message, len(rr.fromSecret))}
			if old := meta.FindStatusCondition(tr.Status.Conditions, pandav1.ConditionReady); (old == nil || old.Reason != se.Reason) && r.Recorder != nil {
				r.Recorder.Eventf(tr, nil, corev1.EventTypeWarning, se.Reason, "ReadTopics", "%s", ready.Message)
			}
		}
		setConditions(&st.Conditions, ready)
		quota := quotaCondition(tr, rr.Topics, reports)
		was := meta.IsStatusConditionTrue(tr.Status.Conditions, pandav1.ConditionQuotaNearlyFull)
		if quota.Status == metav1.ConditionTrue && !was && r.Recorder != nil {
			r.Recorder.Eventf(tr, nil, corev1.EventTypeWarning, pandav1.ConditionQuotaNearlyFull, "QuotaCheck", "%s", quota.Message)
		}
		setConditions(&st.Conditions, quota)
	}
	if !equality.Semantic.DeepEqual(st, tr.Status) {
		base := tr.DeepCopy()
		tr.Status = st
		if err := r.Status().Patch(ctx, tr, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, fmt.Errorf("update status of topicreplica %s: %w", tr.Name, err)
		}
	}
	return ctrl.Result{RequeueAfter: r.pollInterval()}, nil
}

// finalize releases a terminating Delete-policy replica once the network's topics file no
// longer lists its topics (or the network is gone, so there is nothing to unsubscribe).
func (r *TopicReplicaReconciler) finalize(ctx context.Context, tr *pandav1.TopicReplica, pn *pandav1.PandaNetwork, networkFound bool) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(tr, TopicCleanupFinalizer) {
		return ctrl.Result{}, nil
	}
	if networkFound {
		done, err := r.topicsFileCaughtUp(ctx, pn)
		if err != nil {
			return ctrl.Result{}, err
		}
		if !done {
			// The PandaNetwork controller rewrites the file on this deletion event.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
	}
	controllerutil.RemoveFinalizer(tr, TopicCleanupFinalizer)
	if err := r.Update(ctx, tr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("remove finalizer of topicreplica %s: %w", tr.Name, err))
	}
	return ctrl.Result{}, nil
}

// topicsFileCaughtUp reports whether the topics Secret equals what MergeResolved yields
// for the current replicas (the terminating one no longer contributes), with the topicsFrom
// topics the network controller last read (the from.<name> keys).
func (r *TopicReplicaReconciler) topicsFileCaughtUp(ctx context.Context, pn *pandav1.PandaNetwork) (bool, error) {
	cur := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: topicsSecretName(pn)}, cur); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("get secret %s: %w", topicsSecretName(pn), err)
	}
	kept := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: retainedSecretName(pn)}, kept); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("get secret %s: %w", retainedSecretName(pn), err)
	}
	trs, err := listTopicReplicas(ctx, r.Client, pn.Namespace, pn.Name)
	if err != nil {
		return false, err
	}
	rs := make([]ResolvedReplica, 0, len(trs))
	for i := range trs {
		rr := ResolvedReplica{Replica: &trs[i], Topics: specTopics(&trs[i])}
		if last, ok := cur.Data[fromKey(trs[i].Name)]; ok && trs[i].Spec.TopicsFrom != nil {
			from, _ := ParseSecretTopics(string(last))
			rr.Topics = append(rr.Topics, from...)
		}
		rs = append(rs, rr)
	}
	want := MergeResolved(rs, ParseTopicsFile(string(kept.Data[RetainedKey])), ParseTopicsFile(string(kept.Data[RetainedSecretKey])))
	return slices.Equal(want.Lines, ParseTopicsFile(string(cur.Data[TopicsKey]))), nil
}

// resolve reads the replica's topics. When its topicsFrom Secret cannot be used, the topics
// last read from it (kept by the network controller in the topics Secret) stand in. A change
// of what the Secret gives wakes the PandaNetwork controller, which rewrites the file.
func (r *TopicReplicaReconciler) resolve(ctx context.Context, tr *pandav1.TopicReplica, pn *pandav1.PandaNetwork, networkFound bool) (ResolvedReplica, error) {
	rr, err := resolveReplica(ctx, r.APIReader, tr, nil)
	if err != nil {
		return rr, err
	}
	key := client.ObjectKeyFromObject(tr)
	if tr.Spec.TopicsFrom == nil {
		r.sourceSeen.Delete(key)
		return rr, nil
	}
	digest := string(renderSecretTopics(rr.fromSecret))
	if rr.SourceErr != nil {
		digest = "error: " + rr.SourceErr.Reason
		if networkFound {
			sec := &corev1.Secret{}
			err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: topicsSecretName(pn)}, sec)
			if client.IgnoreNotFound(err) != nil {
				return rr, fmt.Errorf("get secret %s: %w", topicsSecretName(pn), err)
			}
			if last, ok := sec.Data[fromKey(tr.Name)]; ok {
				rr.fromSecret, _ = ParseSecretTopics(string(last))
				rr.Topics = append(rr.Topics, rr.fromSecret...)
			}
		}
	}
	if prev, ok := r.sourceSeen.Swap(key, digest); (!ok || prev.(string) != digest) && r.TopicsChanged != nil && networkFound {
		ev := event.GenericEvent{Object: &pandav1.PandaNetwork{ObjectMeta: metav1.ObjectMeta{Namespace: tr.Namespace, Name: tr.Spec.NetworkRef.Name}}}
		select {
		case r.TopicsChanged <- ev:
		case <-ctx.Done():
			return rr, ctx.Err()
		}
	}
	return rr, nil
}

func displayNames(tr *pandav1.TopicReplica, topics []ReplicaTopic) []string {
	out := make([]string, 0, len(topics))
	for _, t := range topics {
		name, _ := t.Display(tr)
		out = append(out, name)
	}
	return out
}

type nodeReport struct {
	pod    string
	topics []NodeTopicStatus
}

// pollNodes asks every ordinal's admin API for its topics, a few at a time with a
// deadline, so one dead node cannot stall the worker.
func (r *TopicReplicaReconciler) pollNodes(ctx context.Context, pn *pandav1.PandaNetwork) ([]nodeReport, []error) {
	token := ""
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: adminSecretName(pn)}, sec); err == nil {
		token = strings.TrimSpace(string(sec.Data[AdminTokenKey]))
	} else if !apierrors.IsNotFound(err) {
		return nil, []error{fmt.Errorf("get admin token: %w", err)}
	}
	n := desiredReplicas(pn)
	reports := make([]nodeReport, n)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := int32(0); i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int32) {
			defer wg.Done()
			defer func() { <-sem }()
			ep := NodeEndpoint{Namespace: pn.Namespace, Network: pn.Name, Pod: nodeName(pn, i), Ordinal: i, Token: token}
			topics, err := r.poller().Topics(ctx, ep)
			reports[i] = nodeReport{pod: ep.Pod, topics: topics}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	r.poller().forgetOlderThan(10 * r.pollInterval())
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		logf.FromContext(ctx).V(1).Info("node status poll failed", "errors", len(out), "first", out[0].Error())
	}
	return reports, out
}

// BuildTopicStatuses maps node reports (hex ids) onto the spec's topics (as written), with
// how far each node is behind the others (TopicNodeStatus.Behind).
func BuildTopicStatuses(topics []string, reports []nodeReport) []pandav1.TopicStatus {
	ts := make([]ReplicaTopic, 0, len(topics))
	for _, t := range topics {
		ts = append(ts, ReplicaTopic{Name: t, ID: canonicalID(t)})
	}
	return buildTopicStatuses(&pandav1.TopicReplica{}, ts, reports)
}

// buildTopicStatuses maps node reports onto the replica's topics; a topic from topicsFrom
// is shown by its Secret and fingerprint, never its id.
func buildTopicStatuses(tr *pandav1.TopicReplica, topics []ReplicaTopic, reports []nodeReport) []pandav1.TopicStatus {
	// Each node's listing indexed once, so 1,000 topics cost 1,000 lookups per node rather
	// than 1,000 scans of 1,000 entries.
	byID := make([]map[string]*NodeTopicStatus, len(reports))
	for i, rep := range reports {
		byID[i] = make(map[string]*NodeTopicStatus, len(rep.topics))
		for j := range rep.topics {
			byID[i][strings.ToLower(rep.topics[j].Topic)] = &rep.topics[j]
		}
	}
	out := make([]pandav1.TopicStatus, 0, len(topics))
	for _, t := range topics {
		id := t.ID
		name, shown := t.Display(tr)
		ts := pandav1.TopicStatus{Topic: name, ID: shown}
		var held []*NodeTopicStatus
		for i, rep := range reports {
			nt := byID[i][strings.ToLower(id)]
			if nt == nil {
				continue
			}
			ns := pandav1.TopicNodeStatus{Node: rep.pod, Operations: nt.Operations}
			if p := nt.Policy; p != nil {
				ns.Bytes = p.Usage.Bytes
				for reason, n := range p.Refused {
					if n > 0 {
						if ns.Refused == nil {
							ns.Refused = map[string]int64{}
						}
						ns.Refused[reason] = n
					}
				}
			}
			ts.Nodes = append(ts.Nodes, ns)
			held = append(held, nt)
		}
		for i, b := range behind(held) {
			ts.Nodes[i].Behind = b
		}
		out = append(out, ts)
	}
	return out
}

// behind returns, per node, the operations it lacks: for every author log any node holds,
// the highest height reported minus the node's own (a log it lacks counts height + 1).
// Nodes that report no logs (an older node) are compared by operation count instead.
func behind(nodes []*NodeTopicStatus) []int64 {
	out := make([]int64, len(nodes))
	withLogs := false
	var maxOps int64
	for _, n := range nodes {
		withLogs = withLogs || n.Logs != nil
		maxOps = max(maxOps, n.Operations)
	}
	if !withLogs {
		for i, n := range nodes {
			out[i] = maxOps - n.Operations
		}
		return out
	}
	top := map[string]uint64{}
	for _, n := range nodes {
		for _, l := range n.Logs {
			a := strings.ToLower(l.Author)
			if h, ok := top[a]; !ok || l.Height > h {
				top[a] = l.Height
			}
		}
	}
	for i, n := range nodes {
		own := make(map[string]uint64, len(n.Logs))
		for _, l := range n.Logs {
			own[strings.ToLower(l.Author)] = l.Height
		}
		for a, h := range top {
			if mine, ok := own[a]; ok {
				out[i] += int64(h - mine)
			} else {
				out[i] += int64(h + 1)
			}
		}
	}
	return out
}

// ReasonNoNodes: the TopicReplica's network is scaled to zero.
const ReasonNoNodes = pandav1.ReasonNoNodes

// TopicReadyCondition is True when every node (at least one) holds every topic in sync: none
// lacks more than TopicSyncLagBound operations of the most complete node.
func TopicReadyCondition(generation int64, topics []string, replicas int32, statuses []pandav1.TopicStatus, errs []error) metav1.Condition {
	complete, lagging := 0, 0
	var worst pandav1.TopicNodeStatus
	worstTopic := ""
	for _, ts := range statuses {
		if int32(len(ts.Nodes)) < replicas {
			continue
		}
		synced := true
		for _, n := range ts.Nodes {
			if n.Behind > pandav1.TopicSyncLagBound {
				synced = false
				if n.Behind > worst.Behind {
					worst, worstTopic = n, ts.Topic
				}
			}
		}
		if synced {
			complete++
		} else {
			lagging++
		}
	}
	c := metav1.Condition{Type: pandav1.ConditionReady, ObservedGeneration: generation}
	if replicas == 0 {
		// No node holds anything: "held by all 0 nodes" is vacuous, not synced.
		c.Status, c.Reason = metav1.ConditionFalse, ReasonNoNodes
		c.Message = "the network has 0 replicas: no node holds the topics"
		return c
	}
	if complete == len(topics) && len(errs) == 0 {
		c.Status, c.Reason = metav1.ConditionTrue, pandav1.ReasonAllNodesSynced
		c.Message = fmt.Sprintf("%d topics held in sync by all %d nodes", len(topics), replicas)
		return c
	}
	c.Status, c.Reason = metav1.ConditionFalse, pandav1.ReasonProgressing
	c.Message = fmt.Sprintf("%d/%d topics held in sync by all %d nodes", complete, len(topics), replicas)
	if lagging > 0 {
		c.Message += fmt.Sprintf("; %d topics held by all nodes but not in sync (most behind: %s lacks %d operations of %s, bound %d)",
			lagging, worst.Node, worst.Behind, worstTopic, pandav1.TopicSyncLagBound)
	}
	if len(errs) > 0 {
		c.Message += fmt.Sprintf("; %d nodes unreachable (first: %v)", len(errs), errs[0])
	}
	return c
}

// SetupWithManager registers the controller; a PandaNetwork appearing or changing
// re-evaluates the TopicReplicas that reference it (NetworkNotFound clears at once).
func (r *TopicReplicaReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = 4
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&pandav1.TopicReplica{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&pandav1.PandaNetwork{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				trs, err := listTopicReplicas(ctx, mgr.GetClient(), o.GetNamespace(), o.GetName())
				if err != nil {
					return nil
				}
				reqs := make([]reconcile.Request, 0, len(trs))
				for _, tr := range trs {
					reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&tr)})
				}
				return reqs
			}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Named("topicreplica").
		Complete(r)
}

// quotaWarnPercent is the share of a quota at which QuotaNearlyFull turns True.
const quotaWarnPercent = 90

// QuotaCondition is True while some node stores at least 90% of one of the replica's quotas
// (per topic, or for some author) for one of its topics; the message names the first ones.
func QuotaCondition(tr *pandav1.TopicReplica, reports []nodeReport) metav1.Condition {
	return quotaCondition(tr, specTopics(tr), reports)
}

func quotaCondition(tr *pandav1.TopicReplica, topics []ReplicaTopic, reports []nodeReport) metav1.Condition {
	c := metav1.Condition{Type: pandav1.ConditionQuotaNearlyFull, ObservedGeneration: tr.Generation,
		Status: metav1.ConditionFalse, Reason: pandav1.ReasonQuotaOK, Message: "every node is below 90% of every quota"}
	q := tr.Spec.Quota
	if q == nil {
		c.Message = "no quota"
		return c
	}
	ids := map[string]string{}
	for _, t := range topics {
		name, shown := t.Display(tr)
		if t.Secret {
			name = name + " " + shown
		}
		ids[t.ID] = name
	}
	var full []string
	check := func(pod, topic, who string, ops, bytes int64, l *pandav1.TopicLimit) {
		if l == nil {
			return
		}
		if l.Operations != nil && ops*100 >= *l.Operations*quotaWarnPercent {
			full = append(full, fmt.Sprintf("%s: %s %s stores %d of %d operations", pod, topic, who, ops, *l.Operations))
		}
		if l.Bytes != nil && bytes*100 >= l.Bytes.Value()*quotaWarnPercent {
			full = append(full, fmt.Sprintf("%s: %s %s stores %d of %d bytes", pod, topic, who, bytes, l.Bytes.Value()))
		}
	}
	for _, rep := range reports {
		for _, nt := range rep.topics {
			name, ok := ids[strings.ToLower(nt.Topic)]
			if !ok || nt.Policy == nil {
				continue
			}
			check(rep.pod, name, "(topic)", nt.Policy.Usage.Ops, nt.Policy.Usage.Bytes, q.PerTopic)
			for _, a := range nt.Policy.Authors {
				check(rep.pod, name, "author "+a.Author, a.Ops, a.Bytes, q.PerAuthor)
			}
		}
	}
	if len(full) == 0 {
		return c
	}
	sort.Strings(full)
	c.Status, c.Reason = metav1.ConditionTrue, pandav1.ReasonQuotaNearlyFull
	if len(full) > 5 {
		full = append(full[:5], fmt.Sprintf("and %d more", len(full)-5))
	}
	c.Message = strings.Join(full, "; ")
	return c
}
