package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// Issue 14, tests, last bullet: the policy scenarios run through the TopicReplica. The
// operator (on envtest) renders TopicReplicas with writers, a quota (its topic coming from a
// topicsFrom Secret) and retention into the network's topics Secret; the test reads that
// file from the API server, loads it with the daemon's own parser and starts a real
// pkg/node always-on node on loopback with it, then checks the behaviour with real edges.

var policyNet = operation.NetworkID(operation.HashOf([]byte("pandanet controllers policy test")))

func nodeLogger() *slog.Logger {
	if os.Getenv("PANDA_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func startNode(t *testing.T, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func loopbackConfig() node.NetworkConfig {
	return node.NetworkConfig{NetworkID: policyNet, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		WalkInterval: 100 * time.Millisecond, MaxWalkInterval: time.Second, Logger: nodeLogger()}
}

// edgeNode is a networked node on 127.0.0.1 connected to boot, started right away and
// dialling boot at once (as an edge does); key is its node key (a fresh one if zero). It
// must be a member of boot's network within the wait: a just-started peer is never taken
// for one of another network.
func edgeNode(t *testing.T, boot *node.Node, key operation.PrivateKey) *node.Node {
	t.Helper()
	if key.IsZero() {
		var err error
		if key, err = operation.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := loopbackConfig()
	cfg.BootstrapPeers = []ma.Multiaddr{boot.Addrs()[0]}
	n := startNode(t, node.WithPrivateKey(key), node.WithNetwork(cfg))
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("edge %s connected to the always-on node", n.ID().Short()), func() (bool, error) {
		for _, p := range n.Peers() {
			if p.ID == boot.PeerID() && p.InNetwork {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d peers", len(n.Peers()))
	})
	return n
}

func publishN(t *testing.T, n *node.Node, topic operation.Topic, count int, body func(i int) []byte) {
	t.Helper()
	// The stream lives as long as the node: its context ending would unsubscribe the topic.
	pub, _, err := n.Stream(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range count {
		p, err := pub.Publish(ctx, body(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func storedOps(n *node.Node, topic operation.Topic) (int64, error) {
	stats, err := n.Store().TopicStats(context.Background())
	if err != nil {
		return 0, err
	}
	for _, s := range stats {
		if s.Topic == topic {
			return s.Ops, nil
		}
	}
	return 0, nil
}

func waitOps(t *testing.T, n *node.Node, topic operation.Topic, want int64) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("node %s holds %d operations", n.ID().Short(), want), func() (bool, error) {
		have, err := storedOps(n, topic)
		rep, _ := n.TopicPolicy(topic)
		return have == want, fmt.Errorf("holds %d (%v); policy usage %+v, refused %v, retired %d; %d peers", have, err, rep.Usage, rep.Refused, rep.Retired, len(n.Peers()))
	})
}

func waitRefused(t *testing.T, n *node.Node, reason policy.Reason) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("node refused operations (%s)", reason), func() (bool, error) {
		return n.PolicyRefusals()[reason] > 0, nil
	})
}

func logAuthors(t *testing.T, n *node.Node, topic operation.Topic) map[operation.PublicKey]uint64 {
	t.Helper()
	h, err := n.Store().LogHeights(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[operation.PublicKey]uint64{}
	for author, logs := range h {
		out[author] = logs[operation.LogIDFromTopic(topic)]
	}
	return out
}

func TestPolicyThroughTopicReplicaOnRealNodes(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	writerKey, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// About one log of four bodySize operations fits, two do not.
	retentionBytes := resource.MustParse("24Ki")
	pn := validNetwork(ns, "policed")
	pn.Spec.Replicas = ptr.To(int32(0))
	writers := withPolicy(validTopicReplica(ns, "announcements", "policed", "announcements"), func(s *pandav1.TopicReplicaSpec) {
		s.Writers = []string{writerKey.PublicKey().String()}
	})
	// The quota topic is a read capability: it comes from a Secret.
	quotaTopic := operation.Topic(operation.HashOf([]byte("uploads " + ns)))
	quotaID := fmt.Sprintf("%x", quotaTopic[:])
	feeds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "feeds"}, StringData: map[string]string{"topics": quotaID + "\n"}}
	quota := withPolicy(fromSecret(validTopicReplica(ns, "uploads", "policed"), "feeds", "topics"), func(s *pandav1.TopicReplicaSpec) {
		s.Quota = &pandav1.TopicQuota{PerAuthor: &pandav1.TopicLimit{Operations: ptr.To(int64(3))}}
	})
	retention := withPolicy(validTopicReplica(ns, "history", "policed", "history"), func(s *pandav1.TopicReplicaSpec) {
		s.Retention = &pandav1.TopicRetention{MaxBytes: &retentionBytes}
	})
	for _, o := range []client.Object{pn, feeds, writers, quota, retention} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// The file the pods would mount, as the operator rendered it.
	var file string
	eventually(t, "topics secret with three policies", func() error {
		sec := &corev1.Secret{}
		if err := k8sClient.Get(ctx, keyOf(ns, "policed-topics"), sec); err != nil {
			return err
		}
		file = string(sec.Data[TopicsKey])
		if n := strings.Count(file, "["); n != 3 {
			return fmt.Errorf("%d policies in %q", n, file)
		}
		return nil
	})
	t.Logf("rendered topics file:\n%s", file)
	runPolicyScenarios(t, file, writerKey, quotaTopic, retentionBytes.Value())
}

// runPolicyScenarios starts an always-on node with the topics file and runs the scenarios.
func runPolicyScenarios(t *testing.T, file string, writerKey operation.PrivateKey, quotaTopic operation.Topic, retentionBytes int64) {
	ctx := context.Background()
	const bodySize = 4096
	quotaID := fmt.Sprintf("%x", quotaTopic[:])
	path := filepath.Join(t.TempDir(), "topics")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	topics, err := config.LoadTopicsFile(path)
	if err != nil {
		t.Fatalf("the daemon's parser rejects the rendered file: %v", err)
	}
	opts := []node.Option{}
	byName := map[string]operation.Topic{}
	for _, tp := range topics {
		opts = append(opts, node.WithTopicPolicy(tp.Topic, tp.Policy))
		byName[tp.Name] = tp.Topic
	}
	announce, history := byName["announcements"], byName["history"]
	if _, ok := byName[quotaID]; !ok || len(byName) != 3 {
		t.Fatalf("topics %v, want announcements, history and the Secret's topic", byName)
	}
	// Each scenario gets its own always-on node started from the file, as a pod would be.
	startAlways := func(t *testing.T) *node.Node {
		always := startNode(t, append(opts, node.WithNetwork(loopbackConfig()))...)
		for _, tp := range topics {
			if _, _, err := always.Stream(ctx, tp.Topic); err != nil {
				t.Fatal(err)
			}
		}
		return always
	}

	t.Run("unauthorised author refused and never reaches another edge", func(t *testing.T) {
		always := startAlways(t)
		outsider := edgeNode(t, always, operation.PrivateKey{})
		publishN(t, outsider, announce, 3, func(i int) []byte { return fmt.Appendf(nil, "outsider %d", i) })
		waitRefused(t, always, policy.NotWriter)
		writer := edgeNode(t, always, writerKey)
		publishN(t, writer, announce, 2, func(i int) []byte { return fmt.Appendf(nil, "writer %d", i) })
		waitOps(t, always, announce, 2)
		_ = outsider.Close()
		_ = writer.Close()
		// Only the always-on node is left to sync from; having the writer's two operations
		// proves the new edge completed a sync with it.
		reader := edgeNode(t, always, operation.PrivateKey{})
		if _, _, err := reader.Stream(ctx, announce); err != nil {
			t.Fatal(err)
		}
		waitOps(t, reader, announce, 2)
		if got := logAuthors(t, reader, announce); len(got) != 1 || got[writer.ID()] != 1 {
			t.Fatalf("the new edge holds logs %v, want only the writer's", got)
		}
		t.Logf("refusals by reason on the always-on node: %v", always.PolicyRefusals())
	})

	t.Run("author over quota refused while others keep syncing", func(t *testing.T) {
		always := startAlways(t)
		greedy := edgeNode(t, always, operation.PrivateKey{})
		publishN(t, greedy, quotaTopic, 5, func(i int) []byte { return fmt.Appendf(nil, "greedy %d", i) })
		waitRefused(t, always, policy.OverQuota)
		waitOps(t, always, quotaTopic, 3)
		modest := edgeNode(t, always, operation.PrivateKey{})
		publishN(t, modest, quotaTopic, 2, func(i int) []byte { return fmt.Appendf(nil, "modest %d", i) })
		waitOps(t, always, quotaTopic, 5)
		// The greedy edge still gets the modest author's operations through the node.
		testutil.Eventually(t, 60*time.Second, "greedy edge receives the modest author's log", func() (bool, error) {
			_, ok := logAuthors(t, greedy, quotaTopic)[modest.ID()]
			return ok, nil
		})
		rep, _ := always.TopicPolicy(quotaTopic)
		if rep.Authors[greedy.ID()].Ops != 3 || rep.Authors[modest.ID()].Ops != 2 {
			t.Fatalf("usage per author %+v", rep.Authors)
		}
	})

	t.Run("retention drops the oldest log, the rest syncs", func(t *testing.T) {
		always := startAlways(t)
		body := func(label string) func(int) []byte {
			return func(i int) []byte {
				b := make([]byte, bodySize)
				copy(b, fmt.Sprintf("%s %d", label, i))
				return b
			}
		}
		old := edgeNode(t, always, operation.PrivateKey{})
		publishN(t, old, history, 4, body("old"))
		waitOps(t, always, history, 4)
		fresh := edgeNode(t, always, operation.PrivateKey{})
		publishN(t, fresh, history, 4, body("fresh"))
		testutil.Eventually(t, 60*time.Second, "retention dropped the old log", func() (bool, error) {
			got := logAuthors(t, always, history)
			_, hasOld := got[old.ID()]
			return !hasOld && got[fresh.ID()] == 3, fmt.Errorf("logs %v", got)
		})
		_ = old.Close()
		_ = fresh.Close()
		reader := edgeNode(t, always, operation.PrivateKey{})
		if _, _, err := reader.Stream(ctx, history); err != nil {
			t.Fatal(err)
		}
		waitOps(t, reader, history, 4)
		if got := logAuthors(t, reader, history); len(got) != 1 || got[fresh.ID()] != 3 {
			t.Fatalf("new edge holds logs %v, want only the fresh author's, complete", got)
		}
		rep, _ := always.TopicPolicy(history)
		t.Logf("history on the always-on node after retention: %d ops, %d bytes (limit %d)", rep.Usage.Ops, rep.Usage.Bytes, retentionBytes)
	})
}
