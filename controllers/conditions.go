package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// Reasons of PandaNetwork conditions (CamelCase, stable: users match on them).
const (
	ReasonAllNodesReady     = "AllNodesReady"
	ReasonNodesNotReady     = "NodesNotReady"
	ReasonRolloutInProgress = "RolloutInProgress"
	ReasonScaling           = "Scaling"
	ReasonCreating          = "Creating"
	ReasonStable            = "Stable"
	ReasonReconcileError    = "ReconcileError"
	ReasonAsExpected        = "AsExpected"
)

// NetworkConditions derives Ready, Progressing and Degraded from the StatefulSet.
// sts may be nil (not created yet); reconcileErr is the error of this reconcile, if any.
// Ready needs all desired pods ready on the update revision; Progressing is True while
// the StatefulSet controller still has work (status stale, revisions differ, counts off);
// Degraded is True when the reconcile failed or pods are unready with no rollout running.
func NetworkConditions(generation int64, desired int32, sts *appsv1.StatefulSet, reconcileErr error) []metav1.Condition {
	cond := func(t string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation}
	}
	var ready, progressing, degraded metav1.Condition
	switch {
	case sts == nil:
		ready = cond(pandav1.ConditionReady, metav1.ConditionFalse, ReasonCreating, "StatefulSet not created yet")
		progressing = cond(pandav1.ConditionProgressing, metav1.ConditionTrue, ReasonCreating, "creating StatefulSet")
	default:
		st := sts.Status
		stale := st.ObservedGeneration < sts.Generation
		rolling := st.CurrentRevision != st.UpdateRevision
		scaling := st.Replicas != desired
		allReady := st.ReadyReplicas == desired && !rolling && !stale && !scaling
		switch {
		case allReady:
			ready = cond(pandav1.ConditionReady, metav1.ConditionTrue, ReasonAllNodesReady,
				fmt.Sprintf("%d/%d nodes ready", st.ReadyReplicas, desired))
		case rolling:
			ready = cond(pandav1.ConditionReady, metav1.ConditionFalse, ReasonRolloutInProgress,
				fmt.Sprintf("%d/%d nodes updated to revision %s", st.UpdatedReplicas, desired, st.UpdateRevision))
		default:
			ready = cond(pandav1.ConditionReady, metav1.ConditionFalse, ReasonNodesNotReady,
				fmt.Sprintf("%d/%d nodes ready", st.ReadyReplicas, desired))
		}
		switch {
		case stale:
			progressing = cond(pandav1.ConditionProgressing, metav1.ConditionTrue, ReasonRolloutInProgress, "StatefulSet controller has not observed the latest spec")
		case rolling:
			progressing = cond(pandav1.ConditionProgressing, metav1.ConditionTrue, ReasonRolloutInProgress,
				fmt.Sprintf("rolling from %s to %s", st.CurrentRevision, st.UpdateRevision))
		case scaling:
			progressing = cond(pandav1.ConditionProgressing, metav1.ConditionTrue, ReasonScaling,
				fmt.Sprintf("scaling from %d to %d", st.Replicas, desired))
		case st.ReadyReplicas != desired:
			progressing = cond(pandav1.ConditionProgressing, metav1.ConditionTrue, ReasonNodesNotReady,
				fmt.Sprintf("waiting for %d/%d nodes to become ready", desired-st.ReadyReplicas, desired))
		default:
			progressing = cond(pandav1.ConditionProgressing, metav1.ConditionFalse, ReasonStable, "no rollout or scale in progress")
		}
	}
	switch {
	case reconcileErr != nil:
		degraded = cond(pandav1.ConditionDegraded, metav1.ConditionTrue, ReasonReconcileError, reconcileErr.Error())
	default:
		degraded = cond(pandav1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
	}
	return []metav1.Condition{ready, progressing, degraded}
}

// setConditions applies conditions with meta.SetStatusCondition, which keeps
// lastTransitionTime when only the message or observedGeneration changes.
func setConditions(dst *[]metav1.Condition, conds ...metav1.Condition) {
	for _, c := range conds {
		meta.SetStatusCondition(dst, c)
	}
}
