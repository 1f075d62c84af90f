package admin

import (
	"bytes"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

// FuzzDecodeAddTopic: arbitrary bodies never panic, and an accepted body names a topic that
// round-trips through the ParseID rule.
func FuzzDecodeAddTopic(f *testing.F) {
	for _, s := range []string{`{"topic":"chat"}`, `{"topic":""}`, `{}`, `[]`, `{"topic":1}`, `{"topic":"a"} x`, "\x00", `{"topic":"` + string(make([]byte, 300)) + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		topic, err := DecodeAddTopic(bytes.NewReader(body))
		if err != nil {
			return
		}
		again, err := operation.ParseTopic(topic.String())
		if err != nil || again != topic {
			t.Fatalf("accepted topic %s does not round-trip: %v", topic, err)
		}
	})
}

// FuzzParseFrom: only the two documented values are accepted.
func FuzzParseFrom(f *testing.F) {
	for _, s := range []string{"", "start", "frontier", "Start", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		from, err := ParseFrom(s)
		if err == nil && from != FromStart && from != FromFrontier {
			t.Fatalf("ParseFrom(%q) = %q", s, from)
		}
		if err == nil && s != "" && string(from) != s {
			t.Fatalf("ParseFrom(%q) = %q", s, from)
		}
	})
}
