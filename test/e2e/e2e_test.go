//go:build e2e

// Package e2e runs pandanet end to end on any Kubernetes cluster given by a kubeconfig: the
// operator installed with its Helm chart, a PandaNetwork of three real panda-node pods exposed
// through NodePorts, a TopicReplica, and two edge panda-node processes on the host that
// bootstrap only from the network's status.bootstrapPeers. The same code runs in CI on the
// host cluster of hack/cluster (`make test-cluster`) and for users on kind (`make test-e2e`).
//
// Scenarios, in order (each builds on the state the previous one left):
//
//	a. bootstrapping and store-and-forward of 1,000 operations through the cluster
//	b. pod deletion: same peer id, same volume, catches up on what it missed
//	c. rolling upgrade to a second image tag while both edges publish
//	d. scaling 3 -> 1 -> 3
//	e. TopicReplica per-node operation counts (checked after every scenario)
//	f. helm upgrade, then helm uninstall keeps the CRDs and identity Secrets
//	g. `kubectl get pnet,ptr` and `kubectl describe` in the test log
//	h. topic policy through a TopicReplica whose topic comes from a Secret (topicsFrom):
//	   writers=[edge-a], the pods refuse edge-b's operations, a fresh edge gets only edge-a's
//	   (runs before f, which uninstalls the operator)
//
// Environment (make test-cluster / make test-e2e set all of it):
//
//	KUBECONFIG                          the cluster (required)
//	E2E_NODE_IMAGE, E2E_OPERATOR_IMAGE  images the cluster can run without a registry
//	E2E_NODE_IMAGE_NEXT                 second node image tag for the rolling upgrade
//	PANDA_NODE_BIN                      host panda-node binary for the edges
//	HELM, KUBECTL                       CLIs (default: from PATH)
//	E2E_KEEP=1                          keep the namespace and release for debugging
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/internal/testutil"
)

const (
	operatorNamespace = "panda-system"
	releaseName       = "panda-operator"
	networkName       = "e2e"
	replicaName       = "e2e-topics"
	replicas          = 3
	// Failure guards, not expectations.
	readyTimeout = 10 * time.Minute
	syncTimeout  = 4 * time.Minute
	// The TopicReplica status is refreshed by polling the nodes (30 s), so give it two rounds.
	statusTimeout = 3 * time.Minute
	kubePoll      = 2 * time.Second
)

type config struct {
	kubeconfig, nodeImage, nodeImageNext, operatorImage, nodeBin, helm, kubectl string
	keep                                                                        bool
}

func loadConfig(t *testing.T) config {
	t.Helper()
	kc := os.Getenv("KUBECONFIG")
	testutil.Require(t, kc != "", "KUBECONFIG is not set: run `make test-cluster` (host cluster) or `make test-e2e` (kind)")
	get := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		if def == "" {
			testutil.Unavailable(t, "%s is not set (run `make test-cluster` or `make test-e2e`)", name)
		}
		return def
	}
	return config{
		kubeconfig:    kc,
		nodeImage:     get("E2E_NODE_IMAGE", ""),
		nodeImageNext: get("E2E_NODE_IMAGE_NEXT", ""),
		operatorImage: get("E2E_OPERATOR_IMAGE", ""),
		nodeBin:       get("PANDA_NODE_BIN", ""),
		helm:          get("HELM", "helm"),
		kubectl:       get("KUBECTL", "kubectl"),
		keep:          os.Getenv("E2E_KEEP") == "1",
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// suite is the state the scenarios share: one cluster, one network, one topic, two edges.
type suite struct {
	t      *testing.T // the running scenario
	root   *testing.T // the whole run: owns what outlives one scenario (edge directories)
	ctx    context.Context
	cfg    config
	c      client.Client
	ns     string
	topic  string
	edgeA  *edge
	edgeB  *edge
	peers  map[int32]string // ordinal -> peer id, as first seen
	total  int64            // operations published into the topic, all acknowledged
	totMu  sync.Mutex
	chart  string
	helmNS []string
}

func (s *suite) addPublished(n int64) {
	s.totMu.Lock()
	s.total += n
	s.totMu.Unlock()
}

func (s *suite) published() int64 {
	s.totMu.Lock()
	defer s.totMu.Unlock()
	return s.total
}

// run executes a CLI against the cluster and returns its combined output.
func (s *suite) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.cfg.kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (s *suite) must(name string, args ...string) string {
	s.t.Helper()
	out, err := s.run(s.ctx, name, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *suite) kubectl(args ...string) string {
	s.t.Helper()
	return s.must(s.cfg.kubectl, args...)
}

// show logs what a user sees (scenario g).
func (s *suite) show(when string) {
	s.t.Helper()
	for _, args := range [][]string{
		{"-n", s.ns, "get", "pnet,ptr", "-o", "wide"},
		{"-n", s.ns, "describe", "pnet,ptr"},
	} {
		out, err := s.run(s.ctx, s.cfg.kubectl, args...)
		if err != nil {
			s.t.Errorf("kubectl %s: %v", strings.Join(args, " "), err)
		}
		s.t.Logf("[%s] $ kubectl %s\n%s", when, strings.Join(args, " "), out)
	}
}

func newClient(t *testing.T, kubeconfig string) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, pandav1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// splitImage splits "repo:tag" (the repo may contain a registry port).
func splitImage(img string) (string, string) {
	i := strings.LastIndex(img, ":")
	if i < 0 || strings.Contains(img[i:], "/") {
		return img, "latest"
	}
	return img[:i], img[i+1:]
}

func TestEndToEnd(t *testing.T) {
	cfg := loadConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	s := &suite{t: t, root: t, ctx: ctx, cfg: cfg, c: newClient(t, cfg.kubeconfig),
		ns:    "e2e-" + strconv.FormatInt(time.Now().Unix()%100000, 10),
		topic: "e2e-topic-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		chart: filepath.Join(repoRoot(), "charts", "panda-operator"),
		peers: map[int32]string{}}
	if _, err := s.run(ctx, cfg.kubectl, "get", "--raw", "/readyz"); err != nil {
		testutil.Unavailable(t, "cluster of KUBECONFIG=%s not reachable: %v", cfg.kubeconfig, err)
	}

	s.install()
	t.Cleanup(func() { s.cleanup() })
	s.createNetwork()
	s.show("ready")

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"a-bootstrap-and-store-and-forward", s.scenarioStoreAndForward},
		{"b-pod-deletion", s.scenarioPodDeletion},
		{"c-rolling-upgrade", s.scenarioRollingUpgrade},
		{"d-scaling", s.scenarioScaling},
		{"e-topicreplica-status", s.scenarioTopicReplicaStatus},
		{"h-topic-writers-from-secret", s.scenarioTopicWriters},
		{"f-helm-upgrade-and-uninstall", s.scenarioHelm},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			s.t = t
			defer func() { s.t = nil }()
			st.fn(t)
		}) {
			// Later scenarios build on this one's state; running them would only add noise.
			s.t = t
			s.diagnostics()
			t.FailNow()
		}
	}
	s.t = t
	s.show("end")
}

// install installs the chart (or upgrades a release left by an earlier run).
func (s *suite) install() {
	opRepo, opTag := splitImage(s.cfg.operatorImage)
	nodeRepo, nodeTag := splitImage(s.cfg.nodeImage)
	s.helmNS = []string{"--namespace", operatorNamespace}
	s.must(s.cfg.helm, append([]string{"upgrade", "--install", releaseName, s.chart, "--create-namespace",
		"--set", "image.repository=" + opRepo, "--set", "image.tag=" + opTag, "--set", "image.pullPolicy=IfNotPresent",
		"--set", "nodeImage.repository=" + nodeRepo, "--set", "nodeImage.tag=" + nodeTag,
		"--wait", "--timeout", "5m"}, s.helmNS...)...)
}

func (s *suite) cleanup() {
	if s.edgeA != nil {
		s.edgeA.stop()
	}
	if s.edgeB != nil {
		s.edgeB.stop()
	}
	if s.cfg.keep {
		s.t.Logf("E2E_KEEP=1: keeping namespace %s and release %s", s.ns, releaseName)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The operator may already be uninstalled (scenario f); drop finalizers so the namespace goes.
	for _, kind := range []string{"topicreplicas.pandanet.io", "pandanetworks.pandanet.io"} {
		out, _ := s.run(ctx, s.cfg.kubectl, "-n", s.ns, "get", kind, "-o", "name")
		for _, name := range strings.Fields(out) {
			_, _ = s.run(ctx, s.cfg.kubectl, "-n", s.ns, "patch", name, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
		}
	}
	if out, err := s.run(ctx, s.cfg.kubectl, "delete", "namespace", s.ns, "--wait=true", "--timeout=2m"); err != nil {
		s.t.Logf("delete namespace %s: %v\n%s", s.ns, err, out)
	}
	_, _ = s.run(ctx, s.cfg.helm, "uninstall", releaseName, "--namespace", operatorNamespace, "--wait")
}

func (s *suite) createNetwork() {
	t := s.t
	if err := s.c.Create(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pn := &pandav1.PandaNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: networkName, Namespace: s.ns},
		Spec: pandav1.PandaNetworkSpec{
			NetworkID:       "pandanet-e2e-" + s.ns,
			Replicas:        ptr.To[int32](replicas),
			ImagePullPolicy: corev1.PullIfNotPresent,
			Relay:           ptr.To(true),
			Exposure:        pandav1.Exposure{Type: pandav1.ExposureNodePort},
		},
	}
	tr := &pandav1.TopicReplica{
		ObjectMeta: metav1.ObjectMeta{Name: replicaName, Namespace: s.ns},
		Spec: pandav1.TopicReplicaSpec{
			NetworkRef: pandav1.NetworkReference{Name: networkName},
			Topics:     []string{s.topic},
		},
	}
	for _, o := range []client.Object{pn, tr} {
		if err := s.c.Create(s.ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
	s.waitReady()
	s.kubectl("-n", s.ns, "wait", "--for=condition=Ready", "topicreplica/"+replicaName, "--timeout=5m")
	pn = s.network()
	if len(pn.Status.BootstrapPeers) == 0 {
		t.Fatalf("PandaNetwork Ready without status.bootstrapPeers: %+v", pn.Status)
	}
	for _, n := range pn.Status.Nodes {
		if n.PeerID == "" {
			t.Fatalf("node %s Ready without a peer id: %+v", n.Name, pn.Status)
		}
		s.peers[n.Ordinal] = n.PeerID
	}
	t.Logf("bootstrap peers: %v", pn.Status.BootstrapPeers)
}

func (s *suite) network() *pandav1.PandaNetwork {
	s.t.Helper()
	pn := &pandav1.PandaNetwork{}
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: networkName}, pn); err != nil {
		s.t.Fatal(err)
	}
	return pn
}

// waitReady waits with `kubectl wait` for Ready, then until the status describes the current
// generation (kubectl wait cannot compare observedGeneration).
func (s *suite) waitReady() {
	s.t.Helper()
	s.kubectl("-n", s.ns, "wait", "--for=condition=Ready", "pandanetwork/"+networkName, "--timeout="+readyTimeout.String())
	testutil.EventuallyEvery(s.t, readyTimeout, kubePoll, "PandaNetwork Ready for its current generation", func() (bool, error) {
		pn := &pandav1.PandaNetwork{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: networkName}, pn); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(pn.Status.Conditions, pandav1.ConditionReady)
		want := ptr.Deref(pn.Spec.Replicas, 1)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != pn.Generation ||
			pn.Status.ReadyReplicas != want || pn.Status.Replicas != want || pn.Status.CurrentRevision != pn.Status.UpdateRevision {
			return false, fmt.Errorf("gen %d, ready=%v, replicas %d/%d ready of %d, revisions %s/%s",
				pn.Generation, cond, pn.Status.ReadyReplicas, pn.Status.Replicas, want, pn.Status.CurrentRevision, pn.Status.UpdateRevision)
		}
		return true, nil
	})
}

// waitTopicCounts waits until the TopicReplica status shows want operations of the topic on
// every one of n nodes (scenario e).
func (s *suite) waitTopicCounts(n int, want int64) {
	s.t.Helper()
	testutil.EventuallyEvery(s.t, statusTimeout, kubePoll, fmt.Sprintf("TopicReplica shows %d operations on %d nodes", want, n), func() (bool, error) {
		tr := &pandav1.TopicReplica{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: replicaName}, tr); err != nil {
			return false, err
		}
		for _, ts := range tr.Status.Topics {
			if ts.Topic != s.topic {
				continue
			}
			if len(ts.Nodes) != n {
				return false, fmt.Errorf("%d nodes in status, want %d: %+v", len(ts.Nodes), n, ts.Nodes)
			}
			for _, node := range ts.Nodes {
				if node.Operations != want {
					return false, fmt.Errorf("node %s holds %d operations, want %d: %+v", node.Node, node.Operations, want, ts.Nodes)
				}
			}
			return true, nil
		}
		return false, fmt.Errorf("topic %s not in status %+v", s.topic, tr.Status.Topics)
	})
}

func (s *suite) bootstrapPeers() []string {
	s.t.Helper()
	peers := s.network().Status.BootstrapPeers
	if len(peers) == 0 {
		s.t.Fatal("status.bootstrapPeers is empty")
	}
	return peers
}

// a. Edges bootstrapped only from status.bootstrapPeers; store-and-forward of 1,000 operations.
func (s *suite) scenarioStoreAndForward(t *testing.T) {
	boot := s.bootstrapPeers()
	s.edgeA = newEdge(s.root, s, "edge-a")
	s.edgeB = newEdge(s.root, s, "edge-b")
	s.edgeA.start(boot)
	s.edgeB.start(boot)
	s.edgeA.waitClusterPeer()
	s.edgeB.waitClusterPeer()

	if _, err := s.edgeA.api.Publish(s.ctx, s.topic, []byte("hello from edge-a")); err != nil {
		t.Fatalf("publish on edge-a: %v", err)
	}
	s.addPublished(1)
	s.edgeB.waitOps(s.published())
	t.Logf("edge-b received edge-a's first operation through the cluster")

	s.edgeB.stop()
	const burst = 1000
	s.edgeA.publishN(burst, "burst")
	s.addPublished(burst)
	// Every pod holds them before the only author goes offline.
	s.waitTopicCounts(replicas, s.published())
	s.edgeA.stop()

	s.edgeB.start(s.bootstrapPeers())
	s.edgeB.waitOps(s.published())
	t.Logf("edge-b caught up %d operations from the cluster while edge-a was offline", burst)
	s.edgeA.start(s.bootstrapPeers())
	s.edgeA.waitClusterPeer()
}

// b. A deleted pod returns with the same peer id and volume and catches up on what it missed.
func (s *suite) scenarioPodDeletion(t *testing.T) {
	const ordinal = 1
	podName := fmt.Sprintf("%s-%d", networkName, ordinal)
	pod := &corev1.Pod{}
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: podName}, pod); err != nil {
		t.Fatal(err)
	}
	claimBefore := s.claimUID(pod)
	s.kubectl("-n", s.ns, "delete", "pod", podName, "--wait=true", "--timeout=2m")
	// Published while the pod is gone: it must get them from its peers when it returns.
	const missed = 50
	s.edgeB.publishN(missed, "while-pod-deleted")
	s.addPublished(missed)

	testutil.EventuallyEvery(t, readyTimeout, kubePoll, "pod recreated", func() (bool, error) {
		p := &corev1.Pod{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: podName}, p); err != nil {
			return false, err
		}
		return p.UID != pod.UID, nil
	})
	s.kubectl("-n", s.ns, "wait", "--for=condition=Ready", "pod/"+podName, "--timeout=5m")
	s.waitReady()
	after := &corev1.Pod{}
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: podName}, after); err != nil {
		t.Fatal(err)
	}
	if got := s.claimUID(after); got != claimBefore {
		t.Errorf("pod %s came back on claim %s, was %s: data not kept", podName, got, claimBefore)
	}
	s.checkPeerIDs()
	s.waitTopicCounts(replicas, s.published())
}

// claimUID is the UID of the PersistentVolumeClaim the pod's data volume uses.
func (s *suite) claimUID(pod *corev1.Pod) types.UID {
	s.t.Helper()
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc := &corev1.PersistentVolumeClaim{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: v.PersistentVolumeClaim.ClaimName}, pvc); err != nil {
			s.t.Fatal(err)
		}
		return pvc.UID
	}
	s.t.Fatalf("pod %s has no PersistentVolumeClaim volume", pod.Name)
	return ""
}

// checkPeerIDs: every node in the status has the peer id it had when first seen.
func (s *suite) checkPeerIDs() {
	s.t.Helper()
	for _, n := range s.network().Status.Nodes {
		if want, ok := s.peers[n.Ordinal]; ok && n.PeerID != want {
			s.t.Errorf("node %s has peer id %s, was %s", n.Name, n.PeerID, want)
		}
	}
}

// c. Rolling upgrade to a second image tag while both edges publish.
func (s *suite) scenarioRollingUpgrade(t *testing.T) {
	pubCtx, stopPublishing := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	var acked atomic.Int64
	var pubErrs []error
	var errMu sync.Mutex
	for _, e := range []*edge{s.edgeA, s.edgeB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; pubCtx.Err() == nil; i++ {
				if _, err := e.api.Publish(pubCtx, s.topic, fmt.Appendf(nil, "%s during upgrade %d", e.name, i)); err != nil {
					if pubCtx.Err() == nil {
						errMu.Lock()
						pubErrs = append(pubErrs, err)
						errMu.Unlock()
					}
					select {
					case <-pubCtx.Done():
					case <-time.After(time.Second):
					}
					continue
				}
				acked.Add(1)
				select {
				case <-pubCtx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	// Watch that neither edge ever loses every in-cluster peer at once.
	watchers := map[string]*peerWatch{}
	for _, e := range []*edge{s.edgeA, s.edgeB} {
		w := &peerWatch{min: -1}
		watchers[e.name] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run(pubCtx, e, s.peerSet()) }()
	}

	nodeImage := s.cfg.nodeImageNext
	patch := fmt.Sprintf(`{"spec":{"image":%q}}`, nodeImage)
	s.kubectl("-n", s.ns, "patch", "pandanetwork/"+networkName, "--type=merge", "-p", patch)
	s.waitReady()
	testutil.EventuallyEvery(t, readyTimeout, kubePoll, "every pod runs "+nodeImage, func() (bool, error) {
		pods := &corev1.PodList{}
		if err := s.c.List(s.ctx, pods, client.InNamespace(s.ns), client.MatchingLabels{"app.kubernetes.io/instance": networkName}); err != nil {
			return false, err
		}
		n := 0
		for _, p := range pods.Items {
			for _, c := range p.Spec.Containers {
				if c.Image == nodeImage {
					n++
				}
			}
		}
		return n == replicas, fmt.Errorf("%d of %d pods run %s", n, replicas, nodeImage)
	})
	// Keep publishing a moment after the rollout so operations published against new pods count.
	s.edgeA.waitClusterPeer()
	stopPublishing()
	wg.Wait()
	errMu.Lock()
	for _, err := range pubErrs {
		t.Errorf("publish during upgrade: %v", err)
	}
	errMu.Unlock()
	s.addPublished(acked.Load())
	t.Logf("%d operations acknowledged during the rolling upgrade", acked.Load())
	for name, w := range watchers {
		t.Logf("%s: fewest in-cluster peers during the upgrade: %d (%d samples)", name, w.min, w.samples)
		if w.min == 0 {
			t.Errorf("%s lost every bootstrap peer at once during the rolling upgrade (at %s)", name, w.zeroAt.Format(time.RFC3339Nano))
		}
	}
	s.checkPeerIDs()
	s.checkNodeStartLogs()
	s.waitTopicCounts(replicas, s.published())
	s.edgeA.waitOps(s.published())
	s.edgeB.waitOps(s.published())
}

// checkNodeStartLogs reads every node's log after the rollout (issue 11 items 6 and 10): the
// read-only 0440 identity mount gives no "chmod 600" warning, and readiness waited until the
// restarted node had caught up with its peers (or said it gave up waiting).
func (s *suite) checkNodeStartLogs() {
	s.t.Helper()
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", networkName, i)
		logs := s.kubectl("-n", s.ns, "logs", pod, "-c", "panda-node")
		if strings.Contains(logs, "chmod 600") {
			s.t.Errorf("%s warns about its key file mode:\n%s", pod, logs)
		}
		switch {
		case strings.Contains(logs, "caught up with peers"):
		case strings.Contains(logs, "ready without having caught up"):
			s.t.Logf("%s became ready by the catch-up timeout, not by a completed sync", pod)
		default:
			s.t.Errorf("%s logs neither a catch-up nor its timeout:\n%s", pod, logs)
		}
	}
}

func (s *suite) peerSet() map[string]bool {
	set := map[string]bool{}
	for _, id := range s.peers {
		set[id] = true
	}
	return set
}

// peerWatch samples an edge's connections to in-cluster peers.
type peerWatch struct {
	min, samples int
	zeroAt       time.Time
}

func (w *peerWatch) run(ctx context.Context, e *edge, cluster map[string]bool) {
	for ctx.Err() == nil {
		if ps, err := e.api.Peers(ctx); err == nil {
			n := 0
			for _, p := range ps {
				if cluster[p.PeerID] {
					n++
				}
			}
			if w.min < 0 || n < w.min {
				w.min = n
				if n == 0 {
					w.zeroAt = time.Now()
				}
			}
			w.samples++
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// d. Scale 3 -> 1 -> 3: the remaining node keeps everything, the returning ones come back on
// their volumes with their peer ids and catch up.
func (s *suite) scenarioScaling(t *testing.T) {
	claims := map[string]types.UID{}
	for o := int32(1); o < replicas; o++ {
		name := fmt.Sprintf("%s-%d", networkName, o)
		p := &corev1.Pod{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: name}, p); err != nil {
			t.Fatal(err)
		}
		claims[name] = s.claimUID(p)
	}

	s.kubectl("-n", s.ns, "patch", "pandanetwork/"+networkName, "--type=merge", "-p", `{"spec":{"replicas":1}}`)
	s.waitReady()
	for name := range claims {
		s.kubectl("-n", s.ns, "wait", "--for=delete", "pod/"+name, "--timeout=3m")
	}
	pn := s.network()
	if len(pn.Status.Nodes) != 1 {
		t.Errorf("status lists %d nodes after scaling to 1: %+v", len(pn.Status.Nodes), pn.Status.Nodes)
	}
	for _, b := range pn.Status.BootstrapPeers {
		if !strings.HasSuffix(b, "/p2p/"+s.peers[0]) {
			t.Errorf("bootstrap peer %s is not node 0 (%s) after scaling to 1", b, s.peers[0])
		}
	}
	// The removed ordinals' volumes stay (StatefulSet retention), so scaling back keeps data.
	for name := range claims {
		pvc := &corev1.PersistentVolumeClaim{}
		key := types.NamespacedName{Namespace: s.ns, Name: "data-" + name}
		if err := s.c.Get(s.ctx, key, pvc); err != nil {
			t.Errorf("claim of removed %s: %v", name, err)
		}
	}
	s.edgeA.waitClusterPeer()
	s.edgeB.waitClusterPeer()
	const whileSmall = 20
	s.edgeB.publishN(whileSmall, "while-scaled-down")
	s.addPublished(whileSmall)
	s.waitTopicCounts(1, s.published())

	s.kubectl("-n", s.ns, "patch", "pandanetwork/"+networkName, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	s.waitReady()
	for name, uid := range claims {
		p := &corev1.Pod{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: name}, p); err != nil {
			t.Fatal(err)
		}
		if got := s.claimUID(p); got != uid {
			t.Errorf("%s came back on claim %s, was %s", name, got, uid)
		}
	}
	s.checkPeerIDs()
	if n := len(s.network().Status.BootstrapPeers); n < replicas {
		t.Errorf("%d bootstrap peers after scaling back to %d", n, replicas)
	}
	s.waitTopicCounts(replicas, s.published())
}

// e. The per-node counts equal what was published, and each edge holds the same.
func (s *suite) scenarioTopicReplicaStatus(t *testing.T) {
	want := s.published()
	s.waitTopicCounts(replicas, want)
	s.edgeA.waitOps(want)
	s.edgeB.waitOps(want)
	t.Logf("every node and both edges hold all %d operations", want)
	// Ready means synced: every node within the lag bound, per the nodes' log heights.
	testutil.EventuallyEvery(t, statusTimeout, kubePoll, "TopicReplica Ready=True AllNodesSynced", func() (bool, error) {
		tr := &pandav1.TopicReplica{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: replicaName}, tr); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(tr.Status.Conditions, pandav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != pandav1.ReasonAllNodesSynced {
			return false, fmt.Errorf("ready = %+v", c)
		}
		for _, ts := range tr.Status.Topics {
			for _, n := range ts.Nodes {
				if n.Behind != 0 {
					return false, fmt.Errorf("%s is %d operations behind on %s", n.Node, n.Behind, ts.Topic)
				}
			}
		}
		return true, nil
	})
}

// h. Issue 14 on the real cluster: a TopicReplica takes its topic from a Secret (topicsFrom,
// so the topic id, a read capability, is in no ConfigMap and not in the TopicReplica) and lets
// only edge-a write. The pods, which read the rendered topics file from their Secret volume,
// store edge-a's operations, refuse edge-b's (not_writer in the TopicReplica status), and a
// fresh edge that can sync only from the pods gets edge-a's log and nothing of edge-b's.
func (s *suite) scenarioTopicWriters(t *testing.T) {
	const (
		trName, secretName = "e2e-writers", "e2e-writer-topics"
		writes             = 5
	)
	topic := s.topic + "-writers"
	st, err := s.edgeA.api.Status(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyA := st.PublicKey
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: s.ns},
		StringData: map[string]string{"topics": topic + "\n"}}
	tr := &pandav1.TopicReplica{
		ObjectMeta: metav1.ObjectMeta{Name: trName, Namespace: s.ns},
		Spec: pandav1.TopicReplicaSpec{
			NetworkRef:    pandav1.NetworkReference{Name: networkName},
			TopicsFrom:    &pandav1.TopicsSource{SecretKeyRef: pandav1.SecretKeyReference{Name: secretName, Key: "topics"}},
			Writers:       []string{keyA},
			ReclaimPolicy: pandav1.ReclaimDelete,
		},
	}
	for _, o := range []client.Object{sec, tr} {
		if err := s.c.Create(s.ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
	// Ready: every pod lists the topic, so each reloaded the topics file from its Secret volume.
	s.kubectl("-n", s.ns, "wait", "--for=condition=Ready", "topicreplica/"+trName, "--timeout=5m")
	raw := s.kubectl("-n", s.ns, "get", "topicreplica/"+trName, "-o", "json")
	if strings.Contains(raw, topic) {
		t.Fatalf("the TopicReplica shows the secret topic:\n%s", raw)
	}
	cms := s.kubectl("-n", s.ns, "get", "configmaps", "-o", "yaml")
	if strings.Contains(cms, topic) {
		t.Fatal("a ConfigMap holds the secret topic")
	}

	// nodes reads the TopicReplica's per-node view of its one topic.
	nodes := func() ([]pandav1.TopicNodeStatus, error) {
		cur := &pandav1.TopicReplica{}
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: trName}, cur); err != nil {
			return nil, err
		}
		if len(cur.Status.Topics) != 1 || cur.Status.Topics[0].Topic != "secret:"+secretName+"/topics" {
			return nil, fmt.Errorf("status topics %+v", cur.Status.Topics)
		}
		return cur.Status.Topics[0].Nodes, nil
	}
	allHold := func(n []pandav1.TopicNodeStatus, want int64) error {
		if len(n) != replicas {
			return fmt.Errorf("%d nodes report the topic: %+v", len(n), n)
		}
		for _, x := range n {
			if x.Operations != want {
				return fmt.Errorf("node %s holds %d operations, want %d", x.Node, x.Operations, want)
			}
		}
		return nil
	}

	// edge-a, the writer, publishes; every pod stores it.
	if _, err := s.edgeA.api.AddTopic(s.ctx, topic); err != nil {
		t.Fatal(err)
	}
	s.edgeA.publishTo(topic, writes, "writer")
	testutil.EventuallyEvery(t, statusTimeout, kubePoll, "every pod holds edge-a's operations", func() (bool, error) {
		n, err := nodes()
		if err == nil {
			err = allHold(n, writes)
		}
		return err == nil, err
	})
	// From now on, edge-b's operations could reach another edge only through the pods.
	s.edgeA.stop()
	if _, err := s.edgeB.api.AddTopic(s.ctx, topic); err != nil {
		t.Fatal(err)
	}
	s.edgeB.publishTo(topic, writes, "outsider")
	var refused int64
	testutil.EventuallyEvery(t, statusTimeout, kubePoll, "the pods refuse edge-b's operations", func() (bool, error) {
		n, err := nodes()
		if err != nil {
			return false, err
		}
		refused = 0
		for _, x := range n {
			refused += x.Refused["not_writer"]
		}
		if err := allHold(n, writes); err != nil {
			t.Fatalf("a pod stored an unauthorised operation: %v", err)
		}
		return refused > 0, fmt.Errorf("no not_writer refusal yet: %+v", n)
	})
	t.Logf("the pods refused %d of edge-b's operations (not_writer) and hold only edge-a's %d", refused, writes)
	s.edgeB.stop()

	// A fresh edge, with only the pods to sync from.
	c := newTopicEdge(s.root, s, "edge-c", topic)
	c.start(s.bootstrapPeers())
	c.waitClusterPeer()
	c.waitOps(writes)
	ts, err := c.api.Topics(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if x.Topic != c.topicID {
			continue
		}
		if len(x.Logs) != 1 || x.Logs[0].Author != keyA {
			t.Fatalf("edge-c holds logs %+v, want only edge-a's (%s)", x.Logs, keyA)
		}
	}
	c.stop()
	t.Logf("edge-c, syncing only from the pods, holds edge-a's %d operations and nothing of edge-b's", writes)

	// Clean up: Delete policy unsubscribes; the edges go back to the suite's topic.
	if err := s.c.Delete(s.ctx, tr); err != nil {
		t.Fatal(err)
	}
	s.kubectl("-n", s.ns, "wait", "--for=delete", "topicreplica/"+trName, "--timeout=3m")
	if err := s.c.Delete(s.ctx, sec); err != nil {
		t.Fatal(err)
	}
	boot := s.bootstrapPeers()
	s.edgeA.start(boot)
	s.edgeB.start(boot)
	s.edgeA.waitClusterPeer()
	s.edgeB.waitClusterPeer()
}

// f. helm upgrade keeps the operator working; helm uninstall keeps CRDs and identity Secrets.
func (s *suite) scenarioHelm(t *testing.T) {
	s.must(s.cfg.helm, append([]string{"upgrade", releaseName, s.chart, "--reuse-values",
		"--set", "podLabels.pandanet-e2e=upgraded", "--wait", "--timeout", "5m"}, s.helmNS...)...)
	testutil.EventuallyEvery(t, readyTimeout, kubePoll, "upgraded operator pod Ready", func() (bool, error) {
		pods := &corev1.PodList{}
		if err := s.c.List(s.ctx, pods, client.InNamespace(operatorNamespace), client.MatchingLabels{"pandanet-e2e": "upgraded"}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
		}
		return false, fmt.Errorf("%d pods with the upgraded label, none Ready", len(pods.Items))
	})
	// The upgraded operator reconciles: a new topic on the TopicReplica reaches every node.
	second := s.topic + "-after-upgrade"
	tr := &pandav1.TopicReplica{}
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: replicaName}, tr); err != nil {
		t.Fatal(err)
	}
	tr.Spec.Topics = append(tr.Spec.Topics, second)
	if err := s.c.Update(s.ctx, tr); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyEvery(t, statusTimeout, kubePoll, "second topic subscribed on every node", func() (bool, error) {
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: replicaName}, tr); err != nil {
			return false, err
		}
		for _, ts := range tr.Status.Topics {
			if ts.Topic == second && len(ts.Nodes) == replicas {
				return meta.IsStatusConditionTrue(tr.Status.Conditions, pandav1.ConditionReady) && tr.Status.ObservedGeneration == tr.Generation, nil
			}
		}
		return false, fmt.Errorf("status: %+v", tr.Status.Topics)
	})

	secrets := &corev1.SecretList{}
	if err := s.c.List(s.ctx, secrets, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	var identity []string
	for _, sec := range secrets.Items {
		if strings.HasSuffix(sec.Name, "-identity") {
			identity = append(identity, sec.Name)
		}
	}
	if len(identity) == 0 {
		t.Fatalf("no identity Secret in %s before uninstall", s.ns)
	}

	s.must(s.cfg.helm, append([]string{"uninstall", releaseName, "--wait", "--timeout", "3m"}, s.helmNS...)...)
	testutil.EventuallyEvery(t, time.Minute, kubePoll, "operator Deployment removed", func() (bool, error) {
		out, err := s.run(s.ctx, s.cfg.kubectl, "-n", operatorNamespace, "get", "deployments", "-o", "name")
		return err == nil && !strings.Contains(out, releaseName), err
	})
	for _, crd := range []string{"pandanetworks.pandanet.io", "topicreplicas.pandanet.io"} {
		if err := s.c.Get(s.ctx, types.NamespacedName{Name: crd}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s after helm uninstall: %v", crd, err)
		}
	}
	for _, name := range identity {
		if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: name}, &corev1.Secret{}); err != nil {
			t.Errorf("identity Secret %s after helm uninstall: %v", name, err)
		}
	}
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: s.ns, Name: networkName}, &pandav1.PandaNetwork{}); err != nil {
		t.Errorf("PandaNetwork after helm uninstall: %v", err)
	}
	s.show("after helm uninstall")
}

func (s *suite) diagnostics() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pandanetworks,topicreplicas,statefulsets,pods,services,pvc", "-A", "-o", "wide"},
		{"-n", s.ns, "get", "pandanetworks,topicreplicas", "-o", "yaml"},
		{"-n", s.ns, "describe", "pods"},
		{"-n", operatorNamespace, "logs", "deploy/" + releaseName, "--tail", "100"},
		{"-n", s.ns, "logs", "-l", "app.kubernetes.io/instance=" + networkName, "--tail", "60", "--prefix"},
		{"get", "events", "-A", "--sort-by", ".lastTimestamp"},
	} {
		out, _ := s.run(ctx, s.cfg.kubectl, args...)
		s.t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), tail(out, 150))
	}
	for _, e := range []*edge{s.edgeA, s.edgeB} {
		if e != nil {
			data, _ := os.ReadFile(e.logPath)
			s.t.Logf("--- %s log (last lines) ---\n%s", e.name, tail(string(data), 80))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
