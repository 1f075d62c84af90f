package controllers

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

func unitNetwork() *pandav1.PandaNetwork {
	return &pandav1.PandaNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: "net", Namespace: "ns", Generation: 4},
		Spec:       pandav1.PandaNetworkSpec{NetworkID: "my-app", Replicas: ptr.To(int32(3))},
	}
}

func TestPeerIDFromSeedMatchesLibp2p(t *testing.T) {
	for i := 0; i < 5; i++ {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := sk.Raw() // 64 bytes: seed || public key
		want, _ := peer.IDFromPrivateKey(sk)
		got, err := peerIDFromSeedHex(hex.EncodeToString(raw[:32]) + "\n")
		if err != nil || got != want.String() {
			t.Fatalf("peer id %q, %v; want %q", got, err, want)
		}
		if !strings.HasPrefix(got, "12D3KooW") {
			t.Fatalf("unexpected peer id form %q", got)
		}
	}
	for _, bad := range []string{"", "zz", strings.Repeat("ab", 31)} {
		if _, err := peerIDFromSeedHex(bad); err == nil {
			t.Errorf("seed %q accepted", bad)
		}
	}
	seed, err := newSeedHex()
	if err != nil || len(seed) != 64 {
		t.Fatalf("newSeedHex = %q, %v", seed, err)
	}
}

func TestCanonicalID(t *testing.T) {
	hexID := strings.Repeat("AB", 32)
	if got := canonicalID(hexID); got != strings.ToLower(hexID) {
		t.Errorf("hex id: %s", got)
	}
	// BLAKE3("abc") test vector.
	if got := canonicalID("abc"); got != "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85" {
		t.Errorf("BLAKE3(abc) = %s", got)
	}
	// Same id the node's own parser (pkg/operation.ParseID) derives for topic "chat".
	if got := canonicalID("chat"); got != "504c1dbb87fc1cd93594bd6baad1b520229bd222e16d9c48138998f602993c67" {
		t.Errorf("BLAKE3(chat) = %s", got)
	}
	// 64 characters that are not hex are a name, hashed.
	if got := canonicalID(strings.Repeat("z", 64)); got == strings.Repeat("z", 64) || len(got) != 64 {
		t.Errorf("non-hex 64 chars: %s", got)
	}
}

func TestBuildStatefulSet(t *testing.T) {
	pn := unitNetwork()
	pn.Spec.NodeSelector = map[string]string{"pool": "p2p"}
	pn.Spec.PodAnnotations = map[string]string{"a": "b"}
	sts := BuildStatefulSet(pn, "img:v1")
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement ||
		sts.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType ||
		*sts.Spec.Replicas != 3 || sts.Spec.ServiceName != "net-headless" {
		t.Fatalf("spec = %+v", sts.Spec)
	}
	// Rolling updates pace themselves so edges can redial a restarted node (real-cluster e2e c).
	if sts.Spec.MinReadySeconds < 15 {
		t.Fatalf("minReadySeconds = %d, want >= 15", sts.Spec.MinReadySeconds)
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != "img:v1" || !slices.Contains(c.Args, "--network-id=my-app") || !slices.Contains(c.Args, "--relay-service=true") ||
		!slices.Contains(c.Args, "--mdns=false") || !slices.Contains(c.Args, "--public") || c.Args[0] != "run" {
		t.Fatalf("container = %+v", c)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	// A start that hangs is restarted after a bounded time; liveness gives the node's own
	// 5 s watchdog (cmd/node livenessBound) time to answer and restarts after about a
	// minute hung; readiness gives its 2 s check (internal/metrics readyTimeout) time.
	if sp := c.StartupProbe; sp == nil || sp.HTTPGet.Path != "/healthz" ||
		sp.PeriodSeconds*sp.FailureThreshold != StartupProbeSeconds {
		t.Errorf("startup probe %+v", sp)
	}
	if lp := c.LivenessProbe; lp.TimeoutSeconds <= 5 || lp.PeriodSeconds*lp.FailureThreshold < 60 {
		t.Errorf("liveness probe %+v", lp)
	}
	if rp := c.ReadinessProbe; rp.TimeoutSeconds <= 2 {
		t.Errorf("readiness probe %+v", rp)
	}
	if !*c.SecurityContext.ReadOnlyRootFilesystem || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("security context")
	}
	for _, m := range c.VolumeMounts {
		// subPath mounts are never refreshed by kubelet: topics must be a directory mount.
		if m.SubPath != "" {
			t.Errorf("mount %s uses subPath", m.Name)
		}
	}
	if pod.NodeSelector["pool"] != "p2p" || sts.Spec.Template.Annotations["a"] != "b" {
		t.Errorf("node selector / annotations not passed through")
	}
	if q := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "1Gi" {
		t.Errorf("storage %s", q.String())
	}
	pn.Spec.Relay = ptr.To(false)
	if !slices.Contains(BuildStatefulSet(pn, "img").Spec.Template.Spec.Containers[0].Args, "--relay-service=false") {
		t.Errorf("relay false not passed")
	}
}

func TestPodTemplateIndependentOfTopics(t *testing.T) {
	pn := unitNetwork()
	a := BuildPodTemplate(pn, "img")
	// Topics only flow into the ConfigMap; nothing topic-related is an input here, and
	// the same spec always yields the same template.
	b := BuildPodTemplate(pn, "img")
	if !equality.Semantic.DeepEqual(a, b) {
		t.Fatal("pod template not deterministic")
	}
	if same, err := coveredBy(BuildPodTemplate(pn, "img2"), a); err != nil || same {
		t.Fatalf("an image change must count as a template change (%v)", err)
	}
}

func TestBuildNodeService(t *testing.T) {
	pn := unitNetwork()
	svc := BuildNodeService(pn, 2)
	if svc.Name != "net-2" || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ExternalTrafficPolicy != "" ||
		svc.Spec.Selector[appsv1.StatefulSetPodNameLabel] != "net-2" {
		t.Fatalf("None exposure: %+v", svc.Spec)
	}
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != svc.Spec.Ports[1].Port ||
		svc.Spec.Ports[0].Protocol != corev1.ProtocolTCP || svc.Spec.Ports[1].Protocol != corev1.ProtocolUDP {
		t.Fatalf("ports: %+v", svc.Spec.Ports)
	}
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureLoadBalancer, Port: 4101, LoadBalancerClass: ptr.To("lb"),
		Annotations: map[string]string{"x": "y"}}
	svc = BuildNodeService(pn, 0)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
		*svc.Spec.LoadBalancerClass != "lb" || svc.Annotations["x"] != "y" || svc.Spec.Ports[0].Port != 4101 ||
		svc.Spec.Ports[0].TargetPort.IntValue() != P2PPort {
		t.Fatalf("LB exposure: %+v", svc)
	}
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureNodePort, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster}
	if svc = BuildNodeService(pn, 0); svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ExternalTrafficPolicy != "Cluster" {
		t.Fatalf("NodePort exposure: %+v", svc.Spec)
	}
	h := BuildHeadlessService(pn)
	if h.Spec.ClusterIP != corev1.ClusterIPNone || !h.Spec.PublishNotReadyAddresses {
		t.Fatalf("headless: %+v", h.Spec)
	}
	if pdb := BuildPDB(pn); pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Fatalf("pdb: %+v", pdb.Spec)
	}
}

func TestMultiaddrComposition(t *testing.T) {
	pn := unitNetwork()
	if got := InClusterAddrs(pn, 1, "12D3KooWX"); !slices.Equal(got, []string{
		"/dns4/net-1.ns.svc/tcp/4001/p2p/12D3KooWX", "/dns4/net-1.ns.svc/udp/4001/quic-v1/p2p/12D3KooWX"}) {
		t.Errorf("in-cluster: %v", got)
	}
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureLoadBalancer, Port: 4001}
	svc := &corev1.Service{Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
		{IP: "203.0.113.7"}, {Hostname: "lb.example.org"}, {IP: "2001:db8::1"}}}}}
	want := []string{"/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.7/udp/4001/quic-v1",
		"/dns/lb.example.org/tcp/4001", "/dns/lb.example.org/udp/4001/quic-v1",
		"/ip6/2001:db8::1/tcp/4001", "/ip6/2001:db8::1/udp/4001/quic-v1"}
	got := PublicAddrs(pn, 0, svc, NodeHost{})
	if !slices.Equal(addressStrings(got), want) || got[0].Type != pandav1.AddressLoadBalancer {
		t.Errorf("LB: %v", got)
	}
	if got := PublicAddrs(pn, 0, &corev1.Service{}, NodeHost{}); got != nil {
		t.Errorf("LB pending: %v", got)
	}
	pn.Spec.Exposure = pandav1.Exposure{Type: pandav1.ExposureNodePort, Port: 4001}
	svc = &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Protocol: corev1.ProtocolTCP, NodePort: 30001}, {Protocol: corev1.ProtocolUDP, NodePort: 30002}}}}
	ext := NodeHost{Address: "198.51.100.2", Type: pandav1.AddressExternalIP}
	if got := PublicAddrs(pn, 0, svc, ext); !slices.Equal(addressStrings(got), []string{"/ip4/198.51.100.2/tcp/30001", "/ip4/198.51.100.2/udp/30002/quic-v1"}) ||
		got[1].Type != pandav1.AddressExternalIP {
		t.Errorf("NodePort: %v", got)
	}
	if got := PublicAddrs(pn, 0, svc, NodeHost{Address: "10.0.0.5", Type: pandav1.AddressInternalIP}); got[0].Type != pandav1.AddressInternalIP {
		t.Errorf("NodePort on an InternalIP must say so: %v", got)
	}
	pn.Spec.Exposure.PublicAddresses = []pandav1.PublicAddresses{{Ordinal: 0, Addresses: []string{"/dns4/n0.example.org/tcp/4001"}}}
	if got := PublicAddrs(pn, 0, svc, ext); !slices.Equal(addressStrings(got), []string{"/dns4/n0.example.org/tcp/4001"}) || got[0].Type != pandav1.AddressStatic {
		t.Errorf("explicit: %v", got)
	}
	if got := withPeer([]string{"/ip4/1.2.3.4/tcp/1/"}, "P"); got[0] != "/ip4/1.2.3.4/tcp/1/p2p/P" {
		t.Errorf("withPeer: %v", got)
	}
	if withPeer([]string{"/ip4/1.2.3.4/tcp/1"}, "") != nil {
		t.Errorf("address without peer id must be dropped")
	}
}

func TestBuildNodeConfigs(t *testing.T) {
	pn := unitNetwork()
	pn.Spec.BootstrapPeers = []string{"/dns4/ext/tcp/4001/p2p/E"}
	ids := map[int32]string{0: "A", 1: "B", 2: "C"}
	cfgs := BuildNodeConfigs(pn, ids, map[int32][]pandav1.NodeAddress{1: {{Address: "/ip4/203.0.113.1/tcp/4001", Type: pandav1.AddressLoadBalancer}}})
	if len(cfgs) != 3 {
		t.Fatalf("configs: %v", cfgs)
	}
	c1 := cfgs[1]
	if !slices.Equal(c1.Bootstrap, []string{"/dns4/net-0.ns.svc/tcp/4001/p2p/A", "/dns4/net-2.ns.svc/tcp/4001/p2p/C", "/dns4/ext/tcp/4001/p2p/E"}) {
		t.Errorf("bootstrap of 1: %v", c1.Bootstrap)
	}
	if !slices.Equal(c1.Announce, []string{"/ip4/203.0.113.1/tcp/4001"}) || cfgs[0].Announce != nil {
		t.Errorf("announce: %v / %v", c1.Announce, cfgs[0].Announce)
	}
	cm, err := BuildConfigConfigMap(pn, cfgs)
	if err != nil || !strings.Contains(cm.Data["net-1.yaml"], "bootstrap:") {
		t.Fatalf("configmap: %v %v", cm.Data, err)
	}
}

func tr(name string, policy pandav1.ReclaimPolicy, deleting bool, topics ...string) pandav1.TopicReplica {
	t := pandav1.TopicReplica{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: pandav1.TopicReplicaSpec{Topics: topics, ReclaimPolicy: policy}}
	if deleting {
		now := metav1.Now()
		t.DeletionTimestamp = &now
	}
	return t
}

func TestMergeTopics(t *testing.T) {
	cases := []struct {
		name         string
		trs          []pandav1.TopicReplica
		prevRetained []string
		topics, ret  []string
	}{
		{"union sorted and deduplicated", []pandav1.TopicReplica{
			tr("a", pandav1.ReclaimDelete, false, "b", "a"), tr("b", pandav1.ReclaimDelete, false, "a", "c")},
			nil, []string{"a", "b", "c"}, []string{}},
		{"retain remembered after deletion", nil, []string{"kept"}, []string{"kept"}, []string{"kept"}},
		{"retain replica records its topics", []pandav1.TopicReplica{tr("a", pandav1.ReclaimRetain, false, "x")},
			nil, []string{"x"}, []string{"x"}},
		{"terminating delete replica drops topic", []pandav1.TopicReplica{tr("a", pandav1.ReclaimDelete, true, "x")},
			[]string{"x"}, []string{}, []string{}},
		{"delete replica claims a retained topic", []pandav1.TopicReplica{tr("a", pandav1.ReclaimDelete, false, "x")},
			[]string{"x", "y"}, []string{"x", "y"}, []string{"y"}},
		{"retain wins over delete for shared topic", []pandav1.TopicReplica{
			tr("a", pandav1.ReclaimDelete, true, "x"), tr("b", pandav1.ReclaimRetain, false, "x")},
			nil, []string{"x"}, []string{"x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := MergeTopics(c.trs, c.prevRetained)
			if !slices.Equal(got.Topics, c.topics) || !slices.Equal(got.Retained, c.ret) {
				t.Fatalf("got %+v, want topics %v retained %v", got, c.topics, c.ret)
			}
		})
	}
	file := RenderTopicsFile([]string{"a", "b"})
	if got := ParseTopicsFile(file); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("round trip: %v", got)
	}
}

func TestNetworkConditions(t *testing.T) {
	sts := func(gen, obs int64, replicas, ready int32, cur, upd string) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Status: appsv1.StatefulSetStatus{
			ObservedGeneration: obs, Replicas: replicas, ReadyReplicas: ready, CurrentRevision: cur, UpdateRevision: upd}}
	}
	cases := []struct {
		name                         string
		sts                          *appsv1.StatefulSet
		err                          error
		ready, progressing, degraded metav1.ConditionStatus
		readyReason                  string
		facts                        func(*NetworkFacts)
	}{
		{"no statefulset", nil, nil, "False", "True", "False", ReasonCreating, nil},
		{"all ready", sts(2, 2, 3, 3, "r1", "r1"), nil, "True", "False", "False", ReasonAllNodesReady, nil},
		{"rolling", sts(2, 2, 3, 3, "r1", "r2"), nil, "False", "True", "False", ReasonRolloutInProgress, nil},
		{"stale status", sts(3, 2, 3, 3, "r1", "r1"), nil, "False", "True", "False", ReasonNodesNotReady, nil},
		{"scaling", sts(2, 2, 2, 2, "r1", "r1"), nil, "False", "True", "False", ReasonNodesNotReady, nil},
		{"pods not ready", sts(2, 2, 3, 1, "r1", "r1"), nil, "False", "True", "False", ReasonNodesNotReady, nil},
		{"reconcile error", sts(2, 2, 3, 3, "r1", "r1"), errors.New("boom"), "True", "False", "True", ReasonAllNodesReady, nil},
		// Ready means an edge can bootstrap from the status.
		{"all ready, LoadBalancer pending", sts(2, 2, 3, 3, "r1", "r1"), nil, "False", "False", "False", ReasonAddressesPending,
			func(f *NetworkFacts) { f.NodesWithoutAddress = []string{"net-2"} }},
		{"zero replicas", sts(2, 2, 0, 0, "r1", "r1"), nil, "False", "False", "False", ReasonScaledToZero,
			func(f *NetworkFacts) { f.Desired = 0 }},
		// Degraded follows failing pods, with the pod's reason.
		{"crash loop", sts(2, 2, 3, 2, "r1", "r1"), nil, "False", "True", "True", ReasonNodesNotReady,
			func(f *NetworkFacts) {
				f.PodProblems = []PodProblem{{Pod: "net-1", Reason: "CrashLoopBackOff", Message: "back-off"}}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := NetworkFacts{Desired: 3, StatefulSet: c.sts, ReconcileErr: c.err}
			if c.facts != nil {
				c.facts(&f)
			}
			conds := NetworkConditions(7, f)
			get := func(typ string) metav1.Condition {
				for _, x := range conds {
					if x.Type == typ {
						if x.ObservedGeneration != 7 {
							t.Errorf("%s observedGeneration %d", typ, x.ObservedGeneration)
						}
						return x
					}
				}
				t.Fatalf("no %s", typ)
				return metav1.Condition{}
			}
			r, p, d := get(pandav1.ConditionReady), get(pandav1.ConditionProgressing), get(pandav1.ConditionDegraded)
			if r.Status != c.ready || p.Status != c.progressing || d.Status != c.degraded || r.Reason != c.readyReason {
				t.Fatalf("ready %s/%s progressing %s degraded %s", r.Status, r.Reason, p.Status, d.Status)
			}
			if len(f.PodProblems) > 0 && (d.Reason != "CrashLoopBackOff" || !strings.Contains(d.Message, "pod net-1")) {
				t.Fatalf("degraded %s: %s", d.Reason, d.Message)
			}
		})
	}
}

func TestTopicStatusesAndReadiness(t *testing.T) {
	chat := canonicalID("chat")
	reports := []nodeReport{
		{pod: "net-0", topics: []NodeTopicStatus{{Topic: strings.ToUpper(chat), Operations: 3}}},
		{pod: "net-1", topics: nil},
	}
	st := BuildTopicStatuses([]string{"chat", "news"}, reports)
	if len(st) != 2 || st[0].ID != chat || len(st[0].Nodes) != 1 || st[0].Nodes[0].Node != "net-0" || st[0].Nodes[0].Operations != 3 || st[0].Nodes[0].Refused != nil || len(st[1].Nodes) != 0 {
		t.Fatalf("statuses: %+v", st)
	}
	if c := TopicReadyCondition(2, []string{"chat", "news"}, 2, st, nil); c.Status != metav1.ConditionFalse || c.Reason != pandav1.ReasonProgressing {
		t.Fatalf("partial: %+v", c)
	}
	full := []pandav1.TopicStatus{{Nodes: make([]pandav1.TopicNodeStatus, 2)}}
	if c := TopicReadyCondition(2, []string{"chat"}, 2, full, nil); c.Status != metav1.ConditionTrue {
		t.Fatalf("full: %+v", c)
	}
	if c := TopicReadyCondition(2, []string{"chat"}, 2, full, []error{errors.New("down")}); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "down") {
		t.Fatalf("with errors: %+v", c)
	}
}

// Ready means synced (issue 11 item 8): every node listing the topic is not enough when one
// of them lacks more than TopicSyncLagBound operations; Behind says how many, per author
// log heights (a missing log counts height+1), or per operation count for nodes that
// report no logs.
func TestTopicReadyMeansSynced(t *testing.T) {
	chat := canonicalID("chat")
	a, b := strings.Repeat("aa", 32), strings.Repeat("bb", 32)
	report := func(pod string, logs ...NodeLogStatus) nodeReport {
		ops := int64(0)
		for _, l := range logs {
			ops += int64(l.Height) + 1
		}
		return nodeReport{pod: pod, topics: []NodeTopicStatus{{Topic: chat, Operations: ops, Logs: logs}}}
	}
	// net-1 has author a's log 150 entries short and lacks author b's log (seq 0..4).
	st := BuildTopicStatuses([]string{"chat"}, []nodeReport{
		report("net-0", NodeLogStatus{Author: a, Height: 199}, NodeLogStatus{Author: b, Height: 4}),
		report("net-1", NodeLogStatus{Author: strings.ToUpper(a), Height: 49}),
		report("net-2", NodeLogStatus{Author: a, Height: 199}, NodeLogStatus{Author: b, Height: 4}),
	})
	got := []int64{st[0].Nodes[0].Behind, st[0].Nodes[1].Behind, st[0].Nodes[2].Behind}
	if !slices.Equal(got, []int64{0, 155, 0}) {
		t.Fatalf("behind = %v, want [0 155 0]", got)
	}
	c := TopicReadyCondition(1, []string{"chat"}, 3, st, nil)
	if c.Status != metav1.ConditionFalse || c.Reason != pandav1.ReasonProgressing ||
		!strings.Contains(c.Message, "net-1 lacks 155 operations of chat") {
		t.Fatalf("a node 155 operations behind: %+v", c)
	}
	// Within the bound (operations arriving between the polls of two nodes) is synced.
	st = BuildTopicStatuses([]string{"chat"}, []nodeReport{
		report("net-0", NodeLogStatus{Author: a, Height: 199}),
		report("net-1", NodeLogStatus{Author: a, Height: 199 - pandav1.TopicSyncLagBound}),
	})
	if c := TopicReadyCondition(1, []string{"chat"}, 2, st, nil); c.Status != metav1.ConditionTrue || c.Reason != pandav1.ReasonAllNodesSynced {
		t.Fatalf("lag at the bound: %+v (behind %d)", c, st[0].Nodes[1].Behind)
	}
	// Nodes without logs in their report are compared by operation count.
	st = BuildTopicStatuses([]string{"chat"}, []nodeReport{
		{pod: "net-0", topics: []NodeTopicStatus{{Topic: chat, Operations: 500}}},
		{pod: "net-1", topics: []NodeTopicStatus{{Topic: chat, Operations: 200}}},
	})
	if st[0].Nodes[1].Behind != 300 {
		t.Fatalf("behind by count = %d, want 300", st[0].Nodes[1].Behind)
	}
	// Zero replicas: nothing holds the topics, so not Ready (was AllNodesSubscribed=True).
	if c := TopicReadyCondition(1, []string{"chat"}, 0, nil, nil); c.Status != metav1.ConditionFalse || c.Reason != pandav1.ReasonNoNodes {
		t.Fatalf("0 replicas: %+v", c)
	}
}

func TestHTTPNodeStatusClient(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/v1/topics" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode([]NodeTopicStatus{{Topic: "ab", Operations: 7, Authors: 2}})
	}))
	defer srv.Close()
	c := NewHTTPNodeStatusClient()
	c.BaseURL = func(NodeEndpoint) string { return srv.URL }
	defer c.Client.CloseIdleConnections()
	got, err := c.Topics(context.Background(), NodeEndpoint{Pod: "net-0", Token: "secret"})
	if err != nil || len(got) != 1 || got[0].Operations != 7 {
		t.Fatalf("topics = %+v, %v", got, err)
	}
	if _, err := c.Topics(context.Background(), NodeEndpoint{Pod: "net-0", Token: "wrong"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("want 401 error, got %v", err)
	}
	def := NewHTTPNodeStatusClient()
	if u := def.baseURL(NodeEndpoint{Pod: "net-1", Network: "net", Namespace: "ns"}); u != "http://net-1.net-headless.ns.svc:7070" {
		t.Fatalf("default base URL %s", u)
	}
}

// A TopicReplica's writers, quota and retention become the policy of its topics' lines, in
// the syntax the node parses; the oldest replica's policy wins for a shared topic.
func TestMergeTopicsPolicies(t *testing.T) {
	key := strings.Repeat("ab", 32)
	older := tr("older", pandav1.ReclaimRetain, false, "guarded", "shared")
	older.CreationTimestamp = metav1.NewTime(time.Unix(1000, 0))
	older.Spec.Writers = []string{key}
	older.Spec.Quota = &pandav1.TopicQuota{
		PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(100)), Bytes: ptr.To(resource.MustParse("64Mi"))},
		PerTopic:  &pandav1.TopicLimit{Bytes: ptr.To(resource.MustParse("1.5Gi"))},
	}
	older.Spec.Retention = &pandav1.TopicRetention{MaxAge: &metav1.Duration{Duration: 720 * time.Hour}, MaxBytes: ptr.To(resource.MustParse("10G"))}
	newer := tr("newer", pandav1.ReclaimRetain, false, "shared", "open")
	newer.CreationTimestamp = metav1.NewTime(time.Unix(2000, 0))
	newer.Spec.Quota = &pandav1.TopicQuota{PerTopic: &pandav1.TopicLimit{Operations: ptr.To(int64(5))}}
	plain := tr("plain", pandav1.ReclaimRetain, false, "plain")

	set := MergeTopics([]pandav1.TopicReplica{newer, plain, older}, nil)
	if !slices.Equal(set.Topics, []string{"guarded", "open", "plain", "shared"}) {
		t.Fatalf("topics %v", set.Topics)
	}
	parsed, err := config.ParseTopics(strings.NewReader(RenderTopicsFile(set.Lines)))
	if err != nil {
		t.Fatalf("the node cannot parse the rendered file: %v\n%s", err, RenderTopicsFile(set.Lines))
	}
	byName := map[string]policy.Policy{}
	for _, p := range parsed {
		byName[p.Name] = p.Policy
	}
	w, _ := operation.ParsePublicKey(key)
	want := policy.Policy{Writers: []operation.PublicKey{w},
		PerAuthor: policy.Quota{MaxOps: 100, MaxBytes: 64 << 20}, PerTopic: policy.Quota{MaxBytes: 3 << 29},
		Retention: policy.Retention{MaxAge: 720 * time.Hour, MaxBytes: 10e9}}
	for _, name := range []string{"guarded", "shared"} {
		got := byName[name]
		if !slices.Equal(got.Writers, want.Writers) || got.PerAuthor != want.PerAuthor || got.PerTopic != want.PerTopic || got.Retention != want.Retention {
			t.Errorf("%s: policy %+v, want the older replica's %+v", name, got, want)
		}
	}
	if got := byName["open"]; got.PerTopic.MaxOps != 5 || len(got.Writers) != 0 {
		t.Errorf("open: policy %+v", got)
	}
	if !byName["plain"].IsZero() {
		t.Errorf("plain got a policy: %+v", byName["plain"])
	}
}

// A node's policy report (the admin API's JSON) becomes the node's bytes and refusals in
// the TopicReplica status, so the nodes that refused operations are visible.
func TestTopicStatusesWithPolicy(t *testing.T) {
	chat := canonicalID("chat")
	fromNode := []admin.TopicStatus{{Topic: chat, Operations: 4, Authors: 2, Logs: []admin.LogStatus{},
		Policy: &admin.TopicPolicy{Usage: admin.Usage{Ops: 4, Bytes: 900},
			Refused: map[string]uint64{"not_writer": 2, "over_quota": 0, "retention": 0}}}}
	data, err := json.Marshal(fromNode)
	if err != nil {
		t.Fatal(err)
	}
	var parsed []NodeTopicStatus
	if err := json.Unmarshal(data, &parsed); err != nil {
		t.Fatal(err)
	}
	st := BuildTopicStatuses([]string{"chat"}, []nodeReport{{pod: "net-0", topics: parsed}, {pod: "net-1",
		topics: []NodeTopicStatus{{Topic: chat, Operations: 4}}}})
	n0, n1 := st[0].Nodes[0], st[0].Nodes[1]
	if n0.Bytes != 900 || len(n0.Refused) != 1 || n0.Refused["not_writer"] != 2 {
		t.Fatalf("node with refusals: %+v", n0)
	}
	if n1.Bytes != 0 || n1.Refused != nil {
		t.Fatalf("node without a policy: %+v", n1)
	}
}
