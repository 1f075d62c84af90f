package config

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestConfigWatcherReportsChangedKeys(t *testing.T) {
	t.Setenv("HOME", "/home/test")
	boot := "/ip4/10.0.0.1/tcp/4001/p2p/" + testPeer
	path := writeFile(t, "node.yaml", "bootstrap:\n  - "+boot+"\nlog-level: info\n")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	// A flag wins over the file: changing log-level in the file changes nothing.
	if err := fs.Parse([]string{"--config", path, "--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	env := func(string) (string, bool) { return "", false }
	reload := func() (*Config, error) { return Load(fs, env) }
	initial, err := reload()
	if err != nil {
		t.Fatal(err)
	}

	type change struct {
		old, new *Config
		keys     []string
	}
	var changes []change
	var errs []error
	w := NewConfigWatcher(initial, reload)
	w.OnChange = func(old, new *Config, keys []string) { changes = append(changes, change{old, new, keys}) }
	w.OnError = func(err error) { errs = append(errs, err) }
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	w.Poll()
	if len(changes)+len(errs) != 0 {
		t.Fatalf("an unchanged file reported %d changes, %d errors", len(changes), len(errs))
	}

	write("bootstrap:\n  - " + boot + "\nannounce: /ip4/203.0.113.7/tcp/4001\nlog-level: warn\n")
	w.Poll()
	if len(changes) != 1 || !slices.Equal(changes[0].keys, []string{"announce"}) {
		t.Fatalf("changes = %+v, want one change of [announce]", changes)
	}
	if got := changes[0].new.Announce; len(got) != 1 || got[0].String() != "/ip4/203.0.113.7/tcp/4001" {
		t.Errorf("new announce = %v", got)
	}
	if len(changes[0].old.Announce) != 0 {
		t.Errorf("old announce = %v", changes[0].old.Announce)
	}

	// A broken file is reported once and changes nothing; fixing it applies the change.
	write("bootstrap: [not-a-multiaddr]\n")
	w.Poll()
	w.Poll()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "bootstrap") {
		t.Fatalf("errors = %v, want one error naming bootstrap", errs)
	}
	if len(changes) != 1 {
		t.Fatalf("a broken file reported a change: %+v", changes[1:])
	}
	write("announce: /ip4/203.0.113.7/tcp/4001\n")
	w.Poll()
	if len(changes) != 2 || !slices.Equal(changes[1].keys, []string{"bootstrap"}) || len(changes[1].new.Bootstrap) != 0 {
		t.Fatalf("after the fix: changes = %+v, want [bootstrap] removed", changes[1:])
	}
}
