package controllers

import (
	"context"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Staggered upgrades: when the operator's default node image changes (an operator
// upgrade), the networks that use it (no spec.image) roll one at a time, not all at once.
// A network may start rolling to the new default only while no other network's
// StatefulSet is mid-rollout. A rollout that never completes (the new image crash-loops)
// therefore stops the new default at the first network, like a canary.

// defaultImageAnnotation on a StatefulSet records the operator default image its
// template was written with (only for networks without spec.image).
const defaultImageAnnotation = "pandanet.io/default-image"

// upgradeGate remembers rollouts this operator started whose start the cache may not
// show yet (the StatefulSet generation it wrote).
type upgradeGate struct {
	mu      sync.Mutex
	started map[types.NamespacedName]int64
}

// rolloutUnsettled reports whether a StatefulSet is mid-rollout: its controller has not
// seen the latest spec, or not every pod is on the update revision yet.
func rolloutUnsettled(sts *appsv1.StatefulSet) bool {
	st := sts.Status
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	return st.ObservedGeneration < sts.Generation || st.CurrentRevision != st.UpdateRevision || st.UpdatedReplicas < replicas
}

// mayStartDefaultUpgrade reports whether the network self may roll to a new default
// image now, and if not, which network is rolling.
func (r *PandaNetworkReconciler) mayStartDefaultUpgrade(ctx context.Context, self types.NamespacedName) (bool, string, error) {
	var list appsv1.StatefulSetList
	if err := r.List(ctx, &list, client.HasLabels{networkLabel}); err != nil {
		return false, "", fmt.Errorf("list statefulsets for a staggered upgrade: %w", err)
	}
	r.gate.mu.Lock()
	defer r.gate.mu.Unlock()
	if r.gate.started == nil {
		r.gate.started = map[types.NamespacedName]int64{}
	}
	seen := map[types.NamespacedName]bool{}
	for i := range list.Items {
		sts := &list.Items[i]
		key := types.NamespacedName{Namespace: sts.Namespace, Name: sts.Labels[networkLabel]}
		seen[key] = true
		if key == self {
			continue
		}
		gen, started := r.gate.started[key]
		if rolloutUnsettled(sts) || (started && sts.Generation < gen) {
			return false, key.String(), nil
		}
		delete(r.gate.started, key)
	}
	for key := range r.gate.started {
		if !seen[key] && key != self {
			delete(r.gate.started, key) // network gone
		}
	}
	return true, "", nil
}

// recordUpgradeStarted notes the StatefulSet generation that starts a network's rollout.
func (r *PandaNetworkReconciler) recordUpgradeStarted(self types.NamespacedName, generation int64) {
	r.gate.mu.Lock()
	defer r.gate.mu.Unlock()
	if r.gate.started == nil {
		r.gate.started = map[types.NamespacedName]int64{}
	}
	r.gate.started[self] = generation
}

// liveNodeImage is the node container's image in a StatefulSet, "" if absent.
func liveNodeImage(sts *appsv1.StatefulSet) string {
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == nodeContainer {
			return c.Image
		}
	}
	return ""
}

// ReasonUpgradeDeferred: the network waits for another network's rollout before moving
// to the operator's new default image.
const ReasonUpgradeDeferred = "UpgradeDeferred"
