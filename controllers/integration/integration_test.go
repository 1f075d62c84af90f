// Package integration runs the operator against envtest plus a real
// kube-controller-manager (StatefulSet, garbage-collector, disruption and namespace
// controllers) and kwok (fake kubelet), so StatefulSets really produce ready pods,
// roll out revisions and owned objects are garbage-collected, without Docker or kind.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/controllers"
	"github.com/pandanet/pandanet/controllers/testenv"
)

const (
	fakeNodeName  = "kwok-node-0"
	kwokNodeLabel = "pandanet.io/test-node"
)

type noNodes struct{}

func (noNodes) Topics(context.Context, controllers.NodeEndpoint) ([]controllers.NodeTopicStatus, error) {
	return nil, nil
}

// startProcess runs a binary with its output in a buffer (shown only on failure) and
// stops it when the test ends.
func startProcess(t *testing.T, name string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			s := out.String()
			if len(s) > 4000 {
				s = s[len(s)-4000:]
			}
			t.Logf("--- %s output (tail) ---\n%s", filepath.Base(name), s)
		}
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// bindPods plays kube-scheduler for the test: pods without a node whose nodeSelector
// matches the fake node are bound to it (kwok fakes kubelets, not the scheduler).
func bindPods(ctx context.Context, c client.Client, ns string, node *corev1.Node) {
	for ctx.Err() == nil {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Spec.NodeName != "" || !p.DeletionTimestamp.IsZero() ||
					!labels.SelectorFromSet(p.Spec.NodeSelector).Matches(labels.Set(node.Labels)) {
					continue
				}
				b := &corev1.Binding{
					ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
					Target:     corev1.ObjectReference{Kind: "Node", Name: node.Name},
				}
				_ = c.SubResource("binding").Create(ctx, p, b)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestStatefulSetRolloutWithControllerManagerAndKwok(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	assets := testenv.AssetsDir(filepath.Join("..", ".."))
	kcm := testenv.Binary("TEST_ASSET_KUBE_CONTROLLER_MANAGER", assets, "kube-controller-manager")
	kwok := testenv.Binary("TEST_ASSET_KWOK", assets, "kwok")
	if assets == "" || kcm == "" || kwok == "" {
		msg := fmt.Sprintf("needs kube-apiserver, etcd, kube-controller-manager and kwok (found assets=%q kcm=%q kwok=%q): run `make envtest`", assets, kcm, kwok)
		if testenv.MustRun() {
			t.Fatal(msg + " (CI is set, so this is a failure)")
		}
		t.Skip(msg)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(pandav1.AddToScheme(scheme))
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	// kube-controller-manager and kwok log in as cluster admins.
	kcPath := testenv.AdminKubeconfig(t, env, "admin")
	startProcess(t, kcm, "--kubeconfig="+kcPath, "--controllers=statefulset,garbagecollector,disruption,namespace",
		"--leader-elect=false", "--secure-port=0", "--concurrent-statefulset-syncs=2")
	startProcess(t, kwok, "--kubeconfig="+kcPath, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--config="+filepath.Join("testdata", "kwok-stages.yaml"))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        fakeNodeName,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		Labels:      map[string]string{kwokNodeLabel: "kwok", "kubernetes.io/hostname": fakeNodeName},
	}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: controllers.CacheOptions(),
		// go test -count=N runs this test again in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.Setup(mgr, controllers.Options{DefaultImage: "example.org/panda-node:v1", Nodes: noNodes{}, PollInterval: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-mgrDone })

	ns := "integration"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	go bindPods(ctx, c, ns, node)

	start := time.Now()
	pn := &pandav1.PandaNetwork{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"},
		Spec: pandav1.PandaNetworkSpec{
			NetworkID: "integration", Replicas: ptr.To(int32(3)),
			// Test-only placement: only the kwok node carries this label.
			NodeSelector: map[string]string{kwokNodeLabel: "kwok"},
		},
	}
	if err := c.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(pn)
	waitReady := func(what string, extra func(*pandav1.PandaNetwork) error) {
		eventually(t, 90*time.Second, what, func() error {
			cur := &pandav1.PandaNetwork{}
			if err := c.Get(ctx, key, cur); err != nil {
				return err
			}
			r := meta.FindStatusCondition(cur.Status.Conditions, pandav1.ConditionReady)
			if r == nil || r.Status != metav1.ConditionTrue || r.ObservedGeneration != cur.Generation {
				return fmt.Errorf("ready = %+v (readyReplicas %d)", r, cur.Status.ReadyReplicas)
			}
			for _, n := range cur.Status.Nodes {
				if !n.Ready {
					return fmt.Errorf("node %s not ready in status", n.Name)
				}
			}
			if extra != nil {
				return extra(cur)
			}
			return nil
		})
	}
	waitReady("network Ready with 3 real pods", func(cur *pandav1.PandaNetwork) error {
		if cur.Status.ReadyReplicas != 3 || len(cur.Status.Nodes) != 3 {
			return fmt.Errorf("readyReplicas %d, nodes %d", cur.Status.ReadyReplicas, len(cur.Status.Nodes))
		}
		return nil
	})
	t.Logf("3 pods ready and PandaNetwork Ready after %v", time.Since(start).Round(time.Millisecond))

	sts := &appsv1.StatefulSet{}
	if err := c.Get(ctx, key, sts); err != nil {
		t.Fatal(err)
	}
	oldRevision := sts.Status.UpdateRevision

	// Image change: the StatefulSet controller rolls pods one by one to a new revision.
	start = time.Now()
	eventually(t, 30*time.Second, "update image", func() error {
		cur := &pandav1.PandaNetwork{}
		if err := c.Get(ctx, key, cur); err != nil {
			return err
		}
		cur.Spec.Image = "example.org/panda-node:v2"
		return c.Update(ctx, cur)
	})
	eventually(t, 120*time.Second, "rollout to the new revision", func() error {
		if err := c.Get(ctx, key, sts); err != nil {
			return err
		}
		st := sts.Status
		if st.UpdateRevision == oldRevision || st.CurrentRevision != st.UpdateRevision ||
			st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.ObservedGeneration != sts.Generation {
			return fmt.Errorf("status %+v", st)
		}
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if img := p.Spec.Containers[0].Image; img != "example.org/panda-node:v2" {
				return fmt.Errorf("pod %s still runs %s", p.Name, img)
			}
		}
		return nil
	})
	waitReady("network Ready after rollout", func(cur *pandav1.PandaNetwork) error {
		if cur.Status.CurrentRevision != sts.Status.UpdateRevision {
			return fmt.Errorf("status revision %s, want %s", cur.Status.CurrentRevision, sts.Status.UpdateRevision)
		}
		return nil
	})
	t.Logf("image rollout completed and PandaNetwork Ready again after %v", time.Since(start).Round(time.Millisecond))

	// Migration: a topics ConfigMap as earlier operator versions wrote it (owned by the
	// network) gives its retained list to the retained Secret and is deleted, the rollout
	// being complete.
	owner := &pandav1.PandaNetwork{}
	if err := c.Get(ctx, key, owner); err != nil {
		t.Fatal(err)
	}
	legacy := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live-topics",
			Labels: map[string]string{"pandanet.io/network": "live", "app.kubernetes.io/managed-by": "panda-operator"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: pandav1.GroupVersion.String(), Kind: "PandaNetwork",
				Name: "live", UID: owner.UID, Controller: ptr.To(true)}}},
		Data: map[string]string{"topics": "legacy-topic\n", "retained": "legacy-topic\n"},
	}
	if err := c.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	// Any spec change makes the operator reconcile (and see the ConfigMap) now.
	eventually(t, 30*time.Second, "touch network", func() error {
		cur := &pandav1.PandaNetwork{}
		if err := c.Get(ctx, key, cur); err != nil {
			return err
		}
		cur.Spec.PodAnnotations = map[string]string{"pandanet.io/test": "migrate"}
		return c.Update(ctx, cur)
	})
	eventually(t, 120*time.Second, "legacy topics ConfigMap deleted", func() error {
		err := c.Get(ctx, client.ObjectKeyFromObject(legacy), &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})

	// A Retain-policy TopicReplica's topic stays subscribed after the replica goes.
	keep := &pandav1.TopicReplica{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keep"},
		Spec: pandav1.TopicReplicaSpec{NetworkRef: pandav1.NetworkReference{Name: "live"}, Topics: []string{"kept"}}}
	if err := c.Create(ctx, keep); err != nil {
		t.Fatal(err)
	}
	want := []string{"kept", "legacy-topic"}
	waitTopicsFile := func(what string) {
		eventually(t, 60*time.Second, what, func() error {
			sec := &corev1.Secret{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "live-topics"}, sec); err != nil {
				return err
			}
			if got := controllers.ParseTopicsFile(string(sec.Data[controllers.TopicsKey])); !slices.Equal(got, want) {
				return fmt.Errorf("topics file %v, want %v", got, want)
			}
			cur := &pandav1.PandaNetwork{}
			if err := c.Get(ctx, key, cur); err != nil {
				return err
			}
			if r := cur.Status.RetainedTopics; !slices.Equal(r, want) {
				return fmt.Errorf("status.retainedTopics %v, want %v", r, want)
			}
			return nil
		})
	}
	waitTopicsFile("retained topics in the topics Secret")
	if err := c.Delete(ctx, keep); err != nil {
		t.Fatal(err)
	}

	// Deleting the network lets the real garbage collector remove owned objects (the
	// topics Secret among them); the identity Secret and the retained topics Secret are not
	// owned and stay.
	cur := &pandav1.PandaNetwork{}
	if err := c.Get(ctx, key, cur); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, cur); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "garbage collection of owned objects", func() error {
		for _, o := range []client.Object{&appsv1.StatefulSet{}, &corev1.Secret{}} {
			name := "live"
			if _, ok := o.(*corev1.Secret); ok {
				name = "live-topics"
			}
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, o)
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still present (%v)", o, name, err)
			}
		}
		return nil
	})
	for _, name := range []string{"live-identity", "live-topics-retained"} {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}); err != nil {
			t.Fatalf("secret %s should survive network deletion: %v", name, err)
		}
	}
	// Issue 11 item 9: re-created under the same name, the network subscribes the retained
	// topic again, and its status shows it.
	eventually(t, 60*time.Second, "network gone", func() error {
		if err := c.Get(ctx, key, &pandav1.PandaNetwork{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	again := &pandav1.PandaNetwork{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"}, Spec: pn.Spec}
	if err := c.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	waitTopicsFile("retained topics after re-creating the network")
}

func zapLevel() zapcore.Level {
	if strings.TrimSpace(os.Getenv("PANDA_TEST_LOG")) != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}
