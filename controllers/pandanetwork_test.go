package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

func getNetwork(t *testing.T, ns, name string) *pandav1.PandaNetwork {
	t.Helper()
	pn := &pandav1.PandaNetwork{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, pn); err != nil {
		t.Fatalf("get pandanetwork: %v", err)
	}
	return pn
}

func waitStatefulSet(t *testing.T, ns, name string, check func(*appsv1.StatefulSet) error) *appsv1.StatefulSet {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	eventually(t, "statefulset "+name, func() error {
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, sts); err != nil {
			return err
		}
		if check != nil {
			return check(sts)
		}
		return nil
	})
	return sts
}

func peerIDsFromSecret(t *testing.T, ns, network string, n int) []string {
	t.Helper()
	sec := &corev1.Secret{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: network + "-identity"}, sec); err != nil {
		t.Fatalf("get identity secret: %v", err)
	}
	var ids []string
	for i := 0; i < n; i++ {
		id := string(sec.Data[fmt.Sprintf("%s-%d.peerid", network, i)])
		seed := string(sec.Data[fmt.Sprintf("%s-%d.key", network, i)])
		derived, err := peerIDFromSeedHex(seed)
		if err != nil || derived != id {
			t.Fatalf("ordinal %d: peerid %q does not match key (%q, %v)", i, id, derived, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// updateNetwork applies mutate to the latest version, retrying on write conflicts with
// the controller's status updates.
func updateNetwork(t *testing.T, ns, name string, mutate func(*pandav1.PandaNetwork)) {
	t.Helper()
	eventually(t, "update pandanetwork "+name, func() error {
		cur := getNetwork(t, ns, name)
		mutate(cur)
		err := k8sClient.Update(context.Background(), cur)
		if err != nil && !apierrors.IsConflict(err) {
			t.Fatalf("update pandanetwork %s: %v", name, err)
		}
		return err
	})
}

// simulateStatefulSetStatus plays the StatefulSet controller (envtest runs none).
func simulateStatefulSetStatus(t *testing.T, sts *appsv1.StatefulSet, ready int32, current, update string) {
	t.Helper()
	eventually(t, "update statefulset status", func() error {
		cur := &appsv1.StatefulSet{}
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(sts), cur); err != nil {
			return err
		}
		cur.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: cur.Generation, Replicas: *cur.Spec.Replicas, ReadyReplicas: ready,
			AvailableReplicas: ready, CurrentReplicas: ready, UpdatedReplicas: ready,
			CurrentRevision: current, UpdateRevision: update,
		}
		return k8sClient.Status().Update(context.Background(), cur)
	})
}

func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	return meta.FindStatusCondition(conds, typ)
}

// TestPandaNetworkLifecycle covers create (all owned objects, ownership, args), status
// conditions with observedGeneration, scale through the scale subresource, image update
// and the in-cluster bootstrap list.
func TestPandaNetworkLifecycle(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "alpha")
	pn.Spec.BootstrapPeers = []string{"/dns4/boot.example.org/tcp/4001/p2p/" + testPeerID}
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	sts := waitStatefulSet(t, ns, "alpha", nil)

	// --- owned objects and ownership ---
	cur := getNetwork(t, ns, "alpha")
	owned := []client.Object{
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "alpha"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "alpha-headless"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "alpha-0"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "alpha-1"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "alpha-2"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alpha-admin-token"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alpha-topics"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alpha-config"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "alpha"}},
	}
	for _, o := range owned {
		eventually(t, fmt.Sprintf("%T %s owned", o, o.GetName()), func() error {
			if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: o.GetName()}, o); err != nil {
				return err
			}
			ref := metav1.GetControllerOf(o)
			if ref == nil || ref.UID != cur.UID || ref.Kind != "PandaNetwork" {
				return fmt.Errorf("controller ref = %+v", ref)
			}
			return nil
		})
	}
	identity := &corev1.Secret{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha-identity"}, identity); err != nil {
		t.Fatal(err)
	}
	if len(identity.OwnerReferences) != 0 {
		t.Errorf("identity secret must not be owned (it must survive deletion), has %v", identity.OwnerReferences)
	}
	kept := &corev1.Secret{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha-topics-retained"}, kept); err != nil {
		t.Fatal(err)
	}
	if len(kept.OwnerReferences) != 0 || kept.Labels[networkLabel] != "alpha" {
		t.Errorf("retained topics secret must be unowned and labelled: %+v", kept.ObjectMeta)
	}
	ids := peerIDsFromSecret(t, ns, "alpha", 3)

	// --- StatefulSet shape ---
	if *sts.Spec.Replicas != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("replicas/policy = %d/%s", *sts.Spec.Replicas, sts.Spec.PodManagementPolicy)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--network-id=test-net", "--key-file=/etc/panda/identity/$(POD_NAME).key",
		"--topics-file=/etc/panda/topics/topics", "--admin-listen=:7070", "--mdns=false", "--public",
		"--relay-service=true", "--log-format=json", "--config=/etc/panda/config/$(POD_NAME).yaml"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if c.Image != testImage {
		t.Errorf("image = %q, want operator default %q", c.Image, testImage)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "1Gi" {
		t.Errorf("volumeClaimTemplates = %+v", sts.Spec.VolumeClaimTemplates)
	}
	cfg := &corev1.ConfigMap{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha-config"}, cfg); err != nil {
		t.Fatal(err)
	}
	y := cfg.Data["alpha-0.yaml"]
	if !strings.Contains(y, "/dns4/alpha-1."+ns+".svc/tcp/4001/p2p/"+ids[1]) || strings.Contains(y, ids[0]) ||
		!strings.Contains(y, testPeerID) {
		t.Errorf("alpha-0 config should list the other ordinals and external peers only:\n%s", y)
	}

	// --- status before pods are ready ---
	eventually(t, "initial status", func() error {
		cur = getNetwork(t, ns, "alpha")
		r := condition(cur.Status.Conditions, pandav1.ConditionReady)
		if r == nil || r.Status != metav1.ConditionFalse || r.ObservedGeneration != cur.Generation {
			return fmt.Errorf("ready = %+v", r)
		}
		if cur.Status.ObservedGeneration != cur.Generation || len(cur.Status.Nodes) != 3 || cur.Status.Selector == "" {
			return fmt.Errorf("status = %+v", cur.Status)
		}
		return nil
	})
	wantBoot := fmt.Sprintf("/dns4/alpha-0.%s.svc/tcp/4001/p2p/%s", ns, ids[0])
	if !slices.Contains(cur.Status.BootstrapPeers, wantBoot) {
		t.Errorf("bootstrapPeers %v lack %s", cur.Status.BootstrapPeers, wantBoot)
	}
	if cur.Status.Nodes[1].PeerID != ids[1] {
		t.Errorf("nodes[1].peerID = %q, want %q", cur.Status.Nodes[1].PeerID, ids[1])
	}

	// --- Ready once the StatefulSet reports all pods ready on one revision ---
	simulateStatefulSetStatus(t, sts, 3, "rev1", "rev1")
	eventually(t, "Ready=True", func() error {
		cur = getNetwork(t, ns, "alpha")
		r := condition(cur.Status.Conditions, pandav1.ConditionReady)
		p := condition(cur.Status.Conditions, pandav1.ConditionProgressing)
		if r == nil || r.Status != metav1.ConditionTrue || p == nil || p.Status != metav1.ConditionFalse {
			return fmt.Errorf("conditions = %+v", cur.Status.Conditions)
		}
		if cur.Status.ReadyReplicas != 3 {
			return fmt.Errorf("readyReplicas = %d", cur.Status.ReadyReplicas)
		}
		return nil
	})
	// A rollout in progress (revisions differ) is Progressing and not Ready.
	simulateStatefulSetStatus(t, sts, 3, "rev1", "rev2")
	eventually(t, "Progressing=True during rollout", func() error {
		cur = getNetwork(t, ns, "alpha")
		p := condition(cur.Status.Conditions, pandav1.ConditionProgressing)
		r := condition(cur.Status.Conditions, pandav1.ConditionReady)
		if p == nil || p.Status != metav1.ConditionTrue || r.Status != metav1.ConditionFalse || r.Reason != ReasonRolloutInProgress {
			return fmt.Errorf("conditions = %+v", cur.Status.Conditions)
		}
		return nil
	})

	// --- scale up through the scale subresource ---
	scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 5}}
	if err := k8sClient.SubResource("scale").Update(ctx, cur, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scale: %v", err)
	}
	waitStatefulSet(t, ns, "alpha", func(s *appsv1.StatefulSet) error {
		if *s.Spec.Replicas != 5 {
			return fmt.Errorf("replicas = %d", *s.Spec.Replicas)
		}
		return nil
	})
	eventually(t, "per-node services for 5", func() error {
		return k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha-4"}, &corev1.Service{})
	})
	ids5 := peerIDsFromSecret(t, ns, "alpha", 5)
	if !slices.Equal(ids5[:3], ids) {
		t.Errorf("scale-up rotated existing keys: %v -> %v", ids, ids5[:3])
	}
	// Scale down: surplus per-node Services go, keys stay for a later scale-up.
	updateNetwork(t, ns, "alpha", func(p *pandav1.PandaNetwork) { p.Spec.Replicas = ptr.To(int32(2)) })
	eventually(t, "surplus services deleted", func() error {
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha-2"}, &corev1.Service{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("alpha-2 service still there (%v)", err)
		}
		return nil
	})
	if got := peerIDsFromSecret(t, ns, "alpha", 5); !slices.Equal(got, ids5) {
		t.Errorf("scale-down changed keys")
	}

	// --- image change updates the pod template ---
	updateNetwork(t, ns, "alpha", func(p *pandav1.PandaNetwork) { p.Spec.Image = "example.org/panda-node:v2" })
	waitStatefulSet(t, ns, "alpha", func(s *appsv1.StatefulSet) error {
		if img := s.Spec.Template.Spec.Containers[0].Image; img != "example.org/panda-node:v2" {
			return fmt.Errorf("image = %s", img)
		}
		return nil
	})
	eventually(t, "observedGeneration follows", func() error {
		cur = getNetwork(t, ns, "alpha")
		if cur.Status.ObservedGeneration != cur.Generation {
			return fmt.Errorf("observedGeneration %d != generation %d", cur.Status.ObservedGeneration, cur.Generation)
		}
		for _, c := range cur.Status.Conditions {
			if c.ObservedGeneration != cur.Generation {
				return fmt.Errorf("condition %s observedGeneration %d", c.Type, c.ObservedGeneration)
			}
		}
		return nil
	})
}

// deleteOwnedBy plays the garbage collector (envtest runs none).
func deleteOwnedBy(t *testing.T, ns string, owner types.UID) {
	t.Helper()
	ctx := context.Background()
	lists := []client.ObjectList{&appsv1.StatefulSetList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{},
		&corev1.SecretList{}, &policyv1.PodDisruptionBudgetList{}}
	for _, l := range lists {
		if err := k8sClient.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		items, _ := meta.ExtractList(l)
		for _, it := range items {
			o := it.(client.Object)
			for _, ref := range o.GetOwnerReferences() {
				if ref.UID == owner {
					if err := k8sClient.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// TestIdentityStability: deleting the StatefulSet, or the whole PandaNetwork, and
// recreating keeps the peer ids, because the identity Secret is not owned.
func TestIdentityStability(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "stable")
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	sts := waitStatefulSet(t, ns, "stable", nil)
	ids := peerIDsFromSecret(t, ns, "stable", 3)
	statusIDs := func() error {
		cur := getNetwork(t, ns, "stable")
		if len(cur.Status.Nodes) != 3 {
			return fmt.Errorf("nodes = %v", cur.Status.Nodes)
		}
		for i, n := range cur.Status.Nodes {
			if n.PeerID != ids[i] {
				return fmt.Errorf("node %d peer id %s, want %s", i, n.PeerID, ids[i])
			}
		}
		return nil
	}
	eventually(t, "status peer ids", statusIDs)

	// Delete the StatefulSet: it comes back, keys unchanged.
	if err := k8sClient.Delete(ctx, sts); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "stable", func(s *appsv1.StatefulSet) error {
		if s.UID == sts.UID {
			return fmt.Errorf("not recreated yet")
		}
		return nil
	})
	if got := peerIDsFromSecret(t, ns, "stable", 3); !slices.Equal(got, ids) {
		t.Fatalf("peer ids changed after statefulset deletion: %v -> %v", ids, got)
	}

	// Delete the whole network (and its owned objects, as the GC would): reinstall keeps ids.
	cur := getNetwork(t, ns, "stable")
	if err := k8sClient.Delete(ctx, cur); err != nil {
		t.Fatal(err)
	}
	eventually(t, "network gone", func() error {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cur), &pandav1.PandaNetwork{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	deleteOwnedBy(t, ns, cur.UID)
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "stable-identity"}, &corev1.Secret{}); err != nil {
		t.Fatalf("identity secret did not survive network deletion: %v", err)
	}
	again := validNetwork(ns, "stable")
	if err := k8sClient.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "stable", func(s *appsv1.StatefulSet) error {
		if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != getNetwork(t, ns, "stable").UID {
			return fmt.Errorf("not owned by the new network")
		}
		return nil
	})
	eventually(t, "status peer ids after reinstall", statusIDs)
}

// TestTopicChangesDoNotRollPods: adding topics rewrites only the ConfigMap; the pod
// template (hence the StatefulSet revision) stays identical.
func TestTopicChangesDoNotRollPods(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "quiet")
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	before := waitStatefulSet(t, ns, "quiet", nil)
	if err := k8sClient.Create(ctx, validTopicReplica(ns, "chat", "quiet", "chat", "news")); err != nil {
		t.Fatal(err)
	}
	waitTopics(t, ns, "quiet", []string{"chat", "news"})
	if err := k8sClient.Create(ctx, validTopicReplica(ns, "more", "quiet", "more")); err != nil {
		t.Fatal(err)
	}
	waitTopics(t, ns, "quiet", []string{"chat", "more", "news"})
	after := waitStatefulSet(t, ns, "quiet", nil)
	if after.Generation != before.Generation || !equality.Semantic.DeepEqual(after.Spec.Template, before.Spec.Template) {
		t.Fatalf("topic change touched the pod template (generation %d -> %d)", before.Generation, after.Generation)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("topic change wrote the StatefulSet (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}
}

func waitTopics(t *testing.T, ns, network string, want []string) {
	t.Helper()
	eventually(t, "topics secret", func() error {
		sec := &corev1.Secret{}
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: network + "-topics"}, sec); err != nil {
			return err
		}
		if got := ParseTopicsFile(string(sec.Data[TopicsKey])); !slices.Equal(got, want) {
			return fmt.Errorf("topics = %v, want %v", got, want)
		}
		return nil
	})
}
