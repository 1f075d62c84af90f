package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pandanet/pandanet/pkg/operation"
)

const testPeer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"

func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["HOME"]; !ok {
		t.Setenv("HOME", "/home/test")
	}
	return Load(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/home/test/.local/share/panda-node" {
		t.Errorf("DataDir = %q", c.DataDir)
	}
	if c.KeyFile != "/home/test/.local/share/panda-node/identity.key" {
		t.Errorf("KeyFile = %q", c.KeyFile)
	}
	if c.DatabasePath() != "/home/test/.local/share/panda-node/panda.db" {
		t.Errorf("DatabasePath = %q", c.DatabasePath())
	}
	if c.NetworkID != operation.DefaultNetworkID {
		t.Errorf("NetworkID = %s, want BLAKE3(p2panda)", c.NetworkID)
	}
	if len(c.Listen) != 2 || c.Listen[0].String() != DefaultListen[0] || c.Listen[1].String() != DefaultListen[1] {
		t.Errorf("Listen = %v", c.Listen)
	}
	if !c.MDNS || c.Public || c.RelayService {
		t.Errorf("bools = mdns %v public %v relay %v", c.MDNS, c.Public, c.RelayService)
	}
	if c.MetricsListen != "0.0.0.0:9464" || c.AdminListen != "127.0.0.1:7070" {
		t.Errorf("listen = %q %q", c.MetricsListen, c.AdminListen)
	}
	if c.LogFormat != LogText || c.LogLevel != slog.LevelInfo || c.AckPolicy != AckAutomatic {
		t.Errorf("log/ack = %v %v %v", c.LogFormat, c.LogLevel, c.AckPolicy)
	}
	if c.ReadyCatchUpTimeout != 2*time.Minute {
		t.Errorf("ReadyCatchUpTimeout = %v, want 2m", c.ReadyCatchUpTimeout)
	}
}

// An always-on (--public) node keeps many more connections than an edge unless told
// otherwise: with the edge's 150 it trimmed or refused most of a few hundred edges.
func TestConnLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		low, high int
	}{
		{"edge default", nil, 120, DefaultMaxPeersEdge},
		{"always-on default", []string{"--public"}, 800, DefaultMaxPeersPublic},
		{"explicit", []string{"--public", "--max-peers", "2000"}, 1600, 2000},
		{"explicit edge", []string{"--max-peers", "50"}, 40, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if low, high := c.ConnLimits(); low != tc.low || high != tc.high {
				t.Fatalf("ConnLimits = %d/%d, want %d/%d", low, high, tc.low, tc.high)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	yml := writeFile(t, "c.yaml", "network-id: from-yaml\nlog-level: warn\nmdns: false\nlisten:\n  - /ip4/127.0.0.1/tcp/5001\nannounce: /ip4/1.2.3.4/tcp/4001\n")
	cases := []struct {
		name      string
		args      []string
		env       map[string]string
		wantNet   string
		wantLevel slog.Level
		wantMDNS  bool
		wantList  []string
	}{
		{"yaml over default", []string{"--config", yml}, nil, "from-yaml", slog.LevelWarn, false, []string{"/ip4/127.0.0.1/tcp/5001"}},
		{"env over yaml", []string{"--config", yml},
			map[string]string{"PANDA_NETWORK_ID": "from-env", "PANDA_MDNS": "true", "PANDA_LISTEN": "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2"},
			"from-env", slog.LevelWarn, true, []string{"/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"}},
		{"flag over env", []string{"--config", yml, "--network-id", "from-flag", "--mdns=false", "--listen", "/ip4/127.0.0.1/tcp/7", "--listen", "/ip4/127.0.0.1/tcp/8"},
			map[string]string{"PANDA_NETWORK_ID": "from-env", "PANDA_MDNS": "true", "PANDA_LOG_LEVEL": "debug"},
			"from-flag", slog.LevelDebug, false, []string{"/ip4/127.0.0.1/tcp/7", "/ip4/127.0.0.1/tcp/8"}},
		{"config from env", nil, map[string]string{"PANDA_CONFIG": yml}, "from-yaml", slog.LevelWarn, false, []string{"/ip4/127.0.0.1/tcp/5001"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.NetworkIDName != tc.wantNet || c.NetworkID != operation.NetworkID(operation.HashOf([]byte(tc.wantNet))) {
				t.Errorf("network id = %q", c.NetworkIDName)
			}
			if c.LogLevel != tc.wantLevel {
				t.Errorf("log level = %v, want %v", c.LogLevel, tc.wantLevel)
			}
			if c.MDNS != tc.wantMDNS {
				t.Errorf("mdns = %v", c.MDNS)
			}
			var got []string
			for _, a := range c.Listen {
				got = append(got, a.String())
			}
			if strings.Join(got, " ") != strings.Join(tc.wantList, " ") {
				t.Errorf("listen = %v, want %v", got, tc.wantList)
			}
			if len(c.Announce) != 1 || c.Announce[0].String() != "/ip4/1.2.3.4/tcp/4001" {
				t.Errorf("announce = %v", c.Announce)
			}
		})
	}
}

func TestValidValues(t *testing.T) {
	tok := writeFile(t, "token", "s3cret\n")
	topics := writeFile(t, "topics", "# comment\nchat\n\n  "+strings.Repeat("ab", 32)+"  \nchat\n")
	c, err := load(t, []string{
		"--network-id", strings.Repeat("0A", 32),
		"--bootstrap", "/ip4/127.0.0.1/tcp/4001/p2p/" + testPeer,
		"--admin-listen", "0.0.0.0:7070", "--admin-token-file", tok,
		"--topics-file", topics, "--log-format", "JSON", "--ack-policy", "explicit",
		"--metrics-listen", "", "--data-dir", "/d", "--key-file", "/k",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NetworkID[0] != 0x0a || c.NetworkID[31] != 0x0a {
		t.Errorf("hex network id not decoded raw: %s", c.NetworkID)
	}
	if len(c.Bootstrap) != 1 || c.Bootstrap[0].ID.String() != testPeer || len(c.Bootstrap[0].Addrs) != 1 {
		t.Errorf("bootstrap = %v", c.Bootstrap)
	}
	if c.AdminToken != "s3cret" {
		t.Errorf("token = %q", c.AdminToken)
	}
	if len(c.Topics) != 2 || c.Topics[0].Name != "chat" || c.Topics[1].Topic[0] != 0xab {
		t.Errorf("topics = %+v", c.Topics)
	}
	if c.LogFormat != LogJSON || c.AckPolicy != AckExplicit || c.MetricsListen != "" {
		t.Errorf("format/ack/metrics = %v %v %q", c.LogFormat, c.AckPolicy, c.MetricsListen)
	}
	if c.DataDir != "/d" || c.KeyFile != "/k" {
		t.Errorf("paths = %q %q", c.DataDir, c.KeyFile)
	}
}

func TestInvalidValues(t *testing.T) {
	dir := t.TempDir()
	emptyTok := writeFile(t, "empty", "\n")
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		yaml    string
		wantKey string
		wantIn  []string // substrings of the message
	}{
		{"empty network id", []string{"--network-id", ""}, nil, "", "network-id", []string{`""`, "empty"}},
		{"network id newline", nil, map[string]string{"PANDA_NETWORK_ID": "a\nb"}, "", "network-id", []string{"env PANDA_NETWORK_ID", "newline"}},
		{"bad listen", []string{"--listen", "/ip4/999.0.0.1/tcp/1"}, nil, "", "listen", []string{"999.0.0.1", "multiaddr"}},
		{"no listen", nil, map[string]string{"PANDA_LISTEN": " , "}, "", "listen", []string{"at least one"}},
		{"bad announce", []string{"--announce", "localhost:4001"}, nil, "", "announce", []string{"localhost:4001"}},
		{"bootstrap without peer id", []string{"--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, nil, "", "bootstrap", []string{"/p2p/"}},
		{"bootstrap only peer id", []string{"--bootstrap", "/p2p/" + testPeer}, nil, "", "bootstrap", []string{"transport address"}},
		{"bad bool env", nil, map[string]string{"PANDA_MDNS": "maybe"}, "", "mdns", []string{"maybe", "true or false"}},
		{"log format", []string{"--log-format", "xml"}, nil, "", "log-format", []string{`"xml"`, "text or json"}},
		{"log level", []string{"--log-level", "loud"}, nil, "", "log-level", []string{`"loud"`}},
		{"ack policy", []string{"--ack-policy", "sometimes"}, nil, "", "ack-policy", []string{"sometimes"}},
		{"admin public without token", []string{"--admin-listen", "0.0.0.0:7070"}, nil, "", "admin-listen", []string{"0.0.0.0:7070", "admin-token-file"}},
		{"admin all interfaces without token", []string{"--admin-listen", ":7070"}, nil, "", "admin-listen", []string{"admin-token-file"}},
		{"admin bad address", []string{"--admin-listen", "127.0.0.1"}, nil, "", "admin-listen", []string{"host:port"}},
		{"metrics bad port", []string{"--metrics-listen", "0.0.0.0:http2"}, nil, "", "metrics-listen", []string{"port"}},
		{"missing token file", []string{"--admin-token-file", filepath.Join(dir, "nope")}, nil, "", "admin-token-file", []string{"no such file"}},
		{"empty token file", []string{"--admin-token-file", emptyTok}, nil, "", "admin-token-file", []string{"empty"}},
		{"missing topics file", []string{"--topics-file", filepath.Join(dir, "nope")}, nil, "", "topics-file", []string{"no such file"}},
		{"unknown yaml key", nil, nil, "network-id: x\nnetwork_id: y\nfoo: 1\n", "config", []string{"unknown key", "foo", "network_id"}},
		{"yaml config key", nil, nil, "config: other.yaml\n", "config", []string{"unknown key", "config"}},
		{"yaml wrong type", nil, nil, "mdns: [1]\n", "mdns", []string{"true or false"}},
		{"yaml list type", nil, nil, "listen: {a: b}\n", "listen", []string{"list of strings"}},
		{"yaml not a mapping", nil, nil, "- a\n- b\n", "config", []string{"mapping"}},
		{"yaml syntax", nil, nil, "a: [\n", "config", []string{"parse YAML"}},
		{"missing yaml", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, "", "config", []string{"none.yaml"}},
		{"empty data dir flag", []string{"--data-dir", ""}, nil, "", "data-dir", []string{"must not be empty"}},
		{"empty data dir env", nil, map[string]string{"PANDA_DATA_DIR": ""}, "", "data-dir", []string{"env PANDA_DATA_DIR", "must not be empty"}},
		{"max api topics", []string{"--max-api-topics", "-1"}, nil, "", "max-api-topics", []string{">= 0"}},
		{"max peers negative", []string{"--max-peers", "-5"}, nil, "", "max-peers", []string{">= 0"}},
		{"max peers too few", nil, map[string]string{"PANDA_MAX_PEERS": "3"}, "", "max-peers", []string{"at least 10"}},
		{"catch-up timeout unit", []string{"--ready-catch-up-timeout", "120"}, nil, "", "ready-catch-up-timeout", []string{`"120"`, "duration"}},
		{"catch-up timeout negative", nil, map[string]string{"PANDA_READY_CATCH_UP_TIMEOUT": "-1s"}, "", "ready-catch-up-timeout", []string{">= 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				args = append(args, "--config", writeFile(t, "c.yaml", tc.yaml))
			}
			_, err := load(t, args, tc.env)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *config.Error", err)
			}
			if ce.Key != tc.wantKey {
				t.Errorf("key = %q, want %q (%v)", ce.Key, tc.wantKey, err)
			}
			for _, s := range append(tc.wantIn, tc.wantKey) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestYAMLNumberAsString(t *testing.T) {
	c, err := load(t, []string{"--config", writeFile(t, "c.yaml", "network-id: 1234\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NetworkIDName != "1234" {
		t.Errorf("network id = %q", c.NetworkIDName)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7070": true, "localhost:1": true, "[::1]:7070": true, "127.8.9.1:1": true,
		"0.0.0.0:7070": false, ":7070": false, "10.0.0.1:7070": false, "[::]:1": false, "bogus": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("admin-token-file"); got != "PANDA_ADMIN_TOKEN_FILE" {
		t.Errorf("EnvName = %q", got)
	}
}
