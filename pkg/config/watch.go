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

// poll reads the file and reports whether its content differs from the accepted one.
func (f *polledFile) poll() (data []byte, changed bool, err error) {
	data, err = f.read(f.path)
	if err != nil {
		return nil, false, err
	}
	if sha256.Sum256(data) == f.hash {
		f.lastErr = ""
		return data, false, nil
	}
	return data, true, nil
}

// accept makes data the baseline (after it was parsed and applied).
func (f *polledFile) accept(data []byte) {
	f.hash, f.lastErr = sha256.Sum256(data), ""
}

// report passes err to onError once until it changes, so a missing or broken file is not
// logged on every poll. The baseline stays, so the file is tried again on the next poll.
func (f *polledFile) report(err error, onError func(error)) {
	if err.Error() == f.lastErr {
		return
	}
	f.lastErr = err.Error()
	if onError != nil {
		onError(err)
	}
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
	data, changed, err := w.file.poll()
	if err != nil {
		w.file.report(err, w.OnError)
		return
	}
	if !changed {
		return
	}
	next, err := w.Load()
	if err != nil {
		w.file.report(err, w.OnError)
		return
	}
	w.file.accept(data)
	old := w.current
	w.current = next
	if diff := old.Changed(next); len(diff) > 0 && w.OnChange != nil {
		w.OnChange(old, next, diff)
	}
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
