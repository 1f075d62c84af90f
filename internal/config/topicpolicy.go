package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// A topics-file line may end with a write policy in brackets:
//
//	chat [writers=<64 hex>,<64 hex> author-ops=10000 author-bytes=64Mi topic-bytes=1Gi max-age=720h]
//
// Keys: writers (comma-separated public keys, 64 hex characters each), author-ops,
// author-bytes, topic-ops, topic-bytes (quotas), max-age and max-bytes (retention). Sizes
// take the suffixes Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000); ages are
// Go durations and may also use d for days. Every quantity must be positive. A line without
// the bracket is a plain topic, as before; a topic whose name itself ends in " [...]" is
// written as its 64-hex id.

// splitTopicLine separates the topic name from an optional trailing "[policy]".
func splitTopicLine(s string) (name, pol string, hasPolicy bool) {
	if !strings.HasSuffix(s, "]") {
		return s, "", false
	}
	i := strings.LastIndex(s, " [")
	if i < 0 {
		return s, "", false
	}
	return strings.TrimSpace(s[:i]), s[i+2 : len(s)-1], true
}

// ParseTopicPolicy parses the inside of a topics-file policy bracket.
func ParseTopicPolicy(s string) (policy.Policy, error) {
	var p policy.Policy
	seen := map[string]bool{}
	for _, field := range strings.Fields(s) {
		key, value, ok := strings.Cut(field, "=")
		if !ok || value == "" {
			return policy.Policy{}, fmt.Errorf("policy: %q is not key=value", field)
		}
		if seen[key] {
			return policy.Policy{}, fmt.Errorf("policy: %s given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "writers":
			p.Writers, err = parseWriters(value)
		case "author-ops":
			p.PerAuthor.MaxOps, err = parseCount(value)
		case "author-bytes":
			p.PerAuthor.MaxBytes, err = ParseSize(value)
		case "topic-ops":
			p.PerTopic.MaxOps, err = parseCount(value)
		case "topic-bytes":
			p.PerTopic.MaxBytes, err = ParseSize(value)
		case "max-bytes":
			p.Retention.MaxBytes, err = ParseSize(value)
		case "max-age":
			p.Retention.MaxAge, err = parseAge(value)
		default:
			return policy.Policy{}, fmt.Errorf("policy: unknown key %q (want writers, author-ops, author-bytes, topic-ops, topic-bytes, max-age or max-bytes)", key)
		}
		if err != nil {
			return policy.Policy{}, fmt.Errorf("policy: %s: %w", key, err)
		}
	}
	if p.IsZero() {
		return policy.Policy{}, errors.New("policy: empty brackets")
	}
	return p, p.Validate()
}

func parseWriters(s string) ([]operation.PublicKey, error) {
	var out []operation.PublicKey
	for _, w := range strings.Split(s, ",") {
		k, err := operation.ParsePublicKey(w)
		if err != nil {
			return nil, fmt.Errorf("writer %q: %w", w, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func parseCount(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a positive integer", s)
	}
	return n, nil
}

var sizeSuffixes = []struct {
	suffix string
	factor uint64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseSize parses a positive byte count with an optional Kubernetes-style suffix (Ki, Mi,
// Gi, Ti, k, M, G, T).
func ParseSize(s string) (uint64, error) {
	num, factor := s, uint64(1)
	for _, sf := range sizeSuffixes {
		if strings.HasSuffix(s, sf.suffix) {
			num, factor = strings.TrimSuffix(s, sf.suffix), sf.factor
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	if n > math.MaxUint64/factor {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * factor, nil
}

// parseAge parses a positive Go duration, or a whole number of days ("30d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%q is not a positive number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration", s)
	}
	return d, nil
}
