package controllers

import (
	"context"
	"fmt"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// TestPodMonitorOnlyWithCRD: no PodMonitor (and no error) while prometheus-operator's CRD
// is absent; once a PodMonitor CRD is served, networks get an owned PodMonitor.
func TestPodMonitorOnlyWithCRD(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "mon")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "mon", nil)
	cur := getNetwork(t, ns, "mon")
	if d := condition(cur.Status.Conditions, pandav1.ConditionDegraded); d != nil && d.Status == metav1.ConditionTrue {
		t.Fatalf("degraded without monitoring CRD: %+v", d)
	}

	// A minimal stand-in for prometheus-operator's CRD (schema preserved as-is).
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "podmonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "podmonitors", Singular: "podmonitor", Kind: "PodMonitor", ListKind: "PodMonitorList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
		},
	}
	if _, err := envtest.InstallCRDs(testConfig, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}}); err != nil {
		t.Fatalf("install PodMonitor CRD: %v", err)
	}
	// Any spec change triggers a reconcile; the CRD check is re-done after MonitoringRecheck.
	updateNetwork(t, ns, "mon", func(p *pandav1.PandaNetwork) { p.Spec.PodAnnotations = map[string]string{"poke": "1"} })
	eventually(t, "podmonitor created", func() error {
		pm := &unstructured.Unstructured{}
		pm.SetGroupVersionKind(podMonitorGVK)
		if err := k8sClient.Get(ctx, keyOf(ns, "mon"), pm); err != nil {
			// Re-poke: the first reconcile after install may still have the cached answer.
			updateNetwork(t, ns, "mon", func(p *pandav1.PandaNetwork) { p.Spec.PodAnnotations["poke"] += "1" })
			return err
		}
		ref := metav1.GetControllerOf(pm)
		if ref == nil || ref.Kind != "PandaNetwork" {
			return fmt.Errorf("podmonitor not owned: %v", pm.GetOwnerReferences())
		}
		return nil
	})

	// Labels others set stay; spec.monitoring adds labels and the scrape interval.
	pm := &unstructured.Unstructured{}
	pm.SetGroupVersionKind(podMonitorGVK)
	if err := k8sClient.Get(ctx, keyOf(ns, "mon"), pm); err != nil {
		t.Fatal(err)
	}
	lbl := pm.GetLabels()
	lbl["gitops.example.org/owner"] = "team-a"
	pm.SetLabels(lbl)
	if err := k8sClient.Update(ctx, pm); err != nil {
		t.Fatal(err)
	}
	updateNetwork(t, ns, "mon", func(p *pandav1.PandaNetwork) {
		p.Spec.Monitoring = pandav1.Monitoring{Labels: map[string]string{"release": "prom"}, Interval: "15s"}
	})
	eventually(t, "podmonitor configured", func() error {
		if err := k8sClient.Get(ctx, keyOf(ns, "mon"), pm); err != nil {
			return err
		}
		l := pm.GetLabels()
		eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		if l["gitops.example.org/owner"] != "team-a" || l["release"] != "prom" || len(eps) != 1 ||
			eps[0].(map[string]any)["interval"] != "15s" {
			return fmt.Errorf("labels %v endpoints %v", l, eps)
		}
		return nil
	})
	updateNetwork(t, ns, "mon", func(p *pandav1.PandaNetwork) { p.Spec.Monitoring.Enabled = ptr.To(false) })
	eventually(t, "podmonitor deleted when disabled", func() error {
		err := k8sClient.Get(ctx, keyOf(ns, "mon"), pm)
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
}
