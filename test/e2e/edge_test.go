//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/testutil"
)

// edge is a panda-node process on the host, as an edge app would run it: its own data
// directory (kept across restarts), no mDNS, bootstrap peers given only from the PandaNetwork
// status, and the admin API on a loopback port that stays the same across restarts.
type edge struct {
	s       *suite
	name    string
	dir     string
	logPath string
	admin   string
	api     *admin.Client
	topic   string // the topic it subscribes and publishes to (the suite's, unless set)
	topicID string // hex, as the admin API reports it
	cmd     *exec.Cmd
	done    chan struct{}
}

// newEdge makes the edge's directory in t, which must outlive every scenario that uses the
// edge (a scenario's TempDir is removed when that scenario ends, under the running process).
func newEdge(t *testing.T, s *suite, name string) *edge {
	return newTopicEdge(t, s, name, s.topic)
}

// newTopicEdge is newEdge for another topic.
func newTopicEdge(t *testing.T, s *suite, name, topic string) *edge {
	dir := t.TempDir()
	// The topic subscription survives restarts through the topics file.
	if err := os.WriteFile(filepath.Join(dir, "topics"), []byte(topic+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	api, err := admin.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	return &edge{s: s, name: name, dir: dir, logPath: filepath.Join(dir, name+".log"), admin: addr, api: api, topic: topic}
}

// listenIP is where edges listen for libp2p: loopback unless E2E_EDGE_LISTEN_IP names an
// address the pods can reach (the host cluster's bridge IP), so pods can dial back.
func listenIP() string {
	if ip := os.Getenv("E2E_EDGE_LISTEN_IP"); ip != "" {
		return ip
	}
	return "127.0.0.1"
}

func (e *edge) start(bootstrap []string) {
	t := e.s.t
	t.Helper()
	if e.cmd != nil {
		t.Fatalf("%s already running", e.name)
	}
	ip := listenIP()
	args := []string{"run",
		"--data-dir", filepath.Join(e.dir, "data"),
		"--network-id", e.s.network().Spec.NetworkID,
		"--listen", "/ip4/" + ip + "/tcp/0", "--listen", "/ip4/" + ip + "/udp/0/quic-v1",
		"--admin-listen", e.admin,
		"--metrics-listen", "",
		"--topics-file", filepath.Join(e.dir, "topics"),
		"--mdns=false",
		"--log-level", "debug",
	}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	logFile, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logFile, "=== start %s %v\n", time.Now().Format(time.RFC3339Nano), args)
	cmd := exec.Command(e.s.cfg.nodeBin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", e.name, err)
	}
	e.cmd, e.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(e.done) }()
	testutil.EventuallyEvery(t, time.Minute, 200*time.Millisecond, e.name+" admin API up", func() (bool, error) {
		select {
		case <-e.done:
			return false, fmt.Errorf("%s exited: %s", e.name, tail(readFile(e.logPath), 20))
		default:
		}
		_, err := e.api.Status(e.s.ctx)
		return err == nil, err
	})
	id, err := e.api.AddTopic(e.s.ctx, e.topic)
	if err != nil {
		t.Fatalf("%s: subscribe %s: %v", e.name, e.topic, err)
	}
	e.topicID = id
}

// stop interrupts the process (clean shutdown, store flushed) and waits for it to exit.
func (e *edge) stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	e.cmd = nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// waitClusterPeer waits until the edge is connected to at least one in-cluster node.
func (e *edge) waitClusterPeer() {
	t := e.s.t
	t.Helper()
	cluster := e.s.peerSet()
	testutil.EventuallyEvery(t, syncTimeout, 500*time.Millisecond, e.name+" connected to an in-cluster node", func() (bool, error) {
		ps, err := e.api.Peers(e.s.ctx)
		if err != nil {
			return false, err
		}
		for _, p := range ps {
			if cluster[p.PeerID] {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d peers, none in the cluster", len(ps))
	})
}

// ops is how many operations of the topic the edge's store holds.
func (e *edge) ops(ctx context.Context) (int64, error) {
	ts, err := e.api.Topics(ctx)
	if err != nil {
		return 0, err
	}
	for _, tp := range ts {
		if tp.Topic == e.topicID {
			return tp.Operations, nil
		}
	}
	return 0, fmt.Errorf("%s not subscribed to %s", e.name, e.topic)
}

func (e *edge) waitOps(want int64) {
	t := e.s.t
	t.Helper()
	testutil.EventuallyEvery(t, syncTimeout, 500*time.Millisecond, fmt.Sprintf("%s holds %d operations", e.name, want), func() (bool, error) {
		n, err := e.ops(e.s.ctx)
		if err != nil {
			return false, err
		}
		return n == want, fmt.Errorf("%s holds %d of %d", e.name, n, want)
	})
}

// publishN publishes n operations through the admin API; each is acknowledged (stored
// locally) when Publish returns.
func (e *edge) publishN(n int, label string) {
	t := e.s.t
	t.Helper()
	for i := range n {
		if _, err := e.api.Publish(e.s.ctx, e.topic, fmt.Appendf(nil, "%s %s %d", e.name, label, i)); err != nil {
			t.Fatalf("%s: publish %d of %d: %v", e.name, i+1, n, err)
		}
	}
}

// publishTo publishes n operations to another topic the edge subscribed through the admin
// API (not its topics file: the subscription ends when the edge restarts).
func (e *edge) publishTo(topic string, n int, label string) {
	t := e.s.t
	t.Helper()
	for i := range n {
		if _, err := e.api.Publish(e.s.ctx, topic, fmt.Appendf(nil, "%s %s %d", e.name, label, i)); err != nil {
			t.Fatalf("%s: publish %d of %d to %s: %v", e.name, i+1, n, topic, err)
		}
	}
}
