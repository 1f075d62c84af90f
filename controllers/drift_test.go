package controllers

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

func TestSubset(t *testing.T) {
	d := map[string]any{"a": int64(1), "l": []any{map[string]any{"x": "y"}}}
	if !subset(d, map[string]any{"a": int64(1), "extra": true, "l": []any{map[string]any{"x": "y", "default": int64(3)}}}) {
		t.Error("defaults in live must not count as drift")
	}
	if subset(d, map[string]any{"a": int64(2), "l": []any{map[string]any{"x": "y"}}}) {
		t.Error("changed scalar not seen")
	}
	if subset(d, map[string]any{"a": int64(1), "l": []any{map[string]any{"x": "y"}, map[string]any{"x": "z"}}}) {
		t.Error("added list element (sidecar) not seen")
	}
	got := applyManagedAnnotations(map[string]string{"cloud": "1", "a": "1", "b": "2", managedKeysAnnotation: "a,b"}, map[string]string{"a": "9"})
	if got["cloud"] != "1" || got["a"] != "9" || got["b"] != "" || got[managedKeysAnnotation] != "a" {
		t.Errorf("managed annotations: %v", got)
	}
}

// TestStatefulSetDriftCorrected: `kubectl set image` on the StatefulSet is reverted to
// the spec; the operator records Created, Scaled and RollingUpdate events.
func TestStatefulSetDriftCorrected(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "drift")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	sts := waitStatefulSet(t, ns, "drift", nil)
	waitEvent(t, ns, "drift", "Created")
	// What `kubectl set image sts/drift panda-node=evil:1` sends.
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"panda-node","image":"evil.example.org/x:1"}]}}}}`)
	if err := k8sClient.Patch(ctx, sts, client.RawPatch(types.StrategicMergePatchType, patch), client.FieldOwner("kubectl-set")); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "drift", func(s *appsv1.StatefulSet) error {
		if img := s.Spec.Template.Spec.Containers[0].Image; img != testImage {
			return fmt.Errorf("image = %s", img)
		}
		return nil
	})
	updateNetwork(t, ns, "drift", func(p *pandav1.PandaNetwork) { p.Spec.Replicas = ptr.To(int32(2)) })
	if note := waitEvent(t, ns, "drift", "Scaled"); note != "scaled StatefulSet drift from 1 to 2 replicas" {
		t.Errorf("scaled note %q", note)
	}
	updateNetwork(t, ns, "drift", func(p *pandav1.PandaNetwork) { p.Spec.Image = "example.org/panda-node:v2" })
	waitEvent(t, ns, "drift", "RollingUpdate")
}

// TestStatefulSetNoWriteWhenUnchanged: reconciling an unchanged network against the live
// StatefulSet (with every API-server default filled in) writes nothing.
func TestStatefulSetNoWriteWhenUnchanged(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "quietsts")
	pn.Spec.Replicas = ptr.To(int32(2))
	pn.Spec.PodAnnotations = map[string]string{"a": "1"}
	pn.Spec.Affinity = nil
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "quietsts", nil)
	var writes atomic.Int32
	direct, err := client.NewWithWatch(testConfig, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	counting := interceptor.NewClient(direct, interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*appsv1.StatefulSet); ok {
				writes.Add(1)
			}
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*appsv1.StatefulSet); ok {
				writes.Add(1)
			}
			return c.Patch(ctx, obj, p, opts...)
		},
	})
	r := &PandaNetworkReconciler{Client: counting, Scheme: testScheme, APIReader: counting, DefaultImage: testImage}
	for i := 0; i < 2; i++ {
		if _, _, err := r.reconcileStatefulSet(ctx, getNetwork(t, ns, "quietsts")); err != nil {
			t.Fatal(err)
		}
	}
	if n := writes.Load(); n != 0 {
		live := waitStatefulSet(t, ns, "quietsts", nil)
		t.Fatalf("%d StatefulSet writes for an unchanged spec (live updateStrategy %+v)", n, live.Spec.UpdateStrategy.RollingUpdate)
	}
	// A removed pod annotation is a change, and is removed.
	updateNetwork(t, ns, "quietsts", func(p *pandav1.PandaNetwork) { p.Spec.PodAnnotations = nil })
	waitStatefulSet(t, ns, "quietsts", func(s *appsv1.StatefulSet) error {
		if _, ok := s.Spec.Template.Annotations["a"]; ok {
			return fmt.Errorf("annotations %v", s.Spec.Template.Annotations)
		}
		return nil
	})
}

// TestServiceAnnotationsRemoved: an annotation removed from spec.exposure.annotations
// goes from the per-node Services; annotations set by others stay.
func TestServiceAnnotationsRemoved(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "ann")
	pn.Spec.Replicas = ptr.To(int32(1))
	pn.Spec.Exposure.Annotations = map[string]string{"keep.example.org/a": "1", "drop.example.org/b": "2"}
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{}
	eventually(t, "annotated service", func() error {
		if err := k8sClient.Get(ctx, keyOf(ns, "ann-0"), svc); err != nil {
			return err
		}
		if svc.Annotations["drop.example.org/b"] != "2" {
			return fmt.Errorf("annotations %v", svc.Annotations)
		}
		return nil
	})
	// A cloud controller's annotation.
	patch := []byte(`{"metadata":{"annotations":{"cloud.example.org/lb-id":"xyz"}}}`)
	if err := k8sClient.Patch(ctx, svc, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	updateNetwork(t, ns, "ann", func(p *pandav1.PandaNetwork) {
		p.Spec.Exposure.Annotations = map[string]string{"keep.example.org/a": "1"}
	})
	eventually(t, "annotation removed", func() error {
		if err := k8sClient.Get(ctx, keyOf(ns, "ann-0"), svc); err != nil {
			return err
		}
		a := svc.Annotations
		if _, ok := a["drop.example.org/b"]; ok || a["keep.example.org/a"] != "1" || a["cloud.example.org/lb-id"] != "xyz" {
			return fmt.Errorf("annotations %v", a)
		}
		return nil
	})
}

// TestPauseAndRestartAnnotations: while paused, drift is left alone and the status says
// so; the restart annotation rolls the pod template once.
func TestPauseAndRestartAnnotations(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "ctl")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "ctl", nil)
	updateNetwork(t, ns, "ctl", func(p *pandav1.PandaNetwork) {
		p.Annotations = map[string]string{PausedAnnotation: "true"}
	})
	waitCondition(t, ns, "ctl", pandav1.ConditionProgressing, func(c *metav1.Condition) error {
		if c.Reason != ReasonPaused {
			return fmt.Errorf("progressing = %+v", c)
		}
		return nil
	})
	// Paused: a spec change is not applied (the Paused condition above proves the
	// operator saw the object; this one proves it saw the new generation and did nothing).
	updateNetwork(t, ns, "ctl", func(p *pandav1.PandaNetwork) { p.Spec.Image = "example.org/panda-node:paused" })
	waitCondition(t, ns, "ctl", pandav1.ConditionProgressing, func(c *metav1.Condition) error {
		if c.Reason != ReasonPaused {
			return fmt.Errorf("progressing = %+v", c)
		}
		return nil
	})
	if img := waitStatefulSet(t, ns, "ctl", nil).Spec.Template.Spec.Containers[0].Image; img != testImage {
		t.Fatalf("paused network changed the StatefulSet image to %s", img)
	}
	updateNetwork(t, ns, "ctl", func(p *pandav1.PandaNetwork) {
		p.Annotations = map[string]string{RestartAnnotation: "2026-11-30T21:00:00Z"}
	})
	waitStatefulSet(t, ns, "ctl", func(s *appsv1.StatefulSet) error {
		if s.Spec.Template.Annotations[RestartAnnotation] != "2026-11-30T21:00:00Z" ||
			s.Spec.Template.Spec.Containers[0].Image != "example.org/panda-node:paused" {
			return fmt.Errorf("template annotations %v image %s", s.Spec.Template.Annotations, s.Spec.Template.Spec.Containers[0].Image)
		}
		return nil
	})
}
