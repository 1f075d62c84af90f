//go:build e2e

// Package e2e runs pandanet end to end on a kind cluster: the operator installed with its Helm
// chart, a PandaNetwork exposed through NodePorts, a TopicReplica, and two edge panda-node
// processes on the host that bootstrap from the network's status.bootstrapPeers, publish on
// one and read the operation back on the other.
//
// It needs Docker and kind and is run by `make test-e2e`, which builds the images, helm and
// panda-node first and passes them in:
//
//	E2E_NODE_IMAGE, E2E_OPERATOR_IMAGE  images loaded into kind (required)
//	PANDA_NODE_BIN                      host panda-node binary for the edges (required)
//	HELM, KIND, KUBECTL                 CLIs (default: from PATH)
//	E2E_CLUSTER                         kind cluster name (default pandanet-e2e)
//	E2E_REUSE_CLUSTER=1                 use an existing cluster and keep it afterwards
//	E2E_KEEP=1                          keep the cluster (and release) for debugging
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/internal/admin"
)

const (
	operatorNamespace = "panda-system"
	appNamespace      = "e2e"
	releaseName       = "panda-operator"
	// Failure guards, not expectations: image pulls inside kind and first scheduling are slow.
	readyTimeout = 10 * time.Minute
	syncTimeout  = 3 * time.Minute
)

func env(t *testing.T, name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	if def == "" {
		t.Fatalf("%s is required (run `make test-e2e`)", name)
	}
	return def
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// sh runs a command, streaming nothing; output is returned and included in errors.
func sh(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func must(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	out, err := sh(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKindEndToEnd(t *testing.T) {
	nodeImage := env(t, "E2E_NODE_IMAGE", "")
	operatorImage := env(t, "E2E_OPERATOR_IMAGE", "")
	nodeBin := env(t, "PANDA_NODE_BIN", "")
	helm := env(t, "HELM", "helm")
	kind := env(t, "KIND", "kind")
	cluster := env(t, "E2E_CLUSTER", "pandanet-e2e")
	reuse := os.Getenv("E2E_REUSE_CLUSTER") == "1"
	keep := reuse || os.Getenv("E2E_KEEP") == "1"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// 1. Cluster.
	if !reuse {
		must(t, ctx, kind, "create", "cluster", "--name", cluster, "--wait", "3m")
	}
	t.Cleanup(func() {
		if keep {
			t.Logf("keeping kind cluster %s (kind delete cluster --name %s)", cluster, cluster)
			return
		}
		if out, err := sh(context.Background(), kind, "delete", "cluster", "--name", cluster); err != nil {
			t.Errorf("delete cluster: %v\n%s", err, out)
		}
	})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(must(t, ctx, kind, "get", "kubeconfig", "--name", cluster)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, img := range []string{nodeImage, operatorImage} {
		must(t, ctx, kind, "load", "docker-image", "--name", cluster, img)
	}
	c := newClient(t, kubeconfig)

	// 2. Operator via Helm, images from kind's local store.
	opRepo, opTag := splitImage(operatorImage)
	nodeRepo, nodeTag := splitImage(nodeImage)
	must(t, ctx, helm, "upgrade", "--install", releaseName, filepath.Join(repoRoot(), "charts", "panda-operator"),
		"--kubeconfig", kubeconfig, "--namespace", operatorNamespace, "--create-namespace",
		"--set", "image.repository="+opRepo, "--set", "image.tag="+opTag, "--set", "image.pullPolicy=Never",
		"--set", "nodeImage.repository="+nodeRepo, "--set", "nodeImage.tag="+nodeTag,
		"--wait", "--timeout", "5m")
	t.Cleanup(func() {
		if t.Failed() {
			dumpDiagnostics(t, kubeconfig)
		}
	})

	// 3. A network exposed through NodePorts and a topic replicated on it.
	topic := "e2e-topic-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pn := &pandav1.PandaNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e", Namespace: appNamespace},
		Spec: pandav1.PandaNetworkSpec{
			NetworkID:       "pandanet-e2e",
			Replicas:        ptr.To[int32](2),
			ImagePullPolicy: corev1.PullNever,
			Relay:           ptr.To(true),
			Exposure:        pandav1.Exposure{Type: pandav1.ExposureNodePort},
		},
	}
	tr := &pandav1.TopicReplica{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-topic", Namespace: appNamespace},
		Spec: pandav1.TopicReplicaSpec{
			NetworkRef: pandav1.NetworkReference{Name: pn.Name},
			Topics:     []string{topic},
		},
	}
	for _, o := range []client.Object{pn, tr} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
	waitReady(t, ctx, c, pn, func() []metav1.Condition { return pn.Status.Conditions }, func() int64 { return pn.Generation })
	waitReady(t, ctx, c, tr, func() []metav1.Condition { return tr.Status.Conditions }, func() int64 { return tr.Generation })
	if len(pn.Status.BootstrapPeers) == 0 {
		t.Fatalf("PandaNetwork Ready without status.bootstrapPeers: %+v", pn.Status)
	}
	t.Logf("bootstrap peers: %v", pn.Status.BootstrapPeers)

	// 4. Two edge nodes on the host, bootstrapped only from the status, publish and read back.
	edge1 := startEdge(t, ctx, nodeBin, "edge1", pn.Spec.NetworkID, pn.Status.BootstrapPeers, topic)
	edge2 := startEdge(t, ctx, nodeBin, "edge2", pn.Spec.NetworkID, pn.Status.BootstrapPeers, topic)
	msg := []byte("hello through kind " + topic)
	res, err := edge1.Publish(ctx, topic, msg)
	if err != nil {
		t.Fatalf("publish on edge1: %v", err)
	}
	t.Logf("edge1 published %s seq %d", res.Hash, res.Seq)
	st1, err := edge1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readBack(t, ctx, edge2, topic, st1.PublicKey, msg)

	// 5. The in-cluster replicas hold it too (TopicReplica status is filled from the nodes).
	deadline := time.Now().Add(syncTimeout)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(tr), tr); err != nil {
			t.Fatal(err)
		}
		if replicated(tr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TopicReplica status does not show the operation on every node: %+v", tr.Status)
		}
		time.Sleep(2 * time.Second)
	}
}

func replicated(tr *pandav1.TopicReplica) bool {
	if len(tr.Status.Topics) == 0 {
		return false
	}
	for _, ts := range tr.Status.Topics {
		if len(ts.Nodes) == 0 {
			return false
		}
		for _, n := range ts.Nodes {
			if n.Operations < 1 {
				return false
			}
		}
	}
	return true
}

func newClient(t *testing.T, kubeconfig string) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := pandav1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
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

// waitReady polls obj until its Ready condition is True for the current generation.
func waitReady(t *testing.T, ctx context.Context, c client.Client, obj client.Object, conds func() []metav1.Condition, gen func() int64) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	kind := fmt.Sprintf("%T", obj)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatalf("get %s: %v", kind, err)
		}
		cond := meta.FindStatusCondition(conds(), pandav1.ConditionReady)
		if cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == gen() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s not Ready after %s: %+v", kind, obj.GetName(), readyTimeout, conds())
		}
		time.Sleep(2 * time.Second)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEdge runs `panda-node run` on the host like an edge app would: no mDNS, bootstrap
// peers from the PandaNetwork status, admin API on a loopback port. It is stopped with
// SIGINT at cleanup and its log is shown on failure.
func startEdge(t *testing.T, ctx context.Context, bin, name, networkID string, bootstrap []string, topic string) *admin.Client {
	t.Helper()
	dir := t.TempDir()
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"run",
		"--data-dir", dir,
		"--network-id", networkID,
		"--listen", "/ip4/0.0.0.0/tcp/0", "--listen", "/ip4/0.0.0.0/udp/0/quic-v1",
		"--admin-listen", adminAddr,
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--mdns=false",
		"--log-level", "debug",
	}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	cmd := exec.Command(bin, args...)
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			logFile.Close()
			if t.Failed() {
				data, _ := os.ReadFile(logFile.Name())
				t.Logf("--- %s log ---\n%s", name, tail(string(data), 100))
			}
		})
	})
	c, err := admin.NewClient(adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := c.Status(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%s admin API not up: %v", name, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := c.AddTopic(ctx, topic); err != nil {
		t.Fatalf("%s: subscribe %s: %v", name, topic, err)
	}
	return c
}

// readBack waits for msg by author on the edge's event stream of topic, read from the start.
func readBack(t *testing.T, ctx context.Context, c *admin.Client, topic, author string, msg []byte) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	stream, err := c.Subscribe(sctx, topic, admin.FromStart)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer stream.Close()
	for {
		ev, err := stream.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || sctx.Err() != nil {
				t.Fatalf("message not received on edge2 within %s (%v)", syncTimeout, err)
			}
			t.Fatalf("event stream: %v", err)
		}
		if ev.Author == author && bytes.Equal(ev.Message, msg) {
			return
		}
	}
}

func dumpDiagnostics(t *testing.T, kubeconfig string) {
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "kubectl"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pandanetworks,topicreplicas,statefulsets,pods,services", "-A", "-o", "wide"},
		{"-n", appNamespace, "get", "pandanetworks,topicreplicas", "-o", "yaml"},
		{"-n", operatorNamespace, "logs", "deploy/" + releaseName, "--tail", "100"},
		{"-n", appNamespace, "logs", "-l", "app.kubernetes.io/name=panda-node", "--tail", "50", "--prefix"},
		{"get", "events", "-A", "--sort-by", ".lastTimestamp"},
	} {
		out, _ := sh(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), tail(out, 120))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
