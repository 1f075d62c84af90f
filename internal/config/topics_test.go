package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func names(ts []Topic) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return strings.Join(s, ",")
}

func TestParseTopics(t *testing.T) {
	got, err := ParseTopics(strings.NewReader("# header\n\nchat\r\n  news  \n#x\nchat\n" + operation.HashOf([]byte("news")).String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The hex spelling of BLAKE3("news") is the same topic as "news" and is dropped.
	if names(got) != "chat,news" {
		t.Fatalf("topics = %q", names(got))
	}
	if got[0].Topic != operation.Topic(operation.HashOf([]byte("chat"))) {
		t.Errorf("chat id = %s", got[0].Topic)
	}
	_, err = ParseTopics(strings.NewReader("ok\n" + strings.Repeat("x", 300) + "\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("long line error = %v", err)
	}
}

func TestDiffTopics(t *testing.T) {
	mk := func(ns ...string) []Topic {
		var out []Topic
		for _, n := range ns {
			tp, _ := operation.ParseTopic(n)
			out = append(out, Topic{Name: n, Topic: tp})
		}
		return out
	}
	ch := DiffTopics(mk("a", "b"), mk("b", "c", "d"))
	if len(ch.Added) != 2 || len(ch.Removed) != 1 || ch.Removed[0].Name != "a" || len(ch.All) != 3 {
		t.Fatalf("diff = %+v", ch)
	}
	added := names(ch.Added)
	if added != "c,d" && added != "d,c" {
		t.Errorf("added = %q", added)
	}
}

// TestWatcherConfigMapSwap mimics the kubelet: the watched path is a symlink to ..data/topics
// and ..data is atomically re-pointed at a new timestamped directory.
func TestWatcherConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "topics"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..v1", "a\nb\n")
	path := filepath.Join(dir, "topics")
	if err := os.Symlink(filepath.Join("..data", "topics"), path); err != nil {
		t.Fatal(err)
	}
	initial, err := LoadTopicsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := NewTopicsWatcher(path, initial)
	var changes []TopicsChange
	var errs []error
	w.OnChange = func(c TopicsChange) { changes = append(changes, c) }
	w.OnError = func(err error) { errs = append(errs, err) }

	w.Poll()
	if len(changes) != 0 {
		t.Fatalf("change without edit: %+v", changes)
	}
	writeVersion("..v2", "b\nc\n")
	w.Poll()
	if len(changes) != 1 || names(changes[0].Added) != "c" || names(changes[0].Removed) != "a" {
		t.Fatalf("changes = %+v", changes)
	}
	// Comment-only edit: content differs, set does not.
	writeVersion("..v3", "# now with a comment\nc\nb\n")
	w.Poll()
	if len(changes) != 1 {
		t.Fatalf("comment edit reported a change: %+v", changes[1:])
	}
	// A parse error keeps the old set and is reported once.
	writeVersion("..v4", "b\n"+strings.Repeat("y", 400)+"\n")
	w.Poll()
	w.Poll()
	if len(errs) != 1 || len(changes) != 1 {
		t.Fatalf("errs = %v, changes = %d", errs, len(changes))
	}
	// The file vanishing briefly does not unsubscribe anything either.
	if err := os.Remove(filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	w.Poll()
	if len(errs) != 2 || len(changes) != 1 {
		t.Fatalf("errs = %v, changes = %d", errs, len(changes))
	}
	writeVersion("..v5", "b\n")
	w.Poll()
	if len(changes) != 2 || names(changes[1].Removed) != "c" || len(changes[1].Added) != 0 || names(changes[1].All) != "b" {
		t.Fatalf("changes = %+v", changes)
	}
}

func TestWatcherRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topics")
	if err := os.WriteFile(path, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := NewTopicsWatcher(path, mustLoad(t, path))
	w.Interval = 10 * time.Millisecond
	got := make(chan TopicsChange, 1)
	w.OnChange = func(c TopicsChange) { got <- c }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	// Rewrite in place with the same size: only the content hash tells the difference.
	if err := os.WriteFile(path, []byte("b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if names(c.Added) != "b" || names(c.Removed) != "a" {
			t.Fatalf("change = %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
}

func mustLoad(t *testing.T, path string) []Topic {
	t.Helper()
	ts, err := LoadTopicsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
