package controllers

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// TestStaggeredDefaultImageUpgrade: after the operator's default image changes, the
// networks on the default roll one at a time: the second waits until the first's
// StatefulSet has finished its rollout. A network with an explicit spec.image is not held.
func TestStaggeredDefaultImageUpgrade(t *testing.T) {
	ctx := context.Background()
	network := func(name, image string) *pandav1.PandaNetwork {
		return &pandav1.PandaNetwork{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
			Spec: pandav1.PandaNetworkSpec{NetworkID: "n", Replicas: ptr.To(int32(1)), Image: image}}
	}
	settled := func(pn *pandav1.PandaNetwork, image string) *appsv1.StatefulSet {
		sts := BuildStatefulSet(pn, image)
		if err := controllerutil.SetControllerReference(pn, sts, testScheme); err != nil {
			t.Fatal(err)
		}
		sts.Generation = 1
		if pn.Spec.Image == "" {
			sts.Annotations = map[string]string{defaultImageAnnotation: image}
		}
		sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: 1, Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1,
			CurrentRevision: "r1", UpdateRevision: "r1"}
		return sts
	}
	a, b, pinned := network("a", ""), network("b", ""), network("pinned", "example.org/node:pinned")
	base := fake.NewClientBuilder().WithScheme(testScheme).
		WithObjects(a, b, pinned, settled(a, "example.org/node:old"), settled(b, "example.org/node:old"), settled(pinned, "example.org/node:pinned")).
		Build()
	c := interceptor.NewClient(base, interceptor.Funcs{Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if _, ok := obj.(*appsv1.StatefulSet); ok {
			obj.SetGeneration(obj.GetGeneration() + 1) // as the API server does on a spec change
		}
		return cl.Update(ctx, obj, opts...)
	}})
	r := &PandaNetworkReconciler{Client: c, Scheme: testScheme, APIReader: c, DefaultImage: "example.org/node:new"}
	image := func(name string) string {
		sts := &appsv1.StatefulSet{}
		if err := c.Get(ctx, keyOf("ns", name), sts); err != nil {
			t.Fatal(err)
		}
		return liveNodeImage(sts)
	}

	if _, deferred, err := r.reconcileStatefulSet(ctx, a); err != nil || deferred || image("a") != "example.org/node:new" {
		t.Fatalf("first network: deferred %v, %v, image %s", deferred, err, image("a"))
	}
	if _, deferred, err := r.reconcileStatefulSet(ctx, b); err != nil || !deferred || image("b") != "example.org/node:old" {
		t.Fatalf("second network rolled while the first is mid-rollout: deferred %v, %v, image %s", deferred, err, image("b"))
	}
	if _, deferred, err := r.reconcileStatefulSet(ctx, pinned); err != nil || deferred {
		t.Fatalf("a network with spec.image was held: %v %v", deferred, err)
	}
	// The StatefulSet controller finishes a's rollout.
	sts := &appsv1.StatefulSet{}
	if err := c.Get(ctx, keyOf("ns", "a"), sts); err != nil {
		t.Fatal(err)
	}
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1,
		CurrentRevision: "r2", UpdateRevision: "r2"}
	if err := base.Status().Update(ctx, sts); err != nil {
		t.Fatal(err)
	}
	if _, deferred, err := r.reconcileStatefulSet(ctx, b); err != nil || deferred || image("b") != "example.org/node:new" {
		t.Fatalf("second network after the first finished: deferred %v, %v, image %s", deferred, err, image("b"))
	}
	// A hand edit of a default-image network is drift, corrected at once even while b rolls.
	c2 := network("c", "")
	drifted := settled(c2, "example.org/node:new")
	drifted.Spec.Template.Spec.Containers[0].Image = "evil.example.org/x:1"
	if err := base.Create(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if err := base.Create(ctx, drifted); err != nil {
		t.Fatal(err)
	}
	if _, deferred, err := r.reconcileStatefulSet(ctx, c2); err != nil || deferred || image("c") != "example.org/node:new" {
		t.Fatalf("drift held as an upgrade: deferred %v, %v, image %s", deferred, err, image("c"))
	}
}
