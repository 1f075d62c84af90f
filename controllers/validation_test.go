package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

func validNetwork(ns, name string) *pandav1.PandaNetwork {
	return &pandav1.PandaNetwork{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       pandav1.PandaNetworkSpec{NetworkID: "test-net"},
	}
}

func validTopicReplica(ns, name, network string, topics ...string) *pandav1.TopicReplica {
	return &pandav1.TopicReplica{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       pandav1.TopicReplicaSpec{NetworkRef: pandav1.NetworkReference{Name: network}, Topics: topics},
	}
}

func withPolicy(tr *pandav1.TopicReplica, set func(*pandav1.TopicReplicaSpec)) *pandav1.TopicReplica {
	set(&tr.Spec)
	return tr
}

func expectInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want rejection containing %q", want)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want Invalid error, got %v", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err.Error(), want)
	}
}

// TestValidationRejectsBadSpecs: every CEL/OpenAPI rule rejects its bad value at
// admission with a message naming the problem.
func TestValidationRejectsBadSpecs(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	ctx := context.Background()
	q := resource.MustParse("32Mi")
	networkCases := []struct {
		name   string
		mutate func(*pandav1.PandaNetwork)
		want   string
	}{
		{"bad networkID", func(p *pandav1.PandaNetwork) { p.Spec.NetworkID = "bad id!" }, "spec.networkID"},
		{"empty networkID", func(p *pandav1.PandaNetwork) { p.Spec.NetworkID = "" }, "spec.networkID"},
		{"65 hex networkID", func(p *pandav1.PandaNetwork) { p.Spec.NetworkID = strings.Repeat("a", 65) }, "spec.networkID"},
		{"negative replicas", func(p *pandav1.PandaNetwork) { p.Spec.Replicas = ptr.To(int32(-1)) }, "spec.replicas"},
		{"bootstrap peer without /p2p/", func(p *pandav1.PandaNetwork) {
			p.Spec.BootstrapPeers = []string{"/ip4/203.0.113.1/tcp/4001"}
		}, "bootstrapPeers entries must be multiaddrs that contain /p2p/<peer id>"},
		{"bootstrap peer not a multiaddr", func(p *pandav1.PandaNetwork) {
			p.Spec.BootstrapPeers = []string{"example.org:4001/p2p/12D3KooW"}
		}, "bootstrapPeers entries must be multiaddrs"},
		{"storage too small", func(p *pandav1.PandaNetwork) { p.Spec.Storage.Size = &q }, "storage.size must be at least 64Mi"},
		{"unknown exposure type", func(p *pandav1.PandaNetwork) { p.Spec.Exposure.Type = "Ingress" }, "spec.exposure.type"},
		{"port out of range", func(p *pandav1.PandaNetwork) { p.Spec.Exposure.Port = 70000 }, "spec.exposure.port"},
		{"public address with /p2p/", func(p *pandav1.PandaNetwork) {
			p.Spec.Exposure.PublicAddresses = []pandav1.PublicAddresses{{Ordinal: 0, Addresses: []string{"/ip4/1.2.3.4/tcp/1/p2p/x"}}}
		}, "publicAddresses entries must be multiaddrs"},
		{"bad log format", func(p *pandav1.PandaNetwork) { p.Spec.LogFormat = "xml" }, "spec.logFormat"},
	}
	for i, tc := range networkCases {
		t.Run(tc.name, func(t *testing.T) {
			pn := validNetwork(ns, "bad"+string(rune('a'+i)))
			tc.mutate(pn)
			expectInvalid(t, k8sClient.Create(ctx, pn), tc.want)
		})
	}

	trCases := []struct {
		name string
		tr   *pandav1.TopicReplica
		want string
	}{
		{"bad topic id", validTopicReplica(ns, "t1", "net", "chat", "no spaces"), "spec.topics[1]"},
		{"topic starting with #", validTopicReplica(ns, "t2", "net", "#comment"), "spec.topics[0]"},
		{"duplicate topics", validTopicReplica(ns, "t3", "net", "chat", "chat"), "Duplicate value"},
		{"neither topics nor topicsFrom", validTopicReplica(ns, "t4", "net"), "set topics, topicsFrom or both"},
		{"empty networkRef", validTopicReplica(ns, "t5", "", "chat"), "spec.networkRef.name"},
		{"bad reclaimPolicy", func() *pandav1.TopicReplica {
			tr := validTopicReplica(ns, "t6", "net", "chat")
			tr.Spec.ReclaimPolicy = "Forget"
			return tr
		}(), "spec.reclaimPolicy"},
		{"writer not 64 hex", withPolicy(validTopicReplica(ns, "t7", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Writers = []string{strings.Repeat("ab", 32), "not-a-key"}
		}), "writers must be public keys of 64 lowercase hex characters"},
		{"writer in upper case", withPolicy(validTopicReplica(ns, "t8", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Writers = []string{strings.Repeat("AB", 32)}
		}), "writers must be public keys"},
		{"zero operations", withPolicy(validTopicReplica(ns, "t9", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(0))}}
		}), "spec.quota.perAuthor.operations"},
		{"zero bytes", withPolicy(validTopicReplica(ns, "t10", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Quota = &pandav1.TopicQuota{PerTopic: &pandav1.TopicLimit{Bytes: ptr.To(resource.MustParse("0"))}}
		}), "bytes must be positive"},
		{"negative bytes", withPolicy(validTopicReplica(ns, "t11", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Quota = &pandav1.TopicQuota{PerTopic: &pandav1.TopicLimit{Bytes: ptr.To(resource.MustParse("-1Mi"))}}
		}), "bytes must be positive"},
		{"empty limit", withPolicy(validTopicReplica(ns, "t12", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{}}
		}), "set operations, bytes or both"},
		{"empty quota", withPolicy(validTopicReplica(ns, "t13", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Quota = &pandav1.TopicQuota{}
		}), "set perAuthor, perTopic or both"},
		{"negative max age", withPolicy(validTopicReplica(ns, "t14", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Retention = &pandav1.TopicRetention{MaxAge: &metav1.Duration{Duration: -time.Hour}}
		}), "maxAge must be positive"},
		{"zero retention bytes", withPolicy(validTopicReplica(ns, "t15", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Retention = &pandav1.TopicRetention{MaxBytes: ptr.To(resource.MustParse("0"))}
		}), "maxBytes must be positive"},
		{"empty retention", withPolicy(validTopicReplica(ns, "t16", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
			s.Retention = &pandav1.TopicRetention{}
		}), "set maxAge, maxBytes or both"},
		{"topicsFrom without a key", fromSecret(validTopicReplica(ns, "t18", "net"), "feeds", ""), "spec.topicsFrom.secretKeyRef.key"},
		{"topicsFrom key with a slash", fromSecret(validTopicReplica(ns, "t19", "net"), "feeds", "a/b"), "spec.topicsFrom.secretKeyRef.key"},
	}
	// A complete valid policy is accepted.
	good := withPolicy(validTopicReplica(ns, "policy-ok", "net", "chat"), func(s *pandav1.TopicReplicaSpec) {
		s.Writers = []string{strings.Repeat("ab", 32)}
		s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(100)), Bytes: ptr.To(resource.MustParse("64Mi"))}}
		s.Retention = &pandav1.TopicRetention{MaxAge: &metav1.Duration{Duration: 720 * time.Hour}, MaxBytes: ptr.To(resource.MustParse("1Gi"))}
	})
	if err := k8sClient.Create(ctx, good); err != nil {
		t.Fatalf("valid policy rejected: %v", err)
	}
	// topicsFrom alone, and both together, are accepted.
	if err := k8sClient.Create(ctx, fromSecret(validTopicReplica(ns, "from-only", "net"), "feeds", "topics")); err != nil {
		t.Fatalf("topicsFrom alone rejected: %v", err)
	}
	if err := k8sClient.Create(ctx, fromSecret(validTopicReplica(ns, "from-both", "net", "chat"), "feeds", "topics.txt")); err != nil {
		t.Fatalf("topics and topicsFrom together rejected: %v", err)
	}
	for _, tc := range trCases {
		t.Run(tc.name, func(t *testing.T) {
			expectInvalid(t, k8sClient.Create(ctx, tc.tr), tc.want)
		})
	}

	// Immutable fields: create valid objects, then try to change them.
	pn := validNetwork(ns, "immutable")
	pn.Spec.Replicas = ptr.To(int32(0))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatalf("create valid network: %v", err)
	}
	updates := []struct {
		name   string
		mutate func(*pandav1.PandaNetwork)
		want   string
	}{
		{"networkID change", func(p *pandav1.PandaNetwork) { p.Spec.NetworkID = "other-net" }, "networkID is immutable"},
		{"storage shrink", func(p *pandav1.PandaNetwork) { s := resource.MustParse("512Mi"); p.Spec.Storage.Size = &s }, "storage.size cannot shrink"},
		{"storage class change", func(p *pandav1.PandaNetwork) { p.Spec.Storage.StorageClassName = ptr.To("fast") }, "storage.storageClassName is immutable"},
	}
	for _, tc := range updates {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			// Retry write conflicts (the controller patches status concurrently).
			for attempt := 0; attempt < 20; attempt++ {
				cur := &pandav1.PandaNetwork{}
				if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pn), cur); err != nil {
					t.Fatal(err)
				}
				tc.mutate(cur)
				if err = k8sClient.Update(ctx, cur); !apierrors.IsConflict(err) {
					break
				}
			}
			expectInvalid(t, err, tc.want)
		})
	}
	tr := validTopicReplica(ns, "immutable", "net", "chat")
	if err := k8sClient.Create(ctx, tr); err != nil {
		t.Fatalf("create valid topicreplica: %v", err)
	}
	t.Run("networkRef change", func(t *testing.T) {
		// A merge patch carries no resourceVersion, so it cannot lose a race with the
		// controller's status writes; the rule must still reject it.
		base := tr.DeepCopy()
		tr.Spec.NetworkRef.Name = "other"
		expectInvalid(t, k8sClient.Patch(ctx, tr, client.MergeFrom(base)), "networkRef is immutable")
	})
	// The same size in other units, and growing, are allowed (volume expansion).
	for _, size := range []string{"1024Mi", "2Gi"} {
		t.Run("storage size "+size+" allowed", func(t *testing.T) {
			eventually(t, "storage update", func() error {
				cur := &pandav1.PandaNetwork{}
				if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pn), cur); err != nil {
					return err
				}
				q := resource.MustParse(size)
				cur.Spec.Storage.Size = &q
				err := k8sClient.Update(ctx, cur)
				if err != nil && !apierrors.IsConflict(err) {
					t.Fatalf("storage.size %s rejected: %v", size, err)
				}
				return err
			})
		})
	}
	// A replicas-only change stays allowed.
	t.Run("replicas change allowed", func(t *testing.T) {
		// Retry only on conflicts (the controller writes status concurrently).
		eventually(t, "replicas update", func() error {
			cur := &pandav1.PandaNetwork{}
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pn), cur); err != nil {
				return err
			}
			cur.Spec.Replicas = ptr.To(int32(1))
			err := k8sClient.Update(ctx, cur)
			if err != nil && !apierrors.IsConflict(err) {
				t.Fatalf("replicas update rejected: %v", err)
			}
			return err
		})
	})
}

// TestDefaults: the CRD schema fills in every documented default.
func TestDefaults(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	ctx := context.Background()
	pn := validNetwork(ns, "defaults")
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	got := &pandav1.PandaNetwork{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pn), got); err != nil {
		t.Fatal(err)
	}
	s := got.Spec
	if s.Replicas == nil || *s.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", s.Replicas)
	}
	if s.Relay == nil || !*s.Relay {
		t.Errorf("relay = %v, want true", s.Relay)
	}
	if s.Exposure.Type != pandav1.ExposureNone || s.Exposure.Port != 4001 || s.Exposure.ExternalTrafficPolicy != "Local" {
		t.Errorf("exposure = %+v, want None/4001/Local", s.Exposure)
	}
	if s.Storage.Size == nil || s.Storage.Size.String() != "1Gi" {
		t.Errorf("storage.size = %v, want 1Gi", s.Storage.Size)
	}
	if s.LogFormat != "json" {
		t.Errorf("logFormat = %q, want json", s.LogFormat)
	}
	tr := validTopicReplica(ns, "defaults", "defaults", "chat")
	if err := k8sClient.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	gotTR := &pandav1.TopicReplica{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(tr), gotTR); err != nil {
		t.Fatal(err)
	}
	if gotTR.Spec.ReclaimPolicy != pandav1.ReclaimRetain {
		t.Errorf("reclaimPolicy = %q, want Retain", gotTR.Spec.ReclaimPolicy)
	}
}
