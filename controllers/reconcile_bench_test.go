package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// BenchmarkReconcile100TopicReplicas is TestReconcileLatency100TopicReplicas as a
// benchmark (for `make bench`): the wall time from creating 100 TopicReplicas of one
// network until the network's topics Secret lists all of them and every TopicReplica
// reports status.observedGeneration. It also reports the median API-server round trip (a
// GET), which the bench table uses for its bound. Needs the envtest control plane
// (KUBEBUILDER_ASSETS, see `make envtest`).
func BenchmarkReconcile100TopicReplicas(b *testing.B) {
	if k8sClient == nil {
		b.Skip(envSkipMsg)
	}
	const n = 100
	ctx := context.Background()
	var total time.Duration
	var rtt float64
	for i := range b.N {
		b.StopTimer()
		ns := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano()%1_000_000, i)
		if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatalf("create namespace: %v", err)
		}
		if err := k8sClient.Create(ctx, validNetwork(ns, "bench")); err != nil {
			b.Fatal(err)
		}
		benchEventually(b, "statefulset", func() error {
			return k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "bench"}, &appsv1.StatefulSet{})
		})
		rtt = apiRTTms(b, ns)
		want := make([]string, 0, n)
		for j := range n {
			want = append(want, fmt.Sprintf("topic-%03d", j))
		}
		b.StartTimer()
		start := time.Now()
		for _, topic := range want {
			if err := k8sClient.Create(ctx, validTopicReplica(ns, topic, "bench", topic)); err != nil {
				b.Fatal(err)
			}
		}
		benchEventually(b, "topics secret", func() error {
			sec := &corev1.Secret{}
			if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "bench-topics"}, sec); err != nil {
				return err
			}
			if got := ParseTopicsFile(string(sec.Data[TopicsKey])); !slices.Equal(got, want) {
				return fmt.Errorf("topics secret lists %d of %d topics", len(got), len(want))
			}
			return nil
		})
		benchEventually(b, "all observedGeneration", func() error {
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
		total += time.Since(start)
		b.StopTimer()
		// Stop the periodic polls of these objects for the rest of the package run.
		if err := k8sClient.DeleteAllOf(ctx, &pandav1.TopicReplica{}, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s")
	b.ReportMetric(rtt, "apiserver-rtt-ms")
}

// apiRTTms is the median of 21 uncached GETs of the namespace's network.
func apiRTTms(b *testing.B, ns string) float64 {
	samples := make([]time.Duration, 0, 21)
	for range cap(samples) {
		start := time.Now()
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "bench"}, &pandav1.PandaNetwork{}); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return float64(samples[len(samples)/2].Microseconds()) / 1000
}

// benchEventually polls fn every 25 ms (finer than the tests' eventually, since the
// elapsed time is the result) until it returns nil, failing after a minute.
func benchEventually(b *testing.B, what string, fn func() error) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
