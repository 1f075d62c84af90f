package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// testPeerID is a real Ed25519 peer id (from a fixed seed), for specs that must parse.
var testPeerID = func() string {
	id, err := peerIDFromSeedHex(strings.Repeat("07", 32))
	if err != nil {
		panic(err)
	}
	return id
}()

func TestValidateSpecAddresses(t *testing.T) {
	good := []string{
		"/ip4/203.0.113.1/tcp/4001/p2p/" + testPeerID,
		"/dns4/boot.example.org/udp/4001/quic-v1/p2p/" + testPeerID,
		"/dnsaddr/boot.example.org/p2p/" + testPeerID,
		"/ip6/2001:db8::1/tcp/4001/p2p/" + testPeerID,
	}
	for _, s := range good {
		pn := unitNetwork()
		pn.Spec.BootstrapPeers = []string{s}
		if err := ValidateSpecAddresses(pn); err != nil {
			t.Errorf("%s rejected: %v", s, err)
		}
	}
	bad := []string{
		"/garbage/p2p/nope",
		"/ip4/999.0.0.1/tcp/4001/p2p/" + testPeerID,
		"/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWnotamultihash000000000000000000000000000000",
		"/p2p/" + testPeerID,
		"/ip4/203.0.113.1/tcp/4001",
	}
	for _, s := range bad {
		pn := unitNetwork()
		pn.Spec.BootstrapPeers = []string{"/ip4/203.0.113.9/tcp/1/p2p/" + testPeerID, s}
		err := ValidateSpecAddresses(pn)
		var se *SpecError
		if !errors.As(err, &se) || se.Field != "spec.bootstrapPeers[1]" || se.Value != s {
			t.Errorf("bootstrap %s: got %v", s, err)
		}
	}
	for _, s := range []string{"/ip4/203.0.113.1/tcp/99999", "/ip4/1.2.3/tcp/1", "/tcp/4001", "/ip4/1.2.3.4/udp/1/p2p/" + testPeerID, "/ip4/1.2.3.4"} {
		pn := unitNetwork()
		pn.Spec.Exposure.PublicAddresses = []pandav1.PublicAddresses{{Ordinal: 1, Addresses: []string{"/ip4/1.2.3.4/tcp/1", s}}}
		err := ValidateSpecAddresses(pn)
		var se *SpecError
		if !errors.As(err, &se) || se.Field != "spec.exposure.publicAddresses[0].addresses[1]" {
			t.Errorf("public %s: got %v", s, err)
		}
	}
}

func TestNodeHostOf(t *testing.T) {
	node := func(ready corev1.ConditionStatus, addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Addresses: addrs,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	internal := corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.5"}
	external := corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.51.100.5"}
	if h := NodeHostOf(node(corev1.ConditionTrue, internal, external)); h != (NodeHost{"198.51.100.5", pandav1.AddressExternalIP}) {
		t.Errorf("external preferred: %+v", h)
	}
	if h := NodeHostOf(node(corev1.ConditionTrue, internal)); h != (NodeHost{"10.0.0.5", pandav1.AddressInternalIP}) {
		t.Errorf("an InternalIP must be typed InternalIP: %+v", h)
	}
	if h := NodeHostOf(node(corev1.ConditionFalse, external)); h != (NodeHost{}) {
		t.Errorf("not-ready node published: %+v", h)
	}
	if h := NodeHostOf(node(corev1.ConditionUnknown, external)); h != (NodeHost{}) {
		t.Errorf("unknown node published: %+v", h)
	}
}

// TestAdmissionRejectsMalformedAddressesAndNames: what CEL can check by shape is rejected
// at admission, with a message naming the rule.
func TestAdmissionRejectsMalformedAddressesAndNames(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		mutate func(*pandav1.PandaNetwork)
		want   string
	}{
		{"garbage bootstrap peer", func(p *pandav1.PandaNetwork) { p.Spec.BootstrapPeers = []string{"/garbage/p2p/nope"} },
			"bootstrapPeers entries must start with /ip4"},
		{"short peer id", func(p *pandav1.PandaNetwork) {
			p.Spec.BootstrapPeers = []string{"/ip4/203.0.113.1/tcp/4001/p2p/nope"}
		}, "bootstrapPeers entries must start with /ip4"},
		{"public address without transport", func(p *pandav1.PandaNetwork) {
			p.Spec.Exposure.PublicAddresses = []pandav1.PublicAddresses{{Ordinal: 0, Addresses: []string{"/garbage/x"}}}
		}, "publicAddresses entries must start with /ip4"},
		{"name too long for labels", func(p *pandav1.PandaNetwork) { p.Name = strings.Repeat("n", 53) },
			"metadata.name must be at most 52 characters"},
		{"name starting with a digit", func(p *pandav1.PandaNetwork) { p.Name = "1net" },
			"metadata.name must start with a letter"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pn := validNetwork(ns, fmt.Sprintf("adm%c", 'a'+i))
			pn.Spec.Replicas = ptr.To(int32(0))
			tc.mutate(pn)
			expectInvalid(t, k8sClient.Create(ctx, pn), tc.want)
		})
	}
	ok := validNetwork(ns, strings.Repeat("n", 52))
	ok.Spec.Replicas = ptr.To(int32(0))
	ok.Spec.BootstrapPeers = []string{"/dnsaddr/boot.example.org/p2p/" + testPeerID}
	if err := k8sClient.Create(ctx, ok); err != nil {
		t.Fatalf("52-character name and a /dnsaddr peer rejected: %v", err)
	}
}

// waitCondition waits until the network's condition of type typ satisfies check.
func waitCondition(t *testing.T, ns, name, typ string, check func(*metav1.Condition) error) *pandav1.PandaNetwork {
	t.Helper()
	var pn *pandav1.PandaNetwork
	eventually(t, name+" condition "+typ, func() error {
		pn = getNetwork(t, ns, name)
		c := condition(pn.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("no %s condition in %+v", typ, pn.Status.Conditions)
		}
		if c.ObservedGeneration != pn.Generation {
			return fmt.Errorf("%s observedGeneration %d, generation %d", typ, c.ObservedGeneration, pn.Generation)
		}
		return check(c)
	})
	return pn
}

// waitEvent waits for an event about the object with the given reason and returns its note.
func waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var note string
	eventually(t, "event "+reason+" on "+name, func() error {
		var list eventsv1.EventList
		if err := k8sClient.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				note = e.Note
				return nil
			}
		}
		return fmt.Errorf("no %s event among %d", reason, len(list.Items))
	})
	return note
}

// TestInvalidAddressIsReportedNeverWritten: an address that passes the CEL shape check
// but does not parse (/ip4/999.0.0.1, port 99999) is never written to the node config;
// the network says Degraded=True InvalidSpec naming the entry, and recovers once fixed.
func TestInvalidAddressIsReportedNeverWritten(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "addr")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "addr", nil)
	configBefore := &corev1.ConfigMap{}
	eventually(t, "config", func() error { return k8sClient.Get(ctx, keyOf(ns, "addr-config"), configBefore) })

	bad := "/ip4/999.0.0.1/tcp/4001/p2p/" + testPeerID
	updateNetwork(t, ns, "addr", func(p *pandav1.PandaNetwork) { p.Spec.BootstrapPeers = []string{bad} })
	waitCondition(t, ns, "addr", pandav1.ConditionDegraded, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionTrue || c.Reason != ReasonInvalidSpec ||
			!strings.Contains(c.Message, "spec.bootstrapPeers[0]") || !strings.Contains(c.Message, bad) {
			return fmt.Errorf("degraded = %+v", c)
		}
		return nil
	})
	if r := condition(getNetwork(t, ns, "addr").Status.Conditions, pandav1.ConditionReady); r.Status != metav1.ConditionFalse || r.Reason != ReasonInvalidSpec {
		t.Errorf("ready = %+v", r)
	}
	if note := waitEvent(t, ns, "addr", ReasonInvalidSpec); !strings.Contains(note, "spec.bootstrapPeers[0]") {
		t.Errorf("event note %q", note)
	}
	cfg := &corev1.ConfigMap{}
	if err := k8sClient.Get(ctx, keyOf(ns, "addr-config"), cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprint(cfg.Data), "999.0.0.1") || cfg.ResourceVersion != configBefore.ResourceVersion {
		t.Fatalf("invalid address written to the node config: %v", cfg.Data)
	}

	// A public address with an impossible port: same treatment, named by its path.
	updateNetwork(t, ns, "addr", func(p *pandav1.PandaNetwork) {
		p.Spec.BootstrapPeers = nil
		p.Spec.Exposure.PublicAddresses = []pandav1.PublicAddresses{{Ordinal: 0, Addresses: []string{"/ip4/203.0.113.5/tcp/99999"}}}
	})
	waitCondition(t, ns, "addr", pandav1.ConditionDegraded, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "spec.exposure.publicAddresses[0].addresses[0]") {
			return fmt.Errorf("degraded = %+v", c)
		}
		return nil
	})

	// Fixed: written and no longer degraded.
	good := "/ip4/203.0.113.5/tcp/4001"
	updateNetwork(t, ns, "addr", func(p *pandav1.PandaNetwork) {
		p.Spec.Exposure.PublicAddresses = []pandav1.PublicAddresses{{Ordinal: 0, Addresses: []string{good}}}
	})
	waitCondition(t, ns, "addr", pandav1.ConditionDegraded, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionFalse {
			return fmt.Errorf("degraded = %+v", c)
		}
		return nil
	})
	eventually(t, "fixed address written", func() error {
		if err := k8sClient.Get(ctx, keyOf(ns, "addr-config"), cfg); err != nil {
			return err
		}
		if !strings.Contains(cfg.Data["addr-0.yaml"], good) {
			return fmt.Errorf("config %v", cfg.Data)
		}
		return nil
	})
}

// TestReadyMeansBootstrappable: all pods ready but the LoadBalancer pending is not Ready
// (status.bootstrapPeers is empty); Ready once every node has an address, and the status
// says what kind each bootstrap entry is.
func TestReadyMeansBootstrappable(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "lbwait")
	pn.Spec.Replicas = ptr.To(int32(1))
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureLoadBalancer}
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	sts := waitStatefulSet(t, ns, "lbwait", nil)
	simulateStatefulSetStatus(t, sts, 1, "r1", "r1")
	cur := waitCondition(t, ns, "lbwait", pandav1.ConditionReady, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionFalse || c.Reason != ReasonAddressesPending || !strings.Contains(c.Message, "lbwait-0") {
			return fmt.Errorf("ready = %+v", c)
		}
		return nil
	})
	if len(cur.Status.BootstrapPeers) != 0 {
		t.Fatalf("bootstrapPeers while the LoadBalancer is pending: %v", cur.Status.BootstrapPeers)
	}
	svc := &corev1.Service{}
	if err := k8sClient.Get(ctx, keyOf(ns, "lbwait-0"), svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.20"}}
	if err := k8sClient.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	cur = waitCondition(t, ns, "lbwait", pandav1.ConditionReady, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ready = %+v", c)
		}
		return nil
	})
	st := cur.Status
	if len(st.BootstrapPeers) != 2 || !slices.Equal(st.BootstrapPeerTypes, []pandav1.AddressType{pandav1.AddressLoadBalancer, pandav1.AddressLoadBalancer}) {
		t.Fatalf("bootstrapPeers %v types %v", st.BootstrapPeers, st.BootstrapPeerTypes)
	}
	types := map[pandav1.AddressType]int{}
	for _, a := range st.Nodes[0].Addresses {
		types[a.Type]++
	}
	if types[pandav1.AddressLoadBalancer] != 2 || types[pandav1.AddressClusterDNS] != 2 {
		t.Fatalf("node addresses %+v", st.Nodes[0].Addresses)
	}
}

// createNodePod plays the StatefulSet controller and scheduler: a pod of the network on
// the given Kubernetes node.
func createNodePod(t *testing.T, ns, network string, ordinal int, nodeName string) *corev1.Pod {
	t.Helper()
	pn := &pandav1.PandaNetwork{ObjectMeta: metav1.ObjectMeta{Name: network, Namespace: ns}}
	lbl := commonLabels(pn)
	lbl[appsv1.StatefulSetPodNameLabel] = fmt.Sprintf("%s-%d", network, ordinal)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", network, ordinal), Namespace: ns, Labels: lbl},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: nodeContainer, Image: testImage}}},
	}
	if err := k8sClient.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// TestNodePortTypesInternalIP: on a node with only an InternalIP, the NodePort address is
// published typed InternalIP (never as a public ExternalIP).
func TestNodePortTypesInternalIP(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	nodeName := "worker-" + ns
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	if err := k8sClient.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), node) })
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.244.0.1"}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
	if err := k8sClient.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	pn := validNetwork(ns, "np")
	pn.Spec.Replicas = ptr.To(int32(1))
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureNodePort}
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "np", nil)
	createNodePod(t, ns, "np", 0, nodeName)
	eventually(t, "InternalIP bootstrap entry", func() error {
		st := getNetwork(t, ns, "np").Status
		for i, a := range st.BootstrapPeers {
			if strings.HasPrefix(a, "/ip4/10.244.0.1/tcp/") {
				if st.BootstrapPeerTypes[i] != pandav1.AddressInternalIP {
					t.Fatalf("InternalIP entry typed %s", st.BootstrapPeerTypes[i])
				}
				return nil
			}
		}
		return fmt.Errorf("bootstrapPeers %v", st.BootstrapPeers)
	})
}

// TestDegradedOnCrashLoop: a crash-looping pod makes Degraded=True with the pod's reason
// and name, instead of Progressing forever.
func TestDegradedOnCrashLoop(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "crash")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "crash", nil)
	pod := createNodePod(t, ns, "crash", 0, "")
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: nodeContainer, Image: testImage,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}},
	}}
	if err := k8sClient.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "crash", pandav1.ConditionDegraded, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionTrue || c.Reason != "CrashLoopBackOff" || !strings.Contains(c.Message, "pod crash-0") ||
			!strings.Contains(c.Message, "exit code 2") {
			return fmt.Errorf("degraded = %+v", c)
		}
		return nil
	})
}

// TestConflictDoesNotDegrade: a 409 from a write is retried, never reported as Degraded.
func TestConflictDoesNotDegrade(t *testing.T) {
	pn := unitNetwork()
	pn.Spec.Replicas = ptr.To(int32(1))
	pn.Status.Conditions = []metav1.Condition{{Type: pandav1.ConditionDegraded, Status: metav1.ConditionFalse,
		Reason: ReasonAsExpected, LastTransitionTime: metav1.Now()}}
	conflicts := 0
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(pn).
		WithStatusSubresource(&pandav1.PandaNetwork{}).
		WithIndex(&pandav1.TopicReplica{}, networkRefIndex, func(o client.Object) []string {
			return []string{o.(*pandav1.TopicReplica).Spec.NetworkRef.Name}
		}).
		WithInterceptorFuncs(interceptor.Funcs{Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*corev1.ConfigMap); ok {
				conflicts++
				return apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, obj.GetName(), errors.New("the object has been modified"))
			}
			return cl.Create(ctx, obj, opts...)
		}}).Build()
	r := &PandaNetworkReconciler{Client: c, Scheme: testScheme, APIReader: c, DefaultImage: testImage, MonitoringRecheck: time.Hour}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pn)})
	if err != nil || res.RequeueAfter <= 0 || conflicts == 0 {
		t.Fatalf("reconcile = %+v, %v (conflicts %d); want a quiet requeue", res, err, conflicts)
	}
	got := &pandav1.PandaNetwork{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(pn), got); err != nil {
		t.Fatal(err)
	}
	if d := condition(got.Status.Conditions, pandav1.ConditionDegraded); d == nil || d.Status != metav1.ConditionFalse {
		t.Fatalf("a conflict flipped Degraded: %+v", d)
	}
}
