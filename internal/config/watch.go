package config

import (
	"context"
	"crypto/sha256"
	"os"
	"slices"
	"time"
)

// DefaultPollInterval is how often the topics and config watchers look at their file.
const DefaultPollInterval = 2 * time.Second

// polledFile notices content changes of a file by polling.
//
// Polling (instead of inotify) is deliberate: Kubernetes updates a ConfigMap mount by
// atomically swapping the ..data symlink, which inotify watches on the file miss, while a
// poll that re-reads through the symlink and compares a content hash always sees it. The
// files are tiny, so reading them every interval costs nothing.
type polledFile struct {
	path    string
	read    func(string) ([]byte, error)
	hash    [sha256.Size]byte
	lastErr string
}

// newPolledFile takes the file's current content as the baseline.
func newPolledFile(path string, read func(string) ([]byte, error)) polledFile {
	f := polledFile{path: path, read: read}
	if data, err := read(path); err == nil {
		f.hash = sha256.Sum256(data)
	}
	return f
}

// update reads the file and, when its content differs from the accepted one, calls apply
// with it. A read or apply error is passed to onError (once until it changes) and the
// content is not accepted, so the next poll tries again: a half-written or briefly missing
// file never takes effect.
func (f *polledFile) update(apply func([]byte) error, onError func(error)) {
	data, err := f.read(f.path)
	if err == nil {
		if sha256.Sum256(data) == f.hash {
			f.lastErr = ""
			return
		}
		err = apply(data)
	}
	if err != nil {
		if err.Error() != f.lastErr && onError != nil {
			onError(err)
		}
		f.lastErr = err.Error()
		return
	}
	f.hash, f.lastErr = sha256.Sum256(data), ""
}

// runPolls calls poll every interval (DefaultPollInterval if zero) until ctx is done.
func runPolls(ctx context.Context, interval time.Duration, poll func()) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poll()
		}
	}
}

// Reloadable are the keys a running node applies when the --config file changes; every
// other key is read at start only.
var Reloadable = []string{"bootstrap", "announce"}

// ConfigWatcher polls the --config YAML file and, when its content changes, loads the
// whole configuration again (flags and environment still take precedence) and reports
// which keys changed. A file that does not load keeps the previous configuration.
type ConfigWatcher struct {
	Interval time.Duration // DefaultPollInterval if zero
	// Load builds the configuration again, e.g. Load(flags, nil) with the start-up flags.
	Load func() (*Config, error)
	// OnChange is called (from Run's goroutine) with the previous and the new
	// configuration and the keys whose values differ, in option order.
	OnChange func(old, new *Config, changed []string)
	// OnError is called once per distinct error of reading or validating the file.
	OnError func(error)

	current *Config
	file    polledFile
}

// NewConfigWatcher watches current.ConfigFile, treating current as loaded from it.
func NewConfigWatcher(current *Config, load func() (*Config, error)) *ConfigWatcher {
	return &ConfigWatcher{Load: load, current: current, file: newPolledFile(current.ConfigFile, os.ReadFile)}
}

// Run polls until ctx is done.
func (w *ConfigWatcher) Run(ctx context.Context) { runPolls(ctx, w.Interval, w.Poll) }

// Poll checks the file once.
func (w *ConfigWatcher) Poll() {
	w.file.update(func([]byte) error {
		next, err := w.Load()
		if err != nil {
			return err
		}
		old := w.current
		w.current = next
		if diff := old.Changed(next); len(diff) > 0 && w.OnChange != nil {
			w.OnChange(old, next, diff)
		}
		return nil
	}, w.OnError)
}

// Changed lists the keys (option names, in option order) whose effective values differ
// between c and other.
func (c *Config) Changed(other *Config) []string {
	var out []string
	for _, o := range options {
		if o.name == "config" {
			continue
		}
		if !slices.Equal(c.raw[o.name], other.raw[o.name]) {
			out = append(out, o.name)
		}
	}
	return out
}
