package config

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
)

// MaxTopicsFileSize bounds the topics file; a ConfigMap is at most 1 MiB anyway.
const MaxTopicsFileSize = 1 << 20

// Topic is one line of a topics file: the name as written and the id it maps to.
type Topic struct {
	Name  string
	Topic operation.Topic
}

// ParseTopics reads a topics file: one topic per line under the operation.ParseID rule,
// blank lines and lines starting with '#' ignored, surrounding white space trimmed.
// Duplicates (also different spellings of the same id) are kept once, in first-seen order.
func ParseTopics(r io.Reader) ([]Topic, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxTopicsFileSize)
	seen := make(map[operation.Topic]bool)
	var out []Topic
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		t, err := operation.ParseTopic(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, Topic{Name: s, Topic: t})
		}
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
	All     []Topic // the complete new list
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
		if _, ok := oldSet[id]; !ok {
			ch.Added = append(ch.Added, t)
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
		if (len(ch.Added) > 0 || len(ch.Removed) > 0) && w.OnChange != nil {
			w.OnChange(ch)
		}
		return nil
	}, w.OnError)
}
