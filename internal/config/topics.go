package config

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// MaxTopicsFileSize bounds the topics file; a ConfigMap is at most 1 MiB anyway.
const MaxTopicsFileSize = 1 << 20

// Topic is one line of a topics file: the name as written, the id it maps to and its
// optional write policy (zero: none).
type Topic struct {
	Name   string
	Topic  operation.Topic
	Policy policy.Policy
}

// ParseTopics reads a topics file: one topic per line under the operation.ParseID rule,
// optionally followed by a write policy in brackets (see topicpolicy.go), blank lines and
// lines starting with '#' ignored, surrounding white space trimmed. Duplicates (also
// different spellings of the same id) are kept once, in first-seen order; a duplicate with
// a different policy is an error.
func ParseTopics(r io.Reader) ([]Topic, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxTopicsFileSize)
	seen := make(map[operation.Topic]int)
	var out []Topic
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		name, pol, hasPolicy := splitTopicLine(s)
		t, err := operation.ParseTopic(name)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		entry := Topic{Name: name, Topic: t}
		if hasPolicy {
			if entry.Policy, err = ParseTopicPolicy(pol); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		if i, dup := seen[t]; dup {
			if !samePolicy(out[i].Policy, entry.Policy) {
				return nil, fmt.Errorf("line %d: topic %q listed again with another policy", line, name)
			}
			continue
		}
		seen[t] = len(out)
		out = append(out, entry)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read topics: %w", err)
	}
	return out, nil
}

// LoadTopicsFile reads and parses path.
func LoadTopicsFile(path string) ([]Topic, error) {
	data, err := readTopicsFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTopics(bytes.NewReader(data))
}

func readTopicsFile(path string) ([]byte, error) {
	// os.Open follows symlinks, so a Kubernetes ConfigMap mount (topics → ..data/topics,
	// ..data → ..2024_…) is read through whatever ..data points at right now.
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTopicsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxTopicsFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxTopicsFileSize)
	}
	return data, nil
}

// TopicsChange is one observed change of the topics file.
type TopicsChange struct {
	Added   []Topic
	Removed []Topic
	// PolicyChanged are topics that stay but whose policy changed (to the one they carry).
	PolicyChanged []Topic
	All           []Topic // the complete new list
}

// Empty reports whether nothing changed.
func (c TopicsChange) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.PolicyChanged) == 0
}

func samePolicy(a, b policy.Policy) bool {
	return slices.Equal(a.Writers, b.Writers) && a.PerAuthor == b.PerAuthor && a.PerTopic == b.PerTopic && a.Retention == b.Retention
}

// DiffTopics returns what changed from old to new, each list sorted by topic id.
func DiffTopics(old, new []Topic) TopicsChange {
	oldSet := make(map[operation.Topic]Topic, len(old))
	for _, t := range old {
		oldSet[t.Topic] = t
	}
	newSet := make(map[operation.Topic]Topic, len(new))
	for _, t := range new {
		newSet[t.Topic] = t
	}
	ch := TopicsChange{All: new}
	for id, t := range newSet {
		old, ok := oldSet[id]
		switch {
		case !ok:
			ch.Added = append(ch.Added, t)
		case !samePolicy(old.Policy, t.Policy):
			ch.PolicyChanged = append(ch.PolicyChanged, t)
		}
	}
	for id, t := range oldSet {
		if _, ok := newSet[id]; !ok {
			ch.Removed = append(ch.Removed, t)
		}
	}
	byID := func(l []Topic) {
		sort.Slice(l, func(i, j int) bool { return bytes.Compare(l[i].Topic[:], l[j].Topic[:]) < 0 })
	}
	byID(ch.Added)
	byID(ch.Removed)
	byID(ch.PolicyChanged)
	return ch
}

// TopicsWatcher polls a topics file and reports changes of the topic set.
type TopicsWatcher struct {
	Path     string
	Interval time.Duration // DefaultPollInterval if zero
	// OnChange is called (from Run's goroutine) when the set of topics changed.
	OnChange func(TopicsChange)
	// OnError is called when the file cannot be read or parsed; the previous set stays in
	// effect, so a half-written or briefly missing file never unsubscribes anything.
	OnError func(error)

	current []Topic
	file    polledFile
}

// NewTopicsWatcher returns a watcher that treats initial as the current content, typically
// Config.Topics as loaded at start-up.
func NewTopicsWatcher(path string, initial []Topic) *TopicsWatcher {
	return &TopicsWatcher{Path: path, current: initial, file: newPolledFile(path, readTopicsFile)}
}

// Run polls until ctx is done.
func (w *TopicsWatcher) Run(ctx context.Context) { runPolls(ctx, w.Interval, w.Poll) }

// Poll checks the file once. Run calls it on every tick; tests call it directly.
func (w *TopicsWatcher) Poll() {
	w.file.update(func(data []byte) error {
		topics, err := ParseTopics(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", w.Path, err)
		}
		ch := DiffTopics(w.current, topics)
		w.current = topics
		if !ch.Empty() && w.OnChange != nil {
			w.OnChange(ch)
		}
		return nil
	}, w.OnError)
}
