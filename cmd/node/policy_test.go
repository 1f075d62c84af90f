package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// A topic's policy from the topics file reaches the node before the topic is opened, a
// changed policy is applied on reload, and a removed topic's policy is dropped.
func TestDaemonTopicsFilePolicy(t *testing.T) {
	n := newMemNode()
	d := newDaemon(n, quietLog(), nil, config.AckAutomatic, "test")
	defer d.Close()
	ctx := testCtx(t)
	parse := func(file string) []config.Topic {
		t.Helper()
		ts, err := config.ParseTopics(strings.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	first := parse("guarded [author-ops=5]\nplain\n")
	for _, tp := range first {
		if _, err := d.ensure(ctx, tp, true); err != nil {
			t.Fatal(err)
		}
	}
	guarded, plain := first[0].Topic, first[1].Topic
	if p, ok := n.policy(guarded); !ok || p.PerAuthor.MaxOps != 5 || !n.policySetBeforeOpen[guarded] {
		t.Fatalf("guarded policy %+v (installed %v, before open %v)", p, ok, n.policySetBeforeOpen[guarded])
	}
	if _, ok := n.policy(plain); ok {
		t.Fatal("plain topic got a policy")
	}
	second := parse("guarded [author-ops=7]\nplain [max-age=1h]\n")
	d.applyTopics(ctx, config.DiffTopics(first, second))
	if p, _ := n.policy(guarded); p.PerAuthor.MaxOps != 7 {
		t.Fatalf("guarded policy after reload %+v", p)
	}
	if p, ok := n.policy(plain); !ok || p.Retention.MaxAge.Hours() != 1 {
		t.Fatalf("plain policy after reload %+v", p)
	}
	d.applyTopics(ctx, config.DiffTopics(second, parse("plain [max-age=1h]\n")))
	if _, ok := n.policy(guarded); ok {
		t.Fatal("removed topic kept its policy")
	}
}

// End to end through the binary: a topics-file policy that does not list the node's own key
// refuses its publishes; `topics` shows usage against the limits and the refusal, and the
// metrics count it by reason.
func TestDaemonTopicPolicyVisible(t *testing.T) {
	if testing.Short() {
		t.Skip("starts panda-node processes")
	}
	other, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	topicsFile := filepath.Join(t.TempDir(), "topics")
	if err := os.WriteFile(topicsFile, []byte("open [author-ops=10 topic-bytes=1Mi]\nguarded [writers="+other.PublicKey().String()+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newTestDaemon(t, "--topics-file", topicsFile)
	d.start()
	d.cli("publish", "--topic", "open", "counted")
	_, stderr, code := cli(t, []string{"PANDA_ADMIN_ADDR=" + d.admin}, "publish", "--topic", "guarded", "refused")
	if code == 0 || !strings.Contains(stderr, string(policy.NotWriter)) {
		t.Fatalf("publish to a topic the node may not write: exit %d, %s", code, stderr)
	}
	ts := topicsOf(t, d)
	open, guarded := ts[hexTopic("open")].Policy, ts[hexTopic("guarded")].Policy
	if open == nil || open.Usage.Ops != 1 || open.PerAuthor.MaxOps != 10 || open.PerTopic.MaxBytes != 1<<20 ||
		len(open.Authors) != 1 || open.Authors[0].Author != d.status().PublicKey || open.Authors[0].Ops != 1 {
		t.Fatalf("open topic policy %+v", open)
	}
	if guarded == nil || guarded.Refused["not_writer"] != 1 || guarded.Usage.Ops != 0 || len(guarded.Writers) != 1 {
		t.Fatalf("guarded topic policy %+v", guarded)
	}
	text := d.cli("topics")
	for _, want := range []string{"policy of " + hexTopic("guarded"), "not_writer=1", "1/10", other.PublicKey().String()} {
		if !strings.Contains(text, want) {
			t.Errorf("topics output lacks %q:\n%s", want, text)
		}
	}
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `panda_operations_refused_total{reason="not_writer"} 1`) {
		t.Errorf("metrics lack the refusal:\n%s", grepLines(string(body), "refused"))
	}
	d.stop()
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
