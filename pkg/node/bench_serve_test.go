package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/operation"
)

// The serving benchmarks run the always-on node in a child process (the test binary
// re-executed with serveEnv set), so its CPU time and resident memory can be read from
// /proc on their own, apart from the edge nodes that sync from it.

const serveEnv = "PANDANET_BENCH_SERVE"

// serveConfig is what the child serves: a filled store and the topics to stream.
type serveConfig struct {
	DB     string   `json:"db"`
	Topics []string `json:"topics"`
}

// serveChild runs the always-on node when the test binary is re-executed with serveEnv
// set to a serveConfig file: a public relay node on the loopback with connection-manager
// water marks above the benchmarks' 500 edges (the default 100/150 would trim them), which
// streams every topic, prints "ADDR <multiaddr>" once the network layer follows them all,
// and closes when its stdin does.
func serveChild() bool {
	path := os.Getenv(serveEnv)
	if path == "" {
		return false
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "serve child:", err)
		os.Exit(2)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	var cfg serveConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		fail(err)
	}
	ctx := context.Background()
	n, err := New(ctx, WithDatabase(cfg.DB), WithNetwork(loopbackNetwork(func(c *NetworkConfig) {
		c.Public, c.RelayService = true, true
		c.ConnLow, c.ConnHigh = 1000, 1200
		c.RelayMaxReservations = 1200
	})))
	if err != nil {
		fail(err)
	}
	for _, s := range cfg.Topics {
		topic, err := operation.ParseTopic(s)
		if err != nil {
			fail(err)
		}
		_, sub, err := n.Stream(ctx, topic)
		if err != nil {
			fail(err)
		}
		go func() {
			for range sub.Events() {
			}
		}()
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		n.net.mu.Lock()
		have := len(n.net.forwarders)
		n.net.mu.Unlock()
		if have >= len(cfg.Topics) {
			break
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("network layer follows %d of %d topics", have, len(cfg.Topics)))
		}
	}
	fmt.Printf("ADDR %s\n", n.Addrs()[0])
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := n.Close(); err != nil {
		fail(err)
	}
	return true
}

// server is the always-on node in its child process.
type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  ma.Multiaddr
	done  chan error
}

// startServer starts the always-on node on the store at db, streaming topics, and waits
// until it serves them.
func startServer(b *testing.B, db string, topics []operation.Topic) *server {
	b.Helper()
	cfg := serveConfig{DB: db}
	for _, t := range topics {
		cfg.Topics = append(cfg.Topics, t.String())
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(b.TempDir(), "serve.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+cfgPath)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &server{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addrCh <- rest
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case a := <-addrCh:
		s.addr, err = ma.NewMultiaddr(a)
		if err != nil {
			s.stop(b)
			b.Fatal(err)
		}
	case err := <-s.done:
		b.Fatalf("always-on child exited before serving: %v", err)
	case <-time.After(5 * time.Minute):
		s.stop(b)
		b.Fatal("always-on child did not start serving within 5 minutes")
	}
	return s
}

// stop closes the child's stdin (it closes its node and exits) and waits for it.
func (s *server) stop(b *testing.B) {
	b.Helper()
	s.stdin.Close()
	select {
	case err := <-s.done:
		if err != nil {
			b.Errorf("always-on child: %v", err)
		}
	case <-time.After(2 * time.Minute):
		_ = s.cmd.Process.Kill()
		b.Errorf("always-on child did not exit within 2 minutes of its stdin closing")
	}
}

// procStatus returns a "<field>: <n> kB" value of the child's /proc/<pid>/status in bytes.
func (s *server) procStatus(b *testing.B, field string) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("serving memory needs /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("parse %q: %v", line, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, s.cmd.Process.Pid)
	return 0
}

// rss is the child's resident set now; peakRSS its peak since resetPeak.
func (s *server) rss(b *testing.B) int64     { return s.procStatus(b, "VmRSS") }
func (s *server) peakRSS(b *testing.B) int64 { return s.procStatus(b, "VmHWM") }

// resetPeak resets the child's VmHWM to its current resident set.
func (s *server) resetPeak(b *testing.B) {
	b.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0); err != nil {
		b.Skipf("peak RSS needs /proc/<pid>/clear_refs: %v", err)
	}
}

// cpu is the user plus system CPU time the child used so far (/proc/<pid>/stat fields 14
// and 15, in clock ticks of 1/100 s, the Linux USER_HZ).
func (s *server) cpu(b *testing.B) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("serving CPU needs /proc: %v", err)
	}
	// The command name (field 2) may contain spaces; the fields after it are plain.
	i := strings.LastIndexByte(string(data), ')')
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		b.Fatalf("unexpected /proc/<pid>/stat: %q", data)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse /proc/<pid>/stat: %q", data)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// edgeNetwork is the network config of the i-th edge node: bootstrapped to the always-on
// node, with the default (production) discovery intervals, listening (and so dialling,
// libp2p reuses the listen port) on its own loopback address 127.1.x.y: the always-on node
// allows at most 256 connections per IPv4 address (its per-subnet limit), as it would from
// one host on the internet. Edges do not start discovery walks of their own (they answer
// them): one topic's edges would otherwise also dial each other, and 500 of them in one
// process would open ~20,000 sockets among themselves, which measures the edges, not the
// always-on node.
func edgeNetwork(bootstrap ma.Multiaddr, i int) NetworkConfig {
	return loopbackNetwork(func(c *NetworkConfig) {
		c.ListenAddrs = []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.1.%d.%d/tcp/0", i/250, i%250+1))}
		c.BootstrapPeers = []ma.Multiaddr{bootstrap}
		c.WalkInterval, c.MaxWalkInterval = 0, 0
		c.DisableRandomWalk = true
	})
}

// BenchmarkEdgePeers: how one always-on node's CPU and memory grow with the edge peers
// that sync from it. The always-on node (its own process, file store) holds one topic per
// edge with 10 operations; N edge nodes (one process, in-memory stores, default
// discovery intervals) start at once, each streams its own topic and catches up. 10 and 100
// edges by default, plus the counts in PANDANET_BENCH_LARGE_PEERS (e.g. "500"; opt-in:
// 500 full nodes in one process take a while to start on two cores). Reported for the
// always-on node's process: peak and final resident set (`server-peak-rss-MiB`,
// `server-rss-MiB`), CPU seconds until every edge caught up (`server-cpu-s`), and the share
// of one core it uses over 10 s while the N edges stay connected and idle
// (`server-idle-cpu-pct`). `s` is the time from starting the edges until all caught up.
func BenchmarkEdgePeers(b *testing.B) {
	for _, n := range sizesWithEnv(b, []int{10, 100}, "PANDANET_BENCH_LARGE_PEERS") {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) { benchEdgePeers(b, n, 10) })
	}
}

// sizesWithEnv appends the comma-separated sizes in the environment variable env.
func sizesWithEnv(b *testing.B, sizes []int, env string) []int {
	b.Helper()
	if extra := os.Getenv(env); extra != "" {
		for _, f := range strings.Split(extra, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("%s: %q is not a positive number", env, f)
			}
			sizes = append(sizes, n)
		}
	}
	return sizes
}

func benchEdgePeers(b *testing.B, peers, opsPerTopic int) {
	ctx := context.Background()
	db := filepath.Join(b.TempDir(), "always-on.sqlite")
	topics := fillTopics(b, db, peers, opsPerTopic)
	srv := startServer(b, db, topics)
	defer srv.stop(b)
	var total, serverCPU time.Duration
	var peak, final int64
	var idlePct float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		srv.resetPeak(b)
		cpu0 := srv.cpu(b)
		want := int64(peers * opsPerTopic)
		stored, done, observe := countStored(want)
		b.StartTimer()
		start := time.Now()
		edges := make([]*Node, 0, peers)
		var drains sync.WaitGroup
		for i, topic := range topics {
			edge, err := New(ctx, observe, WithNetwork(edgeNetwork(srv.addr, i)))
			if err != nil {
				b.Fatal(err)
			}
			edges = append(edges, edge)
			followDrained(b, ctx, edge, topic, &drains)
		}
		deadline := time.Duration(max(1, peers/100)) * 5 * time.Minute
		select {
		case <-done:
		case <-time.After(deadline):
			b.Fatalf("edges stored %d of %d operations after %v", stored.Load(), want, deadline)
		}
		total += time.Since(start)
		b.StopTimer()
		serverCPU += srv.cpu(b) - cpu0
		peak = max(peak, srv.peakRSS(b))
		// Idle with every edge connected: keep-alives, discovery walks, relay reservations.
		idle0, at := srv.cpu(b), time.Now()
		time.Sleep(10 * time.Second)
		idlePct += 100 * (srv.cpu(b) - idle0).Seconds() / time.Since(at).Seconds()
		peak = max(peak, srv.peakRSS(b))
		final = max(final, srv.rss(b))
		var closers sync.WaitGroup
		for _, e := range edges {
			closers.Go(func() {
				if err := e.Close(); err != nil {
					b.Error(err)
				}
			})
		}
		closers.Wait()
		drains.Wait()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(total.Seconds()/n, "s")
	b.ReportMetric(serverCPU.Seconds()/n, "server-cpu-s")
	b.ReportMetric(idlePct/n, "server-idle-cpu-pct")
	b.ReportMetric(float64(peak)/(1<<20), "server-peak-rss-MiB")
	b.ReportMetric(float64(final)/(1<<20), "server-rss-MiB")
}

// BenchmarkServeLargeOps: serving memory of an always-on node (its own process, file
// store) while 3 fresh edge nodes (one process, file stores) sync a topic of 1 MiB
// operations from it at the same time: 100 and 300 operations by default, plus the counts
// in PANDANET_BENCH_LARGE_OPS. The goal is a flat line: the node streams the log, so its
// peak resident set (`server-peak-rss-MiB`) must not grow with the amount served.
func BenchmarkServeLargeOps(b *testing.B) {
	for _, n := range sizesWithEnv(b, []int{100, 300}, "PANDANET_BENCH_LARGE_OPS") {
		b.Run(fmt.Sprintf("ops=%d", n), func(b *testing.B) { benchServeLargeOps(b, n, 3) })
	}
}

func benchServeLargeOps(b *testing.B, ops, edges int) {
	const authors, body = 3, 1 << 20
	ctx := context.Background()
	topic := operation.Topic(operation.HashOf([]byte("large operations benchmark")))
	db := filepath.Join(b.TempDir(), "always-on.sqlite")
	fillTopic(b, db, topic, ops, authors, body)
	srv := startServer(b, db, []operation.Topic{topic})
	defer srv.stop(b)
	var total, serverCPU time.Duration
	var peak, base int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		base = max(base, srv.rss(b))
		srv.resetPeak(b)
		cpu0 := srv.cpu(b)
		want := int64(ops * edges)
		stored, done, observe := countStored(want)
		b.StartTimer()
		start := time.Now()
		nodes := make([]*Node, 0, edges)
		var drains sync.WaitGroup
		for e := range edges {
			edge, err := New(ctx, observe, WithDatabase(filepath.Join(b.TempDir(), fmt.Sprintf("edge-%d-%d.sqlite", i, e))),
				WithNetwork(edgeNetwork(srv.addr, e)))
			if err != nil {
				b.Fatal(err)
			}
			nodes = append(nodes, edge)
			followDrained(b, ctx, edge, topic, &drains)
		}
		deadline := time.Duration(max(1, ops/100)) * 5 * time.Minute
		select {
		case <-done:
		case <-time.After(deadline):
			b.Fatalf("edges stored %d of %d operations after %v", stored.Load(), want, deadline)
		}
		total += time.Since(start)
		b.StopTimer()
		serverCPU += srv.cpu(b) - cpu0
		peak = max(peak, srv.peakRSS(b))
		for _, e := range nodes {
			if err := e.Close(); err != nil {
				b.Error(err)
			}
		}
		drains.Wait()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(total.Seconds()/n, "s")
	b.ReportMetric(serverCPU.Seconds()/n, "server-cpu-s")
	b.ReportMetric(float64(peak)/(1<<20), "server-peak-rss-MiB")
	b.ReportMetric(float64(peak-base)/(1<<20), "server-peak-growth-MiB")
}
