package controllers

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// TestForeignSecretNotAdopted: an existing <name>-identity Secret the operator did not
// create is not mounted into pods; the network says why (Degraded=True SecretNotAdopted)
// and no StatefulSet is created.
func TestForeignSecretNotAdopted(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "adopt-identity", Namespace: ns},
		Data: map[string][]byte{"adopt-0.key": []byte(strings.Repeat("01", 32) + "\n")}}
	if err := k8sClient.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	pn := validNetwork(ns, "adopt")
	pn.Spec.Replicas = ptr.To(int32(1))
	if err := k8sClient.Create(ctx, pn); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "adopt", pandav1.ConditionDegraded, func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionTrue || c.Reason != ReasonSecretNotAdopted || !strings.Contains(c.Message, "adopt-identity") {
			return fmt.Errorf("degraded = %+v", c)
		}
		return nil
	})
	if err := k8sClient.Get(ctx, keyOf(ns, "adopt"), &corev1.ConfigMap{}); err == nil {
		t.Fatal("objects written although the identity Secret was refused")
	}
}

// TestCacheIgnoresUnrelatedObjects: the operator's informers do not hold ConfigMaps (or
// Services) that are not the operator's, whatever their size.
func TestCacheIgnoresUnrelatedObjects(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	ns := newNamespace(t)
	big := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns},
		Data: map[string]string{"blob": strings.Repeat("x", 500<<10)}}
	ours := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ours", Namespace: ns, Labels: map[string]string{networkLabel: "n"}}}
	for _, o := range []client.Object{big, ours} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	opts := CacheOptions()
	opts.Scheme = testScheme
	c, err := cache.New(testConfig, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	var list corev1.ConfigMapList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	// The List proves the informer synced; it must hold ours and only ours.
	if len(list.Items) != 1 || list.Items[0].Name != "ours" {
		names := []string{}
		for _, cm := range list.Items {
			names = append(names, cm.Name)
		}
		t.Fatalf("cached configmaps %v, want only [ours]", names)
	}
}

// TestCacheMemoryWithUnrelatedConfigMaps measures issue 11 item 7: the heap a synced
// ConfigMap informer holds with 100 unrelated 500 KB ConfigMaps in the cluster, with an
// unfiltered cache (as before CacheOptions) and with the operator's CacheOptions.
func TestCacheMemoryWithUnrelatedConfigMaps(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	blob := strings.Repeat("x", 500<<10)
	for i := range 100 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i), Namespace: ns},
			Data: map[string]string{"blob": blob}}
		if err := k8sClient.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	blob = ""
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// growth starts a cache with opts, syncs a ConfigMap informer (the operator owns
	// ConfigMaps, so it always has one) and returns the heap it added.
	growth := func(opts cache.Options) int64 {
		opts.Scheme = testScheme
		cctx, cancel := context.WithCancel(ctx)
		before := heap()
		c, err := cache.New(testConfig, opts)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Start(cctx) }()
		if _, err := c.GetInformer(cctx, &corev1.ConfigMap{}); err != nil {
			t.Fatal(err)
		}
		if !c.WaitForCacheSync(cctx) {
			t.Fatal("cache did not sync")
		}
		after := heap()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		return int64(after) - int64(before)
	}
	const mib = 1 << 20
	unfiltered := growth(cache.Options{})
	filtered := growth(CacheOptions())
	t.Logf("heap held by a synced ConfigMap informer with 100 unrelated 500 KB ConfigMaps: unfiltered %+.1f MiB, CacheOptions %+.1f MiB",
		float64(unfiltered)/mib, float64(filtered)/mib)
	if unfiltered < 40*mib {
		t.Errorf("unfiltered cache grew only %.1f MiB: the measurement does not see the ConfigMaps", float64(unfiltered)/mib)
	}
	if filtered > 5*mib {
		t.Errorf("filtered cache grew %.1f MiB with only unrelated ConfigMaps around", float64(filtered)/mib)
	}
}
