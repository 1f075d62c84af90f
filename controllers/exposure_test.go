package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// TestLoadBalancerAddressesPublished: once a per-node LoadBalancer gets an ingress IP,
// the node's announce config, status.nodes and status.bootstrapPeers carry
// /ip4/<ip>/.../p2p/<peer id>, and the pod template changes once so nodes announce it.
func TestLoadBalancerAddressesPublished(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "edge")
	pn.Spec.Replicas = ptr.To(int32(2))
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureLoadBalancer, Annotations: map[string]string{"lb.example.org/pin": "yes"}}
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	before := waitStatefulSet(t, ns, "edge", nil)
	svc := &corev1.Service{}
	eventually(t, "LoadBalancer service", func() error {
		if err := k8sClient.Get(ctx, keyOf(ns, "edge-0"), svc); err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
			svc.Annotations["lb.example.org/pin"] != "yes" {
			return fmt.Errorf("service spec %+v", svc.Spec)
		}
		return nil
	})
	if got := getNetwork(t, ns, "edge").Status.BootstrapPeers; len(got) != 0 {
		t.Fatalf("bootstrapPeers before any LB address: %v", got)
	}
	// Play the cloud LB controller.
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.10"}}
	if err := k8sClient.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	ids := peerIDsFromSecret(t, ns, "edge", 2)
	want := "/ip4/203.0.113.10/tcp/4001/p2p/" + ids[0]
	eventually(t, "LB address in status", func() error {
		st := getNetwork(t, ns, "edge").Status
		if !slices.Contains(st.BootstrapPeers, want) ||
			!slices.Contains(st.Nodes[0].Addresses, pandav1.NodeAddress{Address: want, Type: pandav1.AddressLoadBalancer}) {
			return fmt.Errorf("bootstrapPeers %v nodes %+v", st.BootstrapPeers, st.Nodes)
		}
		return nil
	})
	cfg := &corev1.ConfigMap{}
	if err := k8sClient.Get(ctx, keyOf(ns, "edge-config"), cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Data["edge-0.yaml"], "/ip4/203.0.113.10/udp/4001/quic-v1") || strings.Contains(cfg.Data["edge-1.yaml"], "203.0.113.10/tcp/4001\n") {
		t.Errorf("announce config:\n%s\n%s", cfg.Data["edge-0.yaml"], cfg.Data["edge-1.yaml"])
	}
	// Nodes reload announce addresses from their config file: the pods do not restart.
	after := waitStatefulSet(t, ns, "edge", nil)
	if after.Generation != before.Generation || !equality.Semantic.DeepEqual(after.Spec.Template, before.Spec.Template) {
		t.Errorf("the pod template changed when the LoadBalancer address arrived (generation %d -> %d)",
			before.Generation, after.Generation)
	}
}
