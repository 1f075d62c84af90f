package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// TestSafeScaleDown: a scale-down that would remove the only node holding all of a
// topic's operations is held (Progressing=True ScaleDownBlocked, Warning event, the
// StatefulSet keeps its size) until the remaining nodes have caught up; afterwards the
// status lists the data volume of the removed ordinal.
func TestSafeScaleDown(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "shrink")
	pn.Spec.Replicas = ptr.To(int32(2))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "shrink", nil)
	topic := strings.Repeat("ab", 32)
	fakeNodes.set(ns, "shrink-0", []NodeTopicStatus{{Topic: topic, Operations: 5}})
	fakeNodes.set(ns, "shrink-1", []NodeTopicStatus{{Topic: topic, Operations: 9}})
	// The PVC the StatefulSet controller would have made for ordinal 1.
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data-shrink-1", Namespace: ns, Labels: selectorLabels(pn)},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	if err := k8sClient.Create(ctx, pvc); err != nil {
		t.Fatal(err)
	}

	updateNetwork(t, ns, "shrink", func(p *pandav1.PandaNetwork) { p.Spec.Replicas = ptr.To(int32(1)) })
	waitCondition(t, ns, "shrink", pandav1.ConditionProgressing, func(c *metav1.Condition) error {
		if c.Reason != ReasonScaleDownBlocked || !strings.Contains(c.Message, "shrink-1 holds 9 operations") {
			return fmt.Errorf("progressing = %+v", c)
		}
		return nil
	})
	waitEvent(t, ns, "shrink", ReasonScaleDownBlocked)
	if r := *waitStatefulSet(t, ns, "shrink", nil).Spec.Replicas; r != 2 {
		t.Fatalf("held scale-down changed the StatefulSet to %d replicas", r)
	}

	fakeNodes.set(ns, "shrink-0", []NodeTopicStatus{{Topic: strings.ToUpper(topic), Operations: 9}})
	// Any change makes the operator look again (it also rechecks on its own).
	updateNetwork(t, ns, "shrink", func(p *pandav1.PandaNetwork) { p.Spec.PodAnnotations = map[string]string{"poke": "1"} })
	waitStatefulSet(t, ns, "shrink", func(s *appsv1.StatefulSet) error {
		if *s.Spec.Replicas != 1 {
			return fmt.Errorf("replicas %d", *s.Spec.Replicas)
		}
		return nil
	})
	eventually(t, "retained volume in status", func() error {
		if v := getNetwork(t, ns, "shrink").Status.RetainedVolumes; !slices.Equal(v, []string{"data-shrink-1"}) {
			return fmt.Errorf("retainedVolumes %v", v)
		}
		return nil
	})
}

// TestExpandVolumes: a larger storage.size raises every smaller data PVC's request; the
// same size in other units changes nothing.
func TestExpandVolumes(t *testing.T) {
	ctx := context.Background()
	pn := unitNetwork()
	pvc := func(name, size string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: selectorLabels(pn)},
			Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}}
	}
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(pvc("data-net-0", "1Gi"), pvc("data-net-1", "1024Mi"), pvc("other", "1Gi")).Build()
	r := &PandaNetworkReconciler{Client: c, Scheme: testScheme, APIReader: c}
	q := resource.MustParse("1024Mi")
	pn.Spec.Storage.Size = &q
	if n, err := r.expandVolumes(ctx, pn); err != nil || n != 0 {
		t.Fatalf("same size in other units expanded %d volumes (%v)", n, err)
	}
	q = resource.MustParse("2Gi")
	if n, err := r.expandVolumes(ctx, pn); err != nil || n != 2 {
		t.Fatalf("expanded %d volumes (%v), want 2", n, err)
	}
	for name, want := range map[string]string{"data-net-0": "2Gi", "data-net-1": "2Gi", "other": "1Gi"} {
		got := &corev1.PersistentVolumeClaim{}
		if err := c.Get(ctx, keyOf("ns", name), got); err != nil {
			t.Fatal(err)
		}
		if s := got.Spec.Resources.Requests[corev1.ResourceStorage]; s.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("%s request %s, want %s", name, s.String(), want)
		}
	}
}
