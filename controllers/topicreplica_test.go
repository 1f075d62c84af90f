package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

func getTR(t *testing.T, ns, name string) *pandav1.TopicReplica {
	t.Helper()
	tr := &pandav1.TopicReplica{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, tr); err != nil {
		t.Fatalf("get topicreplica: %v", err)
	}
	return tr
}

// TestTopicReplicaStatus: NetworkNotFound until the network exists, then per-topic node
// lists with operation counts from the (fake) node admin API, Ready when all nodes hold
// all topics.
func TestTopicReplicaStatus(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	tr := validTopicReplica(ns, "feed", "beta", "chat", "news")
	if err := k8sClient.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NetworkNotFound", func() error {
		cur := getTR(t, ns, "feed")
		c := condition(cur.Status.Conditions, pandav1.ConditionReady)
		if c == nil || c.Reason != pandav1.ReasonNetworkNotFound || c.ObservedGeneration != cur.Generation {
			return fmt.Errorf("ready = %+v", c)
		}
		return nil
	})

	chat, news := canonicalID("chat"), canonicalID("news")
	fakeNodes.set(ns, "beta-0", []NodeTopicStatus{{Topic: chat, Operations: 5}, {Topic: news, Operations: 2}})
	fakeNodes.set(ns, "beta-1", []NodeTopicStatus{{Topic: chat, Operations: 4}})
	pn := validNetwork(ns, "beta")
	pn.Spec.Replicas = ptr.To(int32(2))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "partial status", func() error {
		cur := getTR(t, ns, "feed")
		c := condition(cur.Status.Conditions, pandav1.ConditionReady)
		if c == nil || c.Reason != pandav1.ReasonProgressing || len(cur.Status.Topics) != 2 {
			return fmt.Errorf("status = %+v", cur.Status)
		}
		// beta-1 reports no logs, so it is compared by count: one operation behind.
		want := []pandav1.TopicNodeStatus{{Node: "beta-0", Operations: 5}, {Node: "beta-1", Operations: 4, Behind: 1}}
		if cur.Status.Topics[0].ID != chat || !equality.Semantic.DeepEqual(cur.Status.Topics[0].Nodes, want) {
			return fmt.Errorf("chat = %+v", cur.Status.Topics[0])
		}
		return nil
	})
	fakeNodes.set(ns, "beta-1", []NodeTopicStatus{{Topic: chat, Operations: 5}, {Topic: news, Operations: 2}})
	eventually(t, "Ready after all nodes report", func() error {
		cur := getTR(t, ns, "feed")
		c := condition(cur.Status.Conditions, pandav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != pandav1.ReasonAllNodesSynced {
			return fmt.Errorf("ready = %+v", c)
		}
		if n := cur.Status.Topics[1].Nodes; len(n) != 2 || n[1].Operations != 2 {
			return fmt.Errorf("news = %+v", cur.Status.Topics[1])
		}
		return nil
	})
}

// TestReclaimPolicy: Retain keeps the topic subscribed after deletion (no finalizer);
// Delete has a finalizer and deletion completes only once the topic left the file.
func TestReclaimPolicy(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "gamma")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	keep := validTopicReplica(ns, "keep", "gamma", "kept")
	drop := validTopicReplica(ns, "drop", "gamma", "dropped")
	drop.Spec.ReclaimPolicy = pandav1.ReclaimDelete
	for _, tr := range []*pandav1.TopicReplica{keep, drop} {
		if err := k8sClient.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	waitTopics(t, ns, "gamma", []string{"dropped", "kept"})
	eventually(t, "finalizer on Delete policy only", func() error {
		if !controllerutil.ContainsFinalizer(getTR(t, ns, "drop"), TopicCleanupFinalizer) {
			return fmt.Errorf("drop has no finalizer")
		}
		if controllerutil.ContainsFinalizer(getTR(t, ns, "keep"), TopicCleanupFinalizer) {
			return fmt.Errorf("keep has a finalizer")
		}
		return nil
	})
	for _, tr := range []*pandav1.TopicReplica{keep, drop} {
		if err := k8sClient.Delete(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"keep", "drop"} {
		eventually(t, name+" gone", func() error {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pandav1.TopicReplica{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
	}
	waitTopics(t, ns, "gamma", []string{"kept"})
}

// TestReconcileLatency100TopicReplicas measures (prints, never asserts) the time from
// creating 100 TopicReplicas until the network's topics Secret lists all their topics and
// every one reports status.observedGeneration.
func TestReconcileLatency100TopicReplicas(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "bench")
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, ns, "bench", nil)
	const n = 100
	var want []string
	start := time.Now()
	for i := 0; i < n; i++ {
		topic := fmt.Sprintf("topic-%03d", i)
		want = append(want, topic)
		if err := k8sClient.Create(ctx, validTopicReplica(ns, topic, "bench", topic)); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Since(start)
	waitTopics(t, ns, "bench", want)
	configMapDone := time.Since(start)
	eventually(t, "all observedGeneration", func() error {
		var list pandav1.TopicReplicaList
		if err := k8sClient.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, tr := range list.Items {
			if tr.Status.ObservedGeneration != tr.Generation {
				return fmt.Errorf("%s not observed", tr.Name)
			}
		}
		return nil
	})
	all := time.Since(start)
	msg := fmt.Sprintf("reconcile latency, %d TopicReplicas: created in %v, topics Secret complete after %v, all observedGeneration after %v",
		n, created.Round(time.Millisecond), configMapDone.Round(time.Millisecond), all.Round(time.Millisecond))
	t.Log(msg)
	fmt.Println("BENCH", msg)
	// Stop the periodic polls of these 100 objects for the rest of the package run.
	if err := k8sClient.DeleteAllOf(ctx, &pandav1.TopicReplica{}, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
}

// TestTopicReplicaPolicyReachesTopicsFile: a TopicReplica's writers, quota and retention are
// rendered into its topics' lines of the network's topics file (which the nodes reload), and
// a policy change rewrites them.
func TestTopicReplicaPolicyReachesTopicsFile(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	pn := validNetwork(ns, "guarded")
	pn.Spec.Replicas = ptr.To(int32(0))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("c4", 32)
	tr := withPolicy(validTopicReplica(ns, "announcements", "guarded", "announcements"), func(s *pandav1.TopicReplicaSpec) {
		s.Writers = []string{key}
		s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(10))}}
	})
	if err := k8sClient.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Create(ctx, validTopicReplica(ns, "general", "guarded", "general")); err != nil {
		t.Fatal(err)
	}
	waitTopics(t, ns, "guarded", []string{"announcements [writers=" + key + " author-ops=10]", "general"})
	eventually(t, "retention added", func() error {
		cur := getTR(t, ns, "announcements")
		cur.Spec.Retention = &pandav1.TopicRetention{MaxAge: &metav1.Duration{Duration: 48 * time.Hour}}
		return k8sClient.Update(ctx, cur)
	})
	waitTopics(t, ns, "guarded", []string{"announcements [writers=" + key + " author-ops=10 max-age=48h0m0s]", "general"})
}

// nodePolicy builds a node's policy report with one author's usage.
func nodePolicy(author string, ops int64) *NodeTopicPolicy {
	p := &NodeTopicPolicy{Refused: map[string]int64{"over_quota": 1}}
	p.Usage.Ops = ops
	p.Authors = append(p.Authors, struct {
		Author string `json:"author"`
		Ops    int64  `json:"ops"`
		Bytes  int64  `json:"bytes"`
	}{Author: author, Ops: ops})
	return p
}

func TestQuotaCondition(t *testing.T) {
	tr := withPolicy(validTopicReplica("ns", "q", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
		s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(10))}}
	})
	chat := canonicalID("chat")
	under := []nodeReport{{pod: "net-0", topics: []NodeTopicStatus{{Topic: chat, Policy: nodePolicy("aa", 8)}}}}
	if c := QuotaCondition(tr, under); c.Status != metav1.ConditionFalse {
		t.Fatalf("80%%: %+v", c)
	}
	at := []nodeReport{{pod: "net-0", topics: []NodeTopicStatus{{Topic: chat, Policy: nodePolicy("aa", 9)}}}}
	c := QuotaCondition(tr, at)
	if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "net-0: chat author aa stores 9 of 10 operations") {
		t.Fatalf("90%%: %+v", c)
	}
}

// TestQuotaNearlyFullEvent: when a node reports 90% of a quota, the TopicReplica's
// QuotaNearlyFull condition turns True, a Warning event is recorded, and the node's
// refusals appear in the status.
func TestQuotaNearlyFullEvent(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	chat := canonicalID("chat")
	fakeNodes.set(ns, "quota-0", []NodeTopicStatus{{Topic: chat, Operations: 9, Policy: nodePolicy(strings.Repeat("ab", 32), 9)}})
	pn := validNetwork(ns, "quota")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	tr := withPolicy(validTopicReplica(ns, "chat", "quota", "chat"), func(s *pandav1.TopicReplicaSpec) {
		s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(10))}}
	})
	if err := k8sClient.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "QuotaNearlyFull condition and refusals in status", func() error {
		cur := getTR(t, ns, "chat")
		c := condition(cur.Status.Conditions, pandav1.ConditionQuotaNearlyFull)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("condition = %+v", c)
		}
		if len(cur.Status.Topics) != 1 || len(cur.Status.Topics[0].Nodes) != 1 || cur.Status.Topics[0].Nodes[0].Refused["over_quota"] != 1 {
			return fmt.Errorf("topics = %+v", cur.Status.Topics)
		}
		return nil
	})
	eventually(t, "QuotaNearlyFull event", func() error {
		evs := &eventsv1.EventList{}
		if err := k8sClient.List(ctx, evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == pandav1.ConditionQuotaNearlyFull && e.Regarding.Name == "chat" && e.Type == "Warning" {
				return nil
			}
		}
		return fmt.Errorf("no QuotaNearlyFull event among %d events", len(evs.Items))
	})
}

// TestTopicsFromSecretEnvtest: a TopicReplica that takes its topics from a Secret gets them
// into the network's topics Secret; its status shows the Secret and a fingerprint, never
// the id; an edit of the Secret reaches the topics file within a poll; a deleted Secret
// gives Ready=False TopicsSecretNotFound while the nodes keep the topics.
func TestTopicsFromSecretEnvtest(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	idA, idB := strings.Repeat("a7", 32), strings.Repeat("b8", 32)
	fakeNodes.set(ns, "vault-0", []NodeTopicStatus{{Topic: idA, Operations: 3}})
	pn := validNetwork(ns, "vault")
	pn.Spec.Replicas = ptr.To(int32(1))
	user := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "feeds"}, StringData: map[string]string{"topics": idA + "\n"}}
	tr := fromSecret(validTopicReplica(ns, "private", "vault"), "feeds", "topics")
	for _, o := range []client.Object{pn, user, tr} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitTopics(t, ns, "vault", []string{idA})
	eventually(t, "status by fingerprint, Ready", func() error {
		cur := getTR(t, ns, "private")
		c := condition(cur.Status.Conditions, pandav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ready = %+v", c)
		}
		want := []pandav1.TopicStatus{{Topic: "secret:feeds/topics", ID: TopicFingerprint(idA),
			Nodes: []pandav1.TopicNodeStatus{{Node: "vault-0", Operations: 3}}}}
		if !equality.Semantic.DeepEqual(cur.Status.Topics, want) {
			return fmt.Errorf("topics = %+v", cur.Status.Topics)
		}
		return nil
	})
	raw, err := json.Marshal(getTR(t, ns, "private"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), idA) {
		t.Fatalf("the TopicReplica reveals the secret topic id: %s", raw)
	}

	// An edit of the Secret is picked up at the next poll.
	eventually(t, "edit secret", func() error {
		cur := &corev1.Secret{}
		if err := k8sClient.Get(ctx, keyOf(ns, "feeds"), cur); err != nil {
			return err
		}
		cur.Data["topics"] = []byte(idA + "\n" + idB + "\n")
		return k8sClient.Update(ctx, cur)
	})
	waitTopics(t, ns, "vault", []string{idA, idB})

	// The Secret goes: Ready=False with the reason; the file keeps both topics.
	if err := k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "feeds"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "TopicsSecretNotFound", func() error {
		c := condition(getTR(t, ns, "private").Status.Conditions, pandav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != pandav1.ReasonTopicsSecretNotFound ||
			!strings.Contains(c.Message, `Secret "feeds" not found`) || !strings.Contains(c.Message, "keep the 2 topics") {
			return fmt.Errorf("ready = %+v", c)
		}
		return nil
	})
	// A network reconcile after the deletion (proved by its observedGeneration) left the file.
	updateNetwork(t, ns, "vault", func(p *pandav1.PandaNetwork) { p.Spec.PodAnnotations = map[string]string{"touch": "1"} })
	eventually(t, "network reconciled after the Secret went", func() error {
		cur := getNetwork(t, ns, "vault")
		if cur.Status.ObservedGeneration != cur.Generation {
			return fmt.Errorf("observed %d of %d", cur.Status.ObservedGeneration, cur.Generation)
		}
		return nil
	})
	waitTopics(t, ns, "vault", []string{idA, idB})
	if r := getNetwork(t, ns, "vault").Status.RetainedTopics; len(r) != 2 || strings.Contains(strings.Join(r, ","), idA) {
		t.Fatalf("status.retainedTopics %v: want two fingerprints", r)
	}
}
