package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// ReasonScaleDownBlocked: a scale-down waits until the remaining nodes hold what the
// leaving nodes hold.
const ReasonScaleDownBlocked = "ScaleDownBlocked"

// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=list

// scaleDownHold checks, before ordinals are removed, that the remaining nodes hold every
// topic the leaving nodes hold with at least as many operations (per topic, from the
// nodes' admin APIs: GET /v1/topics). It returns why the scale-down must wait, "" when it
// may go ahead. Scaling to zero is never held (the volumes stay), nor is a leaving node
// that does not answer (its volume stays too; the status lists it).
func (r *PandaNetworkReconciler) scaleDownHold(ctx context.Context, pn *pandav1.PandaNetwork) (int32, string, error) {
	want := desiredReplicas(pn)
	if r.Nodes == nil || want == 0 {
		return want, "", nil
	}
	sts := &appsv1.StatefulSet{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: statefulSetName(pn)}, sts); err != nil {
		if apierrors.IsNotFound(err) {
			return want, "", nil
		}
		return want, "", fmt.Errorf("get statefulset %s: %w", statefulSetName(pn), err)
	}
	live := int32(1)
	if sts.Spec.Replicas != nil {
		live = *sts.Spec.Replicas
	}
	if live <= want {
		return want, "", nil
	}
	token, err := readAdminToken(ctx, r.APIReader, pn)
	if err != nil {
		return live, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ask := func(i int32) ([]NodeTopicStatus, error) {
		return r.Nodes.Topics(ctx, NodeEndpoint{Namespace: pn.Namespace, Network: pn.Name, Pod: nodeName(pn, i), Ordinal: i, Token: token})
	}
	remaining := map[string]int64{}
	for i := int32(0); i < want; i++ {
		topics, err := ask(i)
		if err != nil {
			continue // unknown: the leaving node's data must then be on another remaining node
		}
		for _, t := range topics {
			id := strings.ToLower(t.Topic)
			remaining[id] = max(remaining[id], t.Operations)
		}
	}
	var missing []string
	for i := want; i < live; i++ {
		topics, err := ask(i)
		if err != nil {
			continue
		}
		for _, t := range topics {
			if have := remaining[strings.ToLower(t.Topic)]; t.Operations > have {
				missing = append(missing, fmt.Sprintf("%s holds %d operations of topic %s, the remaining nodes at most %d",
					nodeName(pn, i), t.Operations, t.Topic, have))
			}
		}
	}
	if len(missing) == 0 {
		return want, "", nil
	}
	sort.Strings(missing)
	return live, fmt.Sprintf("scale-down from %d to %d held until the remaining nodes have synced: %s",
		live, want, strings.Join(missing, "; ")), nil
}

// readAdminToken reads the nodes' admin token ("" when the Secret does not exist yet).
func readAdminToken(ctx context.Context, c client.Reader, pn *pandav1.PandaNetwork) (string, error) {
	sec := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: adminSecretName(pn)}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("get admin token: %w", err)
	}
	return strings.TrimSpace(string(sec.Data[AdminTokenKey])), nil
}

// retainedVolumes lists the data PVCs of ordinals at or above spec.replicas: kept on
// scale-down (and reused on scale-up), deleted only by the user.
func (r *PandaNetworkReconciler) retainedVolumes(ctx context.Context, pn *pandav1.PandaNetwork) ([]string, error) {
	var list corev1.PersistentVolumeClaimList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(pn.Namespace), client.MatchingLabels(selectorLabels(pn))); err != nil {
		return nil, fmt.Errorf("list volumes of %s: %w", pn.Name, err)
	}
	var out []string
	prefix := dataVolume + "-" + statefulSetName(pn) + "-"
	for _, pvc := range list.Items {
		var ord int32
		if _, err := fmt.Sscanf(strings.TrimPrefix(pvc.Name, prefix), "%d", &ord); err != nil || !strings.HasPrefix(pvc.Name, prefix) {
			continue
		}
		if ord >= desiredReplicas(pn) {
			out = append(out, pvc.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=patch

// ReasonVolumeExpansionFailed: a PVC could not be expanded to spec.storage.size.
const ReasonVolumeExpansionFailed = "VolumeExpansionFailed"

// expandVolumes raises the storage request of every data PVC of the network that is
// smaller than spec.storage.size (the StatefulSet's volumeClaimTemplates cannot change,
// so the PVCs are patched; the CSI driver and kubelet grow the volume). A refusal (the
// StorageClass does not allow expansion) is reported as a Warning event, per PVC.
func (r *PandaNetworkReconciler) expandVolumes(ctx context.Context, pn *pandav1.PandaNetwork) (int, error) {
	if pn.Spec.Storage.Size == nil {
		return 0, nil
	}
	want := *pn.Spec.Storage.Size
	var list corev1.PersistentVolumeClaimList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(pn.Namespace), client.MatchingLabels(selectorLabels(pn))); err != nil {
		return 0, fmt.Errorf("list volumes of %s: %w", pn.Name, err)
	}
	prefix := dataVolume + "-" + statefulSetName(pn) + "-"
	expanded := 0
	for i := range list.Items {
		pvc := &list.Items[i]
		if !strings.HasPrefix(pvc.Name, prefix) {
			continue
		}
		cur := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if cur.Cmp(want) >= 0 {
			continue // same size in other units (1Gi vs 1024Mi) is no change
		}
		base := pvc.DeepCopy()
		if pvc.Spec.Resources.Requests == nil {
			pvc.Spec.Resources.Requests = corev1.ResourceList{}
		}
		pvc.Spec.Resources.Requests[corev1.ResourceStorage] = want
		if err := r.Patch(ctx, pvc, client.MergeFrom(base)); err != nil {
			r.event(pn, corev1.EventTypeWarning, ReasonVolumeExpansionFailed, "Expand",
				"cannot expand %s from %s to %s: %v", pvc.Name, cur.String(), want.String(), err)
			continue
		}
		expanded++
		r.event(pn, corev1.EventTypeNormal, "VolumeExpanded", "Expand", "expanding %s from %s to %s", pvc.Name, cur.String(), want.String())
	}
	return expanded, nil
}
