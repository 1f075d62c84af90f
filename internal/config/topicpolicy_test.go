package config

import (
	"strings"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

func TestParseTopicsWithPolicy(t *testing.T) {
	k1 := strings.Repeat("ab", 32)
	k2 := strings.Repeat("cd", 32)
	file := "plain topic\n" +
		"chat room [writers=" + k1 + "," + k2 + " author-ops=100 author-bytes=64Mi topic-ops=5000 topic-bytes=2G max-age=30d max-bytes=1Gi]\n" +
		"news [max-age=90m]\n"
	got, err := ParseTopics(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "plain topic,chat room,news" {
		t.Fatalf("names %q", names(got))
	}
	if !got[0].Policy.IsZero() {
		t.Fatalf("plain topic got a policy: %+v", got[0].Policy)
	}
	if got[1].Topic != operation.Topic(operation.HashOf([]byte("chat room"))) {
		t.Fatal("the policy changed the topic id")
	}
	w1, _ := operation.ParsePublicKey(k1)
	w2, _ := operation.ParsePublicKey(k2)
	want := policy.Policy{Writers: []operation.PublicKey{w1, w2},
		PerAuthor: policy.Quota{MaxOps: 100, MaxBytes: 64 << 20}, PerTopic: policy.Quota{MaxOps: 5000, MaxBytes: 2e9},
		Retention: policy.Retention{MaxAge: 30 * 24 * time.Hour, MaxBytes: 1 << 30}}
	if !samePolicy(got[1].Policy, want) {
		t.Fatalf("chat policy %+v, want %+v", got[1].Policy, want)
	}
	if got[2].Policy.Retention.MaxAge != 90*time.Minute {
		t.Fatalf("news policy %+v", got[2].Policy)
	}
}

func TestParseTopicPolicyErrors(t *testing.T) {
	for _, line := range []string{
		"t [writers=abc]",                             // key not 64 hex
		"t [author-ops=0]",                            // not positive
		"t [author-ops=-1]",                           // not positive
		"t [topic-bytes=0Mi]",                         // not positive
		"t [max-age=-1h]",                             // not positive
		"t [max-age=0d]",                              // not positive
		"t [colour=blue]",                             // unknown key
		"t [author-ops]",                              // not key=value
		"t [author-ops=1 author-ops=2]",               // twice
		"t []",                                        // empty
		"t [max-bytes=1Mi]\nt [max-bytes=2Mi]",        // same topic, two policies
		"t [max-bytes=99999999999999999999Ti]",        // overflow
		"t [writers=" + strings.Repeat("0", 64) + "]", // zero key
	} {
		if _, err := ParseTopics(strings.NewReader(line)); err == nil {
			t.Errorf("%q parsed without error", line)
		}
	}
	// The same topic twice with the same policy is one entry.
	got, err := ParseTopics(strings.NewReader("t [max-bytes=1Mi]\nt [max-bytes=1Mi]\n"))
	if err != nil || len(got) != 1 {
		t.Fatalf("duplicate with the same policy: %v %v", got, err)
	}
}

func TestDiffTopicsPolicyChange(t *testing.T) {
	old, err := ParseTopics(strings.NewReader("a\nb [author-ops=5]\n"))
	if err != nil {
		t.Fatal(err)
	}
	next, err := ParseTopics(strings.NewReader("a [author-ops=1]\nb [author-ops=5]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ch := DiffTopics(old, next)
	if len(ch.Added) != 0 || len(ch.Removed) != 0 || len(ch.PolicyChanged) != 1 || ch.PolicyChanged[0].Name != "a" || ch.Empty() {
		t.Fatalf("diff %+v", ch)
	}
	if !DiffTopics(next, next).Empty() {
		t.Fatal("no change reported as a change")
	}
}
