package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// topicsFixture is a PandaNetwork reconciler on a fake API with the TopicReplica index.
type topicsFixture struct {
	t  *testing.T
	c  client.Client
	r  *PandaNetworkReconciler
	pn *pandav1.PandaNetwork
}

func newTopicsFixture(t *testing.T, objs ...client.Object) *topicsFixture {
	t.Helper()
	pn := unitNetwork()
	pn.UID = "uid-1"
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(append([]client.Object{pn}, objs...)...).
		WithIndex(&pandav1.TopicReplica{}, networkRefIndex, func(o client.Object) []string {
			return []string{o.(*pandav1.TopicReplica).Spec.NetworkRef.Name}
		}).Build()
	return &topicsFixture{t: t, c: c, pn: pn, r: &PandaNetworkReconciler{Client: c, Scheme: testScheme, APIReader: c}}
}

// reconcile runs reconcileTopics and returns the topics file lines and status.retainedTopics.
func (f *topicsFixture) reconcile() ([]string, []string) {
	f.t.Helper()
	retained, err := f.r.reconcileTopics(context.Background(), f.pn)
	if err != nil {
		f.t.Fatalf("reconcileTopics: %v", err)
	}
	return ParseTopicsFile(string(f.secret(topicsSecretName(f.pn)).Data[TopicsKey])), retained
}

func (f *topicsFixture) secret(name string) *corev1.Secret {
	f.t.Helper()
	s := &corev1.Secret{}
	if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: f.pn.Namespace, Name: name}, s); err != nil {
		f.t.Fatalf("get secret %s: %v", name, err)
	}
	return s
}

func (f *topicsFixture) put(o client.Object) {
	f.t.Helper()
	err := f.c.Update(context.Background(), o)
	if apierrors.IsNotFound(err) {
		o.SetResourceVersion("")
		err = f.c.Create(context.Background(), o)
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *topicsFixture) del(o client.Object) {
	f.t.Helper()
	if err := f.c.Delete(context.Background(), o); err != nil {
		f.t.Fatal(err)
	}
}

func userSecret(name, key, data string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: map[string][]byte{key: []byte(data)}}
}

func fromSecret(tr *pandav1.TopicReplica, name, key string) *pandav1.TopicReplica {
	tr.Spec.TopicsFrom = &pandav1.TopicsSource{SecretKeyRef: pandav1.SecretKeyReference{Name: name, Key: key}}
	return tr
}

// TestTopicsFromSecretRendered: a TopicReplica's topicsFrom Secret reaches the network's
// topics Secret (owned, mounted) as hex ids with the line's own policy or else the
// replica's; nothing of it reaches a ConfigMap or status.retainedTopics in clear; an edit
// is picked up; a deleted Secret or an invalid file changes nothing.
func TestTopicsFromSecretRendered(t *testing.T) {
	idA := strings.Repeat("a1", 32)
	writer, other := strings.Repeat("c4", 32), strings.Repeat("d5", 32)
	idB := canonicalID("named-b")
	user := userSecret("feeds", "list", "# feeds of team x\n"+strings.ToUpper(idA)+"\nnamed-b [writers="+other+"]\n")
	tr := fromSecret(validTopicReplica("ns", "a", "net", "chat"), "feeds", "list")
	tr.Spec.Writers = []string{writer}
	f := newTopicsFixture(t, user, tr)

	lines, retained := f.reconcile()
	want := []string{"chat [writers=" + writer + "]", idA + " [writers=" + writer + "]", idB + " [writers=" + other + "]"}
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Fatalf("topics file %q, want %q", lines, want)
	}
	sec := f.secret(topicsSecretName(f.pn))
	if !metav1.IsControlledBy(sec, f.pn) || sec.Labels[networkLabel] != "net" {
		t.Fatalf("topics secret not owned/labelled: %+v", sec.ObjectMeta)
	}
	if strings.Contains(string(sec.Data[TopicsKey]), "named-b") {
		t.Fatalf("secret topic written by name")
	}
	wantRetained := []string{"chat", TopicFingerprint(idA), TopicFingerprint(idB)}
	slices.Sort(wantRetained)
	if !slices.Equal(retained, wantRetained) {
		t.Fatalf("status.retainedTopics %v, want %v", retained, wantRetained)
	}
	for _, r := range retained {
		if strings.Contains(r, idA) || strings.Contains(r, idB) {
			t.Fatalf("status.retainedTopics reveals a secret topic: %v", retained)
		}
	}
	var cms corev1.ConfigMapList
	if err := f.c.List(context.Background(), &cms); err != nil || len(cms.Items) != 0 {
		t.Fatalf("configmaps %v (%v): topics must not be in a ConfigMap", cms.Items, err)
	}

	// The Secret goes: the nodes keep what it gave (a mistake must not unsubscribe).
	f.del(user)
	if got, _ := f.reconcile(); !slices.Equal(got, want) {
		t.Fatalf("after the Secret was deleted: %q, want unchanged %q", got, want)
	}
	cur := &pandav1.TopicReplica{}
	if err := f.c.Get(context.Background(), client.ObjectKeyFromObject(tr), cur); err != nil {
		t.Fatal(err)
	}
	rr, err := resolveReplica(context.Background(), f.c, cur, nil)
	if err != nil || rr.SourceErr == nil || rr.SourceErr.Reason != pandav1.ReasonTopicsSecretNotFound {
		t.Fatalf("resolve without the Secret = %+v, %v", rr.SourceErr, err)
	}
	// An invalid file: nothing written, the reason names the line, not its content.
	f.put(userSecret("feeds", "list", idA+"\nthis line [bogus=1]\n"))
	if got, _ := f.reconcile(); !slices.Equal(got, want) {
		t.Fatalf("after an invalid edit: %q, want unchanged %q", got, want)
	}
	rr, _ = resolveReplica(context.Background(), f.c, cur, nil)
	if rr.SourceErr == nil || rr.SourceErr.Reason != pandav1.ReasonInvalidTopicsSecret ||
		!strings.Contains(rr.SourceErr.Message, "line 2") || strings.Contains(rr.SourceErr.Message, "this line") {
		t.Fatalf("invalid file error = %+v", rr.SourceErr)
	}
	// A missing key is reported as such.
	f.put(userSecret("feeds", "other", idA))
	if rr, _ = resolveReplica(context.Background(), f.c, cur, nil); rr.SourceErr == nil || !strings.Contains(rr.SourceErr.Message, `no key "list"`) {
		t.Fatalf("missing key error = %+v", rr.SourceErr)
	}
	// A valid edit is applied. The replica is now Delete-policy, so its topics leave the
	// retained set; the topic dropped from the Secret was retained while the replica was
	// Retain-policy: it stays subscribed (without a policy) and status.retainedTopics shows
	// its fingerprint.
	cur.Spec.ReclaimPolicy = pandav1.ReclaimDelete
	f.put(cur)
	f.put(userSecret("feeds", "list", idA+"\n"))
	lines, retained = f.reconcile()
	want = []string{"chat [writers=" + writer + "]", idA + " [writers=" + writer + "]", idB}
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Fatalf("after the edit: %q, want %q", lines, want)
	}
	if !slices.Equal(retained, []string{TopicFingerprint(idB)}) {
		t.Fatalf("retained after the edit: %v", retained)
	}
}

// TestRetainedTopicsSurviveRecreate (issue 11 item 9): retained topics live in a Secret the
// network does not own, so deleting the network (its owned objects garbage-collected) and
// re-creating it keeps them subscribed; status.retainedTopics shows them; the documented
// procedure (claim with a Delete-policy TopicReplica, delete it) removes one.
func TestRetainedTopicsSurviveRecreate(t *testing.T) {
	f := newTopicsFixture(t, validTopicReplica("ns", "keep", "net", "kept", "also"))
	f.reconcile()
	f.del(&pandav1.TopicReplica{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "keep"}})
	if lines, retained := f.reconcile(); !slices.Equal(lines, []string{"also", "kept"}) || !slices.Equal(retained, []string{"also", "kept"}) {
		t.Fatalf("after the Retain replica went: file %v, retained %v", lines, retained)
	}
	kept := f.secret(retainedSecretName(f.pn))
	if len(kept.OwnerReferences) != 0 || kept.Labels[networkLabel] != "net" {
		t.Fatalf("retained secret must be unowned and labelled: %+v", kept.ObjectMeta)
	}
	// Delete the network; garbage collection removes what it owns.
	f.del(f.secret(topicsSecretName(f.pn)))
	f.del(f.pn)
	f.pn = unitNetwork()
	f.pn.UID = "uid-2"
	f.pn.ResourceVersion = ""
	if err := f.c.Create(context.Background(), f.pn); err != nil {
		t.Fatal(err)
	}
	if lines, retained := f.reconcile(); !slices.Equal(lines, []string{"also", "kept"}) || !slices.Equal(retained, []string{"also", "kept"}) {
		t.Fatalf("re-created network: file %v, retained %v", lines, retained)
	}
	// Removal: a Delete-policy replica claims "kept" (still subscribed while it lives) ...
	drop := validTopicReplica("ns", "drop", "net", "kept")
	drop.Spec.ReclaimPolicy = pandav1.ReclaimDelete
	f.put(drop)
	if lines, retained := f.reconcile(); !slices.Equal(lines, []string{"also", "kept"}) || !slices.Equal(retained, []string{"also"}) {
		t.Fatalf("claimed by a Delete replica: file %v, retained %v", lines, retained)
	}
	// ... and deleting it unsubscribes.
	f.del(drop)
	if lines, retained := f.reconcile(); !slices.Equal(lines, []string{"also"}) || !slices.Equal(retained, []string{"also"}) {
		t.Fatalf("after deleting the Delete replica: file %v, retained %v", lines, retained)
	}
	// A foreign Secret under the retained name is refused, not adopted.
	f.del(f.secret(retainedSecretName(f.pn)))
	f.put(userSecret(retainedSecretName(f.pn), RetainedKey, "injected\n"))
	if _, err := f.r.reconcileTopics(context.Background(), f.pn); err == nil || !strings.Contains(err.Error(), "refusing to adopt") {
		t.Fatalf("foreign retained secret: %v", err)
	}
}

// TestLegacyTopicsConfigMapMigrated: the topics ConfigMap of earlier versions gives its
// retained list to the retained Secret and is deleted once every pod runs the template
// that mounts the Secret, not before.
func TestLegacyTopicsConfigMapMigrated(t *testing.T) {
	pn := unitNetwork()
	pn.UID = "uid-1"
	legacy := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "net-topics", Labels: commonLabels(pn),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: pandav1.GroupVersion.String(), Kind: "PandaNetwork",
				Name: "net", UID: "uid-1", Controller: ptr.To(true)}}},
		Data: map[string]string{TopicsKey: "old\n", RetainedKey: "old\n"},
	}
	f := newTopicsFixture(t, legacy)
	if lines, retained := f.reconcile(); !slices.Equal(lines, []string{"old"}) || !slices.Equal(retained, []string{"old"}) {
		t.Fatalf("migrated retained list: file %v, retained %v", lines, retained)
	}
	sts := BuildStatefulSet(f.pn, "img")
	sts.Generation = 2
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 1, CurrentRevision: "r1", UpdateRevision: "r2"}
	ctx := context.Background()
	if err := f.r.removeLegacyTopicsConfigMap(ctx, f.pn, sts); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Get(ctx, client.ObjectKeyFromObject(legacy), &corev1.ConfigMap{}); err != nil {
		t.Fatalf("deleted while pods of the old template may mount it: %v", err)
	}
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 3, CurrentRevision: "r2", UpdateRevision: "r2"}
	if err := f.r.removeLegacyTopicsConfigMap(ctx, f.pn, sts); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Get(ctx, client.ObjectKeyFromObject(legacy), &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Fatalf("legacy ConfigMap still there after the rollout: %v", err)
	}
	// The retained list outlived the ConfigMap.
	if lines, retained := f.reconcile(); !slices.Equal(lines, []string{"old"}) || !slices.Equal(retained, []string{"old"}) {
		t.Fatalf("after migration: file %v, retained %v", lines, retained)
	}
}

// TestPodsMountTopicsSecret: the topics volume is the Secret, only its topics key, 0440.
func TestPodsMountTopicsSecret(t *testing.T) {
	for _, v := range BuildPodTemplate(unitNetwork(), "img").Spec.Volumes {
		if v.Name != "topics" {
			continue
		}
		if v.Secret == nil || v.Secret.SecretName != "net-topics" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != TopicsKey ||
			*v.Secret.DefaultMode != 0o440 || v.ConfigMap != nil {
			t.Fatalf("topics volume %+v", v.VolumeSource)
		}
		return
	}
	t.Fatal("no topics volume")
}

func TestParseSecretTopics(t *testing.T) {
	k := strings.Repeat("ab", 32)
	got, err := ParseSecretTopics("\n# c\nchat [author-ops=5   writers=" + k + "]\nchat [author-ops=5 writers=" + k + "]\n" + strings.Repeat("EF", 32) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []ReplicaTopic{
		{Name: canonicalID("chat"), ID: canonicalID("chat"), Policy: "author-ops=5 writers=" + k, Secret: true},
		{Name: strings.Repeat("ef", 32), ID: strings.Repeat("ef", 32), Secret: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v", got)
	}
	for _, bad := range []string{"chat [writers=xyz]", "a\na [author-ops=1]", "t [max-age=0s]"} {
		if _, err := ParseSecretTopics(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if fp := TopicFingerprint(strings.Repeat("ef", 32)); !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+16 {
		t.Errorf("fingerprint %q", fp)
	}
}
