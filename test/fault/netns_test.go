package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/admin"
)

// nsPrefix names every namespace this suite creates; the pid suffix lets a later run tell
// stale namespaces (dead owner) from those of a concurrent run.
const nsPrefix = "pfault"

// cleanStaleNamespaces deletes namespaces left by earlier runs whose process is gone.
func cleanStaleNamespaces(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^` + nsPrefix + `(\d+)-\S+`)
	for _, line := range strings.Split(string(out), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			deleteNamespace(m[0])
			t.Logf("removed stale namespace %s", m[0])
		}
	}
}

// deleteNamespace kills what still runs inside ns, then removes it (and its veth ends).
func deleteNamespace(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
}

// lab is a bridge namespace plus one namespace per node, each with a veth into the bridge
// and an address 10.213.0.(10+i)/24.
type lab struct {
	t     *testing.T
	nodes []string
}

func newLab(t *testing.T, n int) *lab {
	t.Helper()
	needRoot(t, "network namespaces")
	cleanStaleNamespaces(t)
	base := fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())
	br := base + "br"
	l := &lab{t: t}
	all := []string{br}
	t.Cleanup(func() {
		for _, ns := range all {
			deleteNamespace(ns)
		}
	})
	if out, err := exec.Command("ip", "netns", "add", br).CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable (%v: %s); skipping the namespace suite", err, out)
	}
	l.ip(br, "link", "set", "lo", "up")
	l.ip(br, "link", "add", "br0", "type", "bridge")
	l.ip(br, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%sn%d", base, i)
		run(t, "ip", "netns", "add", ns)
		all = append(all, ns)
		l.ip(ns, "link", "set", "lo", "up")
		veth := fmt.Sprintf("v%d", i)
		l.ip(br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip(br, "link", "set", veth, "master", "br0")
		l.ip(br, "link", "set", veth, "up")
		l.ip(ns, "addr", "add", fmt.Sprintf("10.213.0.%d/24", 10+i), "dev", "eth0")
		l.ip(ns, "link", "set", "eth0", "up")
		l.nodes = append(l.nodes, ns)
	}
	return l
}

func (l *lab) ip(ns string, args ...string) {
	l.t.Helper()
	run(l.t, "ip", append([]string{"-n", ns}, args...)...)
}

func (l *lab) addr(i int) string { return fmt.Sprintf("10.213.0.%d", 10+i) }

// nft runs an nft command inside node i's namespace.
func (l *lab) nft(i int, args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", l.nodes[i], "nft"}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft %s in %s: %v: %s", strings.Join(args, " "), l.nodes[i], err, out)
	}
	return string(out)
}

// lossy drops 10% of node i's outgoing packets at random (tc netem is not available).
func (l *lab) lossy(i int) {
	l.nft(i, "add", "table", "inet", "loss")
	l.nft(i, "add", "chain", "inet", "loss", "out", "{ type filter hook output priority 0; }")
	l.nft(i, "add", "rule", "inet", "loss", "out", "oifname", "eth0", "numgen", "random", "mod", "10", "==", "0", "counter", "drop")
}

// dropped returns how many packets the loss rule of node i dropped.
func (l *lab) dropped(i int) int {
	m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(l.nft(i, "list", "table", "inet", "loss"))
	if m == nil {
		l.t.Fatalf("no counter in the loss table of %s", l.nodes[i])
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// partition cuts node i off: everything in and out of its veth is dropped.
func (l *lab) partition(i int) {
	l.nft(i, "add", "table", "inet", "partition")
	l.nft(i, "add", "chain", "inet", "partition", "in", "{ type filter hook input priority 0; }")
	l.nft(i, "add", "chain", "inet", "partition", "out", "{ type filter hook output priority 0; }")
	l.nft(i, "add", "rule", "inet", "partition", "in", "iifname", "eth0", "drop")
	l.nft(i, "add", "rule", "inet", "partition", "out", "oifname", "eth0", "drop")
}

func (l *lab) heal(i int) { l.nft(i, "delete", "table", "inet", "partition") }

// Three daemons in separate network namespaces: they converge under 10% packet loss on
// every link, and after a partition of one node, during which both sides published, heals.
func TestNamespacesLossAndPartition(t *testing.T) {
	needBinary(t)
	l := newLab(t, 3)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ds := make([]*daemon, 3)
	ds[0] = newDaemon(t, "ns-hub", filepath.Join(root, "n0"), l.nodes[0], l.addr(0), "--public", "--relay-service")
	ds[0].start()
	for i := 1; i < 3; i++ {
		ds[i] = newDaemon(t, fmt.Sprintf("ns-edge%d", i), filepath.Join(root, fmt.Sprint("n", i)), l.nodes[i], l.addr(i), "--bootstrap", ds[0].addr())
		ds[i].start()
	}
	publishN := func(d *daemon, n int, tag string) {
		t.Helper()
		for j := range n {
			if _, err := d.publish(ctx, fmt.Sprintf("%s %s %d", d.name, tag, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range ds {
		publishN(d, 3, "baseline")
	}
	took := waitConverged(t, time.Minute, nil, ds...)
	t.Logf("baseline: 9 operations converged in %v", took.Round(time.Millisecond))

	// 10% loss on every node's outgoing packets.
	for i := range ds {
		l.lossy(i)
	}
	start := time.Now()
	for _, d := range ds {
		publishN(d, 20, "lossy")
	}
	took = waitConverged(t, 2*time.Minute, nil, ds...)
	dropped := 0
	for i := range ds {
		dropped += l.dropped(i)
	}
	if dropped == 0 {
		t.Fatal("the loss rules dropped no packet; the test did not exercise loss")
	}
	h, _ := ds[0].topics()
	t.Logf("10%% loss: %d operations converged %v after publishing ended (%v in total), %d packets dropped",
		ops(h), took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), dropped)
	for i := range ds {
		l.nft(i, "delete", "table", "inet", "loss")
	}

	// Partition edge 2; both sides publish.
	partStart := time.Now()
	l.partition(2)
	publishN(ds[1], 10, "partitioned side A")
	publishN(ds[2], 10, "partitioned side B")
	time.Sleep(2 * time.Second)
	a, _ := ds[0].topics()
	b, _ := ds[2].topics()
	if sameHeights(a, b) {
		t.Fatal("the partitioned node converged with the others; the partition is not effective")
	}
	healed := time.Now()
	l.heal(2)
	took = waitConverged(t, 2*time.Minute, nil, ds...)
	h, _ = ds[0].topics()
	if ops(h) != 9+60+20 {
		t.Fatalf("after healing the nodes hold %d operations, want %d", ops(h), 9+60+20)
	}
	t.Logf("partition of %v healed: %d operations converged %v after healing",
		healed.Sub(partStart).Round(time.Millisecond), ops(h), took.Round(time.Millisecond))
}

// peerIDs lists the peers d's admin API reports as connected.
func (d *daemon) peerIDs(ctx context.Context) (map[string]bool, error) {
	out, err := d.cli(ctx, "peers", "--json")
	if err != nil {
		return nil, err
	}
	var ps []admin.PeerStatus
	if err := json.Unmarshal(out, &ps); err != nil {
		return nil, fmt.Errorf("peers output %q: %w", out, err)
	}
	ids := map[string]bool{}
	for _, p := range ps {
		ids[p.PeerID] = true
	}
	return ids, nil
}

// Two daemons on one LAN segment (a bridge between namespaces; loopback carries no
// multicast) with no bootstrap peer find each other by mDNS and sync the topic they share.
// A third daemon on the same segment runs another network id: its mDNS service name
// differs, so it is never discovered and never receives anything.
func TestNamespacesMDNSDiscovery(t *testing.T) {
	needBinary(t)
	l := newLab(t, 3)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newDaemon(t, "mdns-a", filepath.Join(root, "a"), l.nodes[0], l.addr(0), "--mdns=true")
	b := newDaemon(t, "mdns-b", filepath.Join(root, "b"), l.nodes[1], l.addr(1), "--mdns=true")
	other := newDaemon(t, "mdns-other", filepath.Join(root, "other"), l.nodes[2], l.addr(2),
		"--mdns=true", "--network-id", "some-other-network")
	for _, d := range []*daemon{a, b, other} {
		d.start()
	}
	for i := range 3 {
		if _, err := a.publish(ctx, fmt.Sprintf("found by mdns %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.publish(ctx, "other network"); err != nil {
		t.Fatal(err)
	}
	took := waitConverged(t, time.Minute, nil, a, b)
	h, _ := b.topics()
	if ops(h) != 3 {
		t.Fatalf("b holds %d operations of the shared topic, want 3", ops(h))
	}
	t.Logf("discovered by mDNS and synced 3 operations %v after publishing", took.Round(time.Millisecond))

	for _, d := range []*daemon{a, b} {
		ids, err := d.peerIDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ids[other.peerID] {
			t.Errorf("%s is connected to the node of another network", d.name)
		}
	}
	if h, _ := other.topics(); ops(h) != 1 {
		t.Errorf("the node of another network holds %d operations, want only its own 1", ops(h))
	}
}
