package controllers

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// Reasons of PandaNetwork conditions (CamelCase, stable: users match on them). Degraded
// also carries the waiting reason of a failing pod (CrashLoopBackOff, ImagePullBackOff,
// ...) or Unschedulable as its reason.
const (
	ReasonAllNodesReady     = "AllNodesReady"
	ReasonNodesNotReady     = "NodesNotReady"
	ReasonRolloutInProgress = "RolloutInProgress"
	ReasonScaling           = "Scaling"
	ReasonCreating          = "Creating"
	ReasonStable            = "Stable"
	ReasonReconcileError    = "ReconcileError"
	ReasonAsExpected        = "AsExpected"
	ReasonInvalidSpec       = "InvalidSpec"
	ReasonAddressesPending  = "AddressesPending"
	ReasonScaledToZero      = "ScaledToZero"
	ReasonSecretNotAdopted  = "SecretNotAdopted"
)

// NetworkFacts is what the conditions are derived from.
type NetworkFacts struct {
	// Desired is spec.replicas.
	Desired int32
	// StatefulSet as last read; nil when not created yet.
	StatefulSet *appsv1.StatefulSet
	// ReconcileErr is the error of this reconcile, if any (never a write conflict: those
	// are retried without touching the status).
	ReconcileErr error
	// PodProblems are pods that cannot run (see podProblems).
	PodProblems []PodProblem
	// NodesWithoutAddress are the nodes the status gives no bootstrap address for yet.
	NodesWithoutAddress []string
	// ScaleDownBlocked says why a scale-down waits, "" if none does.
	ScaleDownBlocked string
}

// PodProblem is a pod that will not become ready without someone acting.
type PodProblem struct {
	Pod     string
	Reason  string
	Message string
}

// failingWaitingReasons are container waiting reasons that do not clear by themselves.
var failingWaitingReasons = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// podProblems finds pods that crash-loop, cannot pull or start their image, or cannot be
// scheduled, sorted by pod name.
func podProblems(pods map[string]*corev1.Pod) []PodProblem {
	var out []PodProblem
	for name, p := range pods {
		if p == nil || !p.DeletionTimestamp.IsZero() {
			continue
		}
		if pr, ok := podProblem(name, p); ok {
			out = append(out, pr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

func podProblem(name string, p *corev1.Pod) (PodProblem, bool) {
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil && failingWaitingReasons[w.Reason] {
			msg := w.Message
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg = strings.TrimSpace(fmt.Sprintf("%s (last exit code %d, %s)", msg, t.ExitCode, t.Reason))
			}
			return PodProblem{Pod: name, Reason: w.Reason, Message: fmt.Sprintf("container %s: %s", cs.Name, msg)}, true
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return PodProblem{Pod: name, Reason: corev1.PodReasonUnschedulable, Message: c.Message}, true
		}
	}
	return PodProblem{}, false
}

// NetworkConditions derives Ready, Progressing and Degraded.
//
// Ready means an edge can bootstrap from the status: all desired pods ready on the update
// revision and a bootstrap address published for every node. Progressing is True while
// the StatefulSet controller still has work (status stale, revisions differ, counts off).
// Degraded is True when something needs a human: the reconcile failed, or pods
// crash-loop, cannot start their image or cannot be scheduled (reason = the pod's).
func NetworkConditions(generation int64, f NetworkFacts) []metav1.Condition {
	cond := func(t string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation}
	}
	desired := f.Desired
	var ready, progressing, degraded metav1.Condition
	switch sts := f.StatefulSet; {
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
		case allReady && desired == 0:
			ready = cond(pandav1.ConditionReady, metav1.ConditionFalse, ReasonScaledToZero, "0 replicas: no node to bootstrap from")
		case allReady && len(f.NodesWithoutAddress) > 0:
			ready = cond(pandav1.ConditionReady, metav1.ConditionFalse, ReasonAddressesPending,
				fmt.Sprintf("%d/%d nodes ready, no bootstrap address yet for %s (LoadBalancer pending or node not ready)",
					st.ReadyReplicas, desired, strings.Join(f.NodesWithoutAddress, ", ")))
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
		case f.ScaleDownBlocked != "":
			progressing = cond(pandav1.ConditionProgressing, metav1.ConditionTrue, ReasonScaleDownBlocked, f.ScaleDownBlocked)
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
	case errors.As(f.ReconcileErr, new(*AdoptionError)):
		degraded = cond(pandav1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretNotAdopted, f.ReconcileErr.Error())
	case f.ReconcileErr != nil:
		degraded = cond(pandav1.ConditionDegraded, metav1.ConditionTrue, ReasonReconcileError, f.ReconcileErr.Error())
	case len(f.PodProblems) > 0:
		msgs := make([]string, 0, len(f.PodProblems))
		for _, p := range f.PodProblems {
			msgs = append(msgs, fmt.Sprintf("pod %s: %s: %s", p.Pod, p.Reason, p.Message))
		}
		degraded = cond(pandav1.ConditionDegraded, metav1.ConditionTrue, f.PodProblems[0].Reason, strings.Join(msgs, "; "))
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
