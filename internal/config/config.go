// Package config loads the panda-node daemon configuration from flags, PANDA_* environment
// variables and an optional YAML file, exactly as docs/node-contract.md specifies, and
// validates it so that a bad value is reported once, at start-up, naming the flag/key and the
// offending value.
//
// Precedence is flag > environment > YAML > default, decided per key. List values come from
// repeated flags, comma-separated environment values or YAML lists.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/pandanet/pandanet/pkg/operation"
)

// EnvPrefix prefixes every environment variable: --data-dir is PANDA_DATA_DIR.
const EnvPrefix = "PANDA_"

// AckPolicy selects how operations delivered to subscribers are acknowledged.
type AckPolicy string

const (
	AckAutomatic AckPolicy = "automatic"
	AckExplicit  AckPolicy = "explicit"
)

// LogFormat selects the slog handler.
type LogFormat string

const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// Config is the validated daemon configuration. Raw strings that users typed are kept next
// to parsed values where it helps log messages.
type Config struct {
	ConfigFile string // --config, "" if none

	DataDir string // --data-dir
	KeyFile string // --key-file, defaults to <data-dir>/identity.key

	NetworkIDName string              // --network-id as typed
	NetworkID     operation.NetworkID // parsed with operation.ParseID

	Listen    []multiaddr.Multiaddr
	Announce  []multiaddr.Multiaddr
	Bootstrap []peer.AddrInfo // one entry per --bootstrap value, in order

	RelayService bool
	Public       bool
	MDNS         bool

	TopicsFile string  // "" if none
	Topics     []Topic // content of TopicsFile at load time

	MetricsListen string // host:port, "" disables
	AdminListen   string // host:port, "" disables

	AdminTokenFile string
	AdminToken     string // content of AdminTokenFile, surrounding white space removed

	LogFormat LogFormat
	LogLevel  slog.Level
	AckPolicy AckPolicy

	// MaxAPITopics caps the topics opened through the admin API (0: no cap).
	MaxAPITopics int

	// MaxPeers is the connection manager's high water mark as given (0: the default for the
	// node's role, see ConnLimits).
	MaxPeers int

	// ReadyCatchUpTimeout bounds how long readiness waits after start for every topic of
	// the topics file to finish a catch-up sync with a peer (0: no wait).
	ReadyCatchUpTimeout time.Duration

	// raw holds every option's resolved text, for Changed.
	raw map[string][]string
}

// DatabasePath is where the SQLite database lives.
func (c *Config) DatabasePath() string { return filepath.Join(c.DataDir, "panda.db") }

// Error is a configuration error: Key names the flag/key, Source where the value came from,
// Value the offending value. cmd/node exits with status 2 for these.
type Error struct {
	Key    string // flag name without dashes, e.g. "network-id"
	Source string // "flag --network-id", "env PANDA_NETWORK_ID", "config file x.yaml", "default"
	Value  string
	Err    error
}

func (e *Error) Error() string {
	if e.Value == "" && e.Source == "" {
		return fmt.Sprintf("%s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("invalid %s %q (from %s): %v", e.Key, e.Value, e.Source, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

type kind int

const (
	kindString kind = iota
	kindBool
	kindList
)

// option describes one key of the contract. The table below is the single source of truth
// for flags, environment variables and YAML keys.
type option struct {
	name  string
	kind  kind
	def   string   // string/bool default
	defs  []string // list default
	usage string
}

// DefaultListen are the default libp2p listen addresses (TCP and QUIC on one port number).
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}

var options = []option{
	{name: "config", kind: kindString, usage: "YAML file with any of the keys below (kebab-case, same names as the flags)"},
	{name: "data-dir", kind: kindString, usage: "directory for the SQLite database panda.db and the default key file (default $HOME/.local/share/panda-node)"},
	{name: "key-file", kind: kindString, usage: "Ed25519 identity seed file, 64 hex characters; created with mode 0600 if missing (default <data-dir>/identity.key)"},
	{name: "network-id", kind: kindString, def: "p2panda", usage: "network id: 64 hex characters, or any other string which is hashed with BLAKE3"},
	{name: "listen", kind: kindList, defs: DefaultListen, usage: "libp2p listen multiaddr (repeatable)"},
	{name: "announce", kind: kindList, usage: "extra public multiaddr to announce, e.g. a LoadBalancer address (repeatable)"},
	{name: "bootstrap", kind: kindList, usage: "bootstrap peer, a full multiaddr ending in /p2p/<peer id> (repeatable)"},
	{name: "relay-service", kind: kindBool, def: "false", usage: "run a circuit relay v2 service for peers of the same network"},
	{name: "public", kind: kindBool, def: "false", usage: "force reachability public (always-on nodes behind a Service/LoadBalancer)"},
	{name: "mdns", kind: kindBool, def: "true", usage: "discover peers on the LAN with mDNS (service name scoped by network id)"},
	{name: "topics-file", kind: kindString, usage: "file with one topic per line to subscribe, sync and persist; reloaded on change"},
	{name: "metrics-listen", kind: kindString, def: "0.0.0.0:9464", usage: "address for /metrics, /healthz and /readyz; empty disables"},
	{name: "admin-listen", kind: kindString, def: "127.0.0.1:7070", usage: "address of the admin HTTP API; empty disables"},
	{name: "admin-token-file", kind: kindString, usage: "file holding the admin API bearer token; required when --admin-listen is not loopback"},
	{name: "log-format", kind: kindString, def: "text", usage: "log format: text or json"},
	{name: "log-level", kind: kindString, def: "info", usage: "log level: debug, info, warn or error"},
	{name: "ack-policy", kind: kindString, def: "automatic", usage: "acknowledge delivered operations automatic or explicit (explicit: clients ack each operation through the admin API)"},
	{name: "max-peers", kind: kindString, def: "0", usage: "connections the node keeps before trimming the least useful ones (the connection manager's high water mark); 0: 1000 with --public (an always-on node serves many edges), 150 otherwise"},
	{name: "max-api-topics", kind: kindString, def: "1024", usage: "most topics the admin API may open besides those of --topics-file; 0 for no limit"},
	{name: "ready-catch-up-timeout", kind: kindString, def: "2m", usage: "after start, /readyz waits until every topic of --topics-file finished a catch-up sync with a peer, or this long; only with --bootstrap peers; 0 for no wait"},
}

// Connection manager defaults (see ConnLimits).
const (
	// DefaultMaxPeersPublic: an always-on node is where edges meet; 150 connections (the
	// edge default) made one refuse or trim most of a few hundred edges.
	DefaultMaxPeersPublic = 1000
	DefaultMaxPeersEdge   = 150
	// MinMaxPeers keeps room for bootstrap peers, relays and a few topic peers.
	MinMaxPeers = 10
)

// ConnLimits returns the connection manager's low and high water marks: MaxPeers, or the
// default for the node's role, and four fifths of it (what it trims down to).
func (c *Config) ConnLimits() (low, high int) {
	high = c.MaxPeers
	if high == 0 {
		high = DefaultMaxPeersEdge
		if c.Public {
			high = DefaultMaxPeersPublic
		}
	}
	return high * 4 / 5, high
}

// EnvName returns the environment variable for a flag name: "data-dir" → "PANDA_DATA_DIR".
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// RegisterFlags adds every contract flag to fs. Load reads them back.
func RegisterFlags(fs *pflag.FlagSet) {
	for _, o := range options {
		switch o.kind {
		case kindString:
			fs.String(o.name, o.def, o.usage+" [env "+EnvName(o.name)+"]")
		case kindBool:
			b, _ := strconv.ParseBool(o.def)
			fs.Bool(o.name, b, o.usage+" [env "+EnvName(o.name)+"]")
		case kindList:
			fs.StringArray(o.name, o.defs, o.usage+" [env "+EnvName(o.name)+", comma-separated]")
		}
	}
}

// value is one resolved raw value with its origin.
type value struct {
	str    string
	list   []string
	source string
}

// Lookup reads an environment variable; os.LookupEnv in production, a map in tests.
type Lookup func(string) (string, bool)

// Load resolves every key from fs (registered with RegisterFlags), the environment and the
// YAML file named by --config / PANDA_CONFIG, then validates the result. All returned
// errors are *Error.
func Load(fs *pflag.FlagSet, env Lookup) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	r := resolver{fs: fs, env: env}
	cfgFile := r.resolve(optionByName("config"))
	if cfgFile.str != "" {
		if err := r.loadYAML(cfgFile.str); err != nil {
			return nil, err
		}
	}
	vals := make(map[string]value, len(options))
	for _, o := range options {
		v := r.resolve(o)
		if r.err != nil {
			return nil, r.err
		}
		vals[o.name] = v
	}
	return build(vals)
}

func optionByName(name string) option {
	for _, o := range options {
		if o.name == name {
			return o
		}
	}
	panic("config: unknown option " + name)
}

type resolver struct {
	fs       *pflag.FlagSet
	env      Lookup
	yaml     map[string]json.RawMessage
	yamlPath string
	err      error
}

func (r *resolver) loadYAML(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Key: "config", Source: "flag --config or env PANDA_CONFIG", Value: path, Err: err}
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		return &Error{Key: "config", Source: "config file", Value: path, Err: fmt.Errorf("parse YAML: %w", err)}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || (m == nil && strings.TrimSpace(string(raw)) != "null") {
		return &Error{Key: "config", Source: "config file", Value: path, Err: errors.New("top level must be a mapping of keys to values")}
	}
	known := make(map[string]bool, len(options))
	for _, o := range options {
		known[o.name] = true
	}
	var unknown []string
	for k := range m {
		if !known[k] || k == "config" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return &Error{Key: "config", Source: "config file", Value: path,
			Err: fmt.Errorf("unknown key(s) %s (keys are the flag names, e.g. data-dir)", strings.Join(unknown, ", "))}
	}
	r.yaml, r.yamlPath = m, path
	return nil
}

// resolve applies the precedence flag > env > YAML > default for one option.
func (r *resolver) resolve(o option) value {
	if f := r.fs.Lookup(o.name); f != nil && f.Changed {
		src := "flag --" + o.name
		switch o.kind {
		case kindList:
			l, _ := r.fs.GetStringArray(o.name)
			return value{list: l, source: src}
		default:
			return value{str: f.Value.String(), source: src}
		}
	}
	if s, ok := r.env(EnvName(o.name)); ok {
		src := "env " + EnvName(o.name)
		if o.kind == kindList {
			return value{list: splitList(s), source: src}
		}
		return value{str: s, source: src}
	}
	if raw, ok := r.yaml[o.name]; ok && o.name != "config" {
		src := "config file " + r.yamlPath
		v, err := decodeYAMLValue(o, raw)
		if err != nil {
			r.err = &Error{Key: o.name, Source: src, Value: string(raw), Err: err}
			return value{}
		}
		v.source = src
		return v
	}
	return value{str: o.def, list: o.defs, source: "default"}
}

func decodeYAMLValue(o option, raw json.RawMessage) (value, error) {
	switch o.kind {
	case kindBool:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return value{}, errors.New("must be true or false")
		}
		return value{str: strconv.FormatBool(b)}, nil
	case kindList:
		var l []string
		if err := json.Unmarshal(raw, &l); err == nil {
			return value{list: l}, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return value{list: []string{s}}, nil
		}
		return value{}, errors.New("must be a list of strings")
	default:
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return value{str: s}, nil
		}
		// YAML turns `network-id: 1234` into a number; accept scalars and keep their text.
		var n json.Number
		if err := json.Unmarshal(raw, &n); err == nil {
			return value{str: n.String()}, nil
		}
		return value{}, errors.New("must be a string")
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// build validates resolved raw values into a Config.
func build(vals map[string]value) (*Config, error) {
	bad := func(key string, v string, err error) error {
		return &Error{Key: key, Source: vals[key].source, Value: v, Err: err}
	}
	c := &Config{ConfigFile: vals["config"].str, raw: make(map[string][]string, len(vals))}
	for name, v := range vals {
		c.raw[name] = append([]string{v.str}, v.list...)
	}

	for _, key := range []string{"relay-service", "public", "mdns"} {
		b, err := strconv.ParseBool(strings.TrimSpace(vals[key].str))
		if err != nil {
			return nil, bad(key, vals[key].str, errors.New("must be true or false"))
		}
		switch key {
		case "relay-service":
			c.RelayService = b
		case "public":
			c.Public = b
		case "mdns":
			c.MDNS = b
		}
	}

	c.DataDir = vals["data-dir"].str
	if c.DataDir == "" && vals["data-dir"].source != "default" {
		// An empty value typed on purpose (often an unset shell variable) must not
		// silently become $HOME/.local/share/panda-node.
		return nil, bad("data-dir", "", errors.New("must not be empty (leave it unset for the default)"))
	}
	if c.DataDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, bad("data-dir", "", fmt.Errorf("no default without $HOME (%v); set --data-dir", err))
		}
		c.DataDir = filepath.Join(home, ".local", "share", "panda-node")
	}
	c.KeyFile = vals["key-file"].str
	if c.KeyFile == "" {
		c.KeyFile = filepath.Join(c.DataDir, "identity.key")
	}

	c.NetworkIDName = vals["network-id"].str
	nid, err := operation.ParseNetworkID(c.NetworkIDName)
	if err != nil {
		return nil, bad("network-id", c.NetworkIDName, errors.Unwrap(err))
	}
	c.NetworkID = nid

	if c.Listen, err = parseAddrs(vals["listen"].list); err != nil {
		return nil, bad("listen", err.(*addrError).addr, err.(*addrError).err)
	}
	if len(c.Listen) == 0 {
		return nil, bad("listen", "", errors.New("at least one listen address is required"))
	}
	if c.Announce, err = parseAddrs(vals["announce"].list); err != nil {
		return nil, bad("announce", err.(*addrError).addr, err.(*addrError).err)
	}
	for _, s := range vals["bootstrap"].list {
		info, err := ParseBootstrap(s)
		if err != nil {
			return nil, bad("bootstrap", s, err)
		}
		c.Bootstrap = append(c.Bootstrap, *info)
	}

	c.MetricsListen = strings.TrimSpace(vals["metrics-listen"].str)
	if c.MetricsListen != "" {
		if err := checkHostPort(c.MetricsListen); err != nil {
			return nil, bad("metrics-listen", c.MetricsListen, err)
		}
	}
	c.AdminListen = strings.TrimSpace(vals["admin-listen"].str)
	c.AdminTokenFile = vals["admin-token-file"].str
	if c.AdminTokenFile != "" {
		tok, err := ReadTokenFile(c.AdminTokenFile)
		if err != nil {
			return nil, bad("admin-token-file", c.AdminTokenFile, err)
		}
		c.AdminToken = tok
	}
	if c.AdminListen != "" {
		if err := checkHostPort(c.AdminListen); err != nil {
			return nil, bad("admin-listen", c.AdminListen, err)
		}
		if c.AdminToken == "" && !IsLoopback(c.AdminListen) {
			return nil, bad("admin-listen", c.AdminListen,
				errors.New("a non-loopback admin address requires --admin-token-file"))
		}
	}

	c.TopicsFile = vals["topics-file"].str
	if c.TopicsFile != "" {
		set, err := LoadTopicsFile(c.TopicsFile)
		if err != nil {
			return nil, bad("topics-file", c.TopicsFile, err)
		}
		c.Topics = set
	}

	switch f := LogFormat(strings.ToLower(vals["log-format"].str)); f {
	case LogText, LogJSON:
		c.LogFormat = f
	default:
		return nil, bad("log-format", vals["log-format"].str, errors.New("must be text or json"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(vals["log-level"].str)); err != nil || vals["log-level"].str == "" {
		return nil, bad("log-level", vals["log-level"].str, errors.New("must be debug, info, warn or error"))
	}
	switch p := AckPolicy(strings.ToLower(vals["ack-policy"].str)); p {
	case AckAutomatic, AckExplicit:
		c.AckPolicy = p
	default:
		return nil, bad("ack-policy", vals["ack-policy"].str, errors.New("must be automatic or explicit"))
	}
	n, err := strconv.Atoi(strings.TrimSpace(vals["max-api-topics"].str))
	if err != nil || n < 0 {
		return nil, bad("max-api-topics", vals["max-api-topics"].str, errors.New("must be a number >= 0"))
	}
	c.MaxAPITopics = n
	n, err = strconv.Atoi(strings.TrimSpace(vals["max-peers"].str))
	if err != nil || n < 0 {
		return nil, bad("max-peers", vals["max-peers"].str, errors.New("must be a number >= 0"))
	}
	if n > 0 && n < MinMaxPeers {
		return nil, bad("max-peers", vals["max-peers"].str, fmt.Errorf("must be 0 (default) or at least %d", MinMaxPeers))
	}
	c.MaxPeers = n
	d, err := time.ParseDuration(strings.TrimSpace(vals["ready-catch-up-timeout"].str))
	if err != nil || d < 0 {
		return nil, bad("ready-catch-up-timeout", vals["ready-catch-up-timeout"].str, errors.New("must be a duration >= 0 such as 2m or 90s"))
	}
	c.ReadyCatchUpTimeout = d
	return c, nil
}

type addrError struct {
	addr string
	err  error
}

func (e *addrError) Error() string { return e.addr + ": " + e.err.Error() }

func parseAddrs(list []string) ([]multiaddr.Multiaddr, error) {
	out := make([]multiaddr.Multiaddr, 0, len(list))
	for _, s := range list {
		a, err := multiaddr.NewMultiaddr(strings.TrimSpace(s))
		if err != nil {
			return nil, &addrError{addr: s, err: fmt.Errorf("not a multiaddr: %w", err)}
		}
		out = append(out, a)
	}
	return out, nil
}

// ParseBootstrap parses a full multiaddr ending in /p2p/<peer id>.
func ParseBootstrap(s string) (*peer.AddrInfo, error) {
	a, err := multiaddr.NewMultiaddr(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not a multiaddr: %w", err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return nil, fmt.Errorf("must end in /p2p/<peer id>: %w", err)
	}
	if len(info.Addrs) == 0 {
		return nil, errors.New("needs a transport address before /p2p/<peer id>")
	}
	return info, nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 0..65535", port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("host %q is not a host name or IP address", host)
	}
	return nil
}

// IsLoopback reports whether host:port only accepts connections from this machine. An
// empty host (":7070") listens on every interface and is therefore not loopback.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ReadTokenFile reads a bearer token file; surrounding white space (a trailing newline from
// `echo` or a Secret) is removed. An empty token is an error, so a misconfigured mount does
// not silently turn authentication off.
func ReadTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", errors.New("token file is empty")
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", errors.New("token must be a single line")
	}
	return tok, nil
}
