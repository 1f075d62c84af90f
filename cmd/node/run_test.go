package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// TestRunDaemonGracefulShutdown runs the daemon in-process on an in-memory node: a publish
// that is in flight when the shutdown signal arrives completes successfully, and the node is
// closed only after every topic was closed.
func TestRunDaemonGracefulShutdown(t *testing.T) {
	mem := newMemNode()
	mem.entered = make(chan struct{})
	mem.publish = make(chan struct{})
	orig := openNode
	openNode = func(context.Context, nodeParams) (daemonNode, error) { return mem, nil }
	defer func() { openNode = orig }()

	dir := t.TempDir()
	topics := filepath.Join(dir, "topics")
	if err := os.WriteFile(topics, []byte("alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	if err := fs.Parse([]string{"--data-dir", dir, "--admin-listen", adminAddr, "--metrics-listen", freeAddr(t), "--topics-file", topics}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fs, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, nil, io.Discard) }()

	c, err := admin.NewClient(adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "admin API", func() bool { _, err := c.Status(context.Background()); return err == nil })
	ts, err := c.Topics(context.Background())
	if err != nil || len(ts) != 1 || ts[0].Topic != hexTopic("alpha") {
		t.Fatalf("topics from file = %+v, %v", ts, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "identity.key")); err != nil {
		t.Fatalf("identity key not created: %v", err)
	}

	pubDone := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), "alpha", []byte("in flight"))
		pubDone <- err
	}()
	<-mem.entered // the publish is inside the node now
	stop()        // SIGTERM
	select {
	case err := <-done:
		t.Fatalf("daemon returned (%v) while a publish was in flight", err)
	default:
	}
	close(mem.publish) // let the write finish
	if err := <-pubDone; err != nil {
		t.Fatalf("in-flight publish failed during shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runDaemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not shut down")
	}
	if !mem.closed || len(mem.logs[topicOf("alpha").Topic]) != 1 {
		t.Fatalf("node closed=%v, alpha holds %d operations", mem.closed, len(mem.logs[topicOf("alpha").Topic]))
	}
}

// TestRunDaemonShutdownWithSlowClients: an events client that stopped reading and a publish
// whose body trickles in do not hold up the shutdown: streams are closed first, the publish
// is cut after the drain timeout, and the node is closed with its own deadline.
func TestRunDaemonShutdownWithSlowClients(t *testing.T) {
	mem := newMemNode()
	orig, origDrain := openNode, adminDrainTimeout
	openNode = func(context.Context, nodeParams) (daemonNode, error) { return mem, nil }
	adminDrainTimeout = time.Second
	defer func() { openNode, adminDrainTimeout = orig, origDrain }()

	dir := t.TempDir()
	adminAddr := freeAddr(t)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	if err := fs.Parse([]string{"--data-dir", dir, "--admin-listen", adminAddr, "--metrics-listen", ""}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fs, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, nil, io.Discard) }()
	c, err := admin.NewClient(adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "admin API", func() bool { _, err := c.Status(context.Background()); return err == nil })

	// An events client that never reads, with a small receive buffer.
	raw, err := net.Dial("tcp", adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(raw, "GET /v1/topics/slow/events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "events stream open", func() bool {
		ts, _ := c.Topics(context.Background())
		return len(ts) == 1
	})
	// Enough 1 MiB messages to fill the socket buffers: the handler blocks in a write.
	msg := make([]byte, 1<<20)
	for i := 0; i < 24; i++ {
		if _, err := c.Publish(context.Background(), "slow", msg); err != nil {
			t.Fatal(err)
		}
	}
	// A publish whose body never completes.
	trickle, err := net.Dial("tcp", adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer trickle.Close()
	if _, err := fmt.Fprintf(trickle, "POST /v1/topics/slow/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	// The publish reached its handler once the server answers the next request (requests
	// on one server are read concurrently, so use the same signal: the status endpoint
	// still answers).
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runDaemon with slow clients: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not shut down")
	}
	if !mem.closed {
		t.Fatal("node not closed")
	}
}

// httpGet returns the status code and body of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunDaemonProbes: /healthz says "starting" until the node runs, then follows the
// node's watchdog (503 while the node is hung; before: always 200), and after a start /readyz waits until every topic of the file
// finished a catch-up sync with a peer: a failed sync does not count, one synced topic of
// two is not enough.
func TestRunDaemonProbes(t *testing.T) {
	mem := newMemNode()
	orig, origBound := openNode, livenessBound
	opening := make(chan struct{})
	openNode = func(context.Context, nodeParams) (daemonNode, error) { <-opening; return mem, nil }
	livenessBound = 200 * time.Millisecond
	defer func() { openNode, livenessBound = orig, origBound }()

	dir := t.TempDir()
	topics := filepath.Join(dir, "topics")
	if err := os.WriteFile(topics, []byte("alpha\nbeta\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddr(t)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	if err := fs.Parse([]string{"--data-dir", dir, "--admin-listen", "", "--metrics-listen", metricsAddr,
		"--topics-file", topics, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/" + mem.PeerID()}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fs, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, nil, io.Discard) }()
	base := "http://" + metricsAddr
	// While the node opens, liveness says "starting" (the startup probe bounds a start).
	waitFor(t, 20*time.Second, "/healthz answering", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	if code, body := httpGet(t, base+"/healthz"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("/healthz while the node opens = %d %q", code, body)
	}
	close(opening)
	waitFor(t, 20*time.Second, "both topics open", func() bool {
		return mem.isOpen(topicOf("alpha").Topic) && mem.isOpen(topicOf("beta").Topic)
	})
	waitFor(t, 20*time.Second, "/healthz 200 once the node runs", func() bool {
		code, _ := httpGet(t, base+"/healthz")
		return code == 200
	})
	if code, body := httpGet(t, base+"/readyz"); code != 503 || !strings.Contains(body, "2 of 2 topics") {
		t.Fatalf("/readyz before any sync = %d %q", code, body)
	}
	alpha, beta := topicOf("alpha").Topic, topicOf("beta").Topic
	// A failed session does not count. The topic's runner handles events in order, so once
	// it took the SyncStarted that follows, the failed SyncEnded was fully handled.
	p1, p2 := testPeer(t), testPeer(t)
	for _, ev := range []node.Event{
		node.SyncEnded{Peer: p1, Err: errors.New("stream reset")},
		node.SyncStarted{Peer: p1},
	} {
		if err := mem.emit(alpha, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "alpha's events handled", func() bool {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		return len(mem.open[alpha].events) == 0
	})
	if code, body := httpGet(t, base+"/readyz"); code != 503 || !strings.Contains(body, "2 of 2 topics") {
		t.Fatalf("/readyz after a failed sync = %d %q", code, body)
	}
	if err := mem.emit(alpha, node.SyncEnded{Peer: p1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "alpha caught up", func() bool {
		_, body := httpGet(t, base+"/readyz")
		return strings.Contains(body, "1 of 2 topics")
	})
	if err := mem.emit(beta, node.SyncEnded{Peer: p2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "ready after both topics synced", func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == 200
	})

	mem.hung.Store(true)
	if code, body := httpGet(t, base+"/healthz"); code != 503 || !strings.Contains(body, "hung") {
		t.Fatalf("/healthz of a hung node = %d %q", code, body)
	}
	mem.hung.Store(false)
	if code, body := httpGet(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz after the node moved again = %d %q", code, body)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("runDaemon: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// The catch-up wait is bounded: past the deadline the node is ready whatever is still
// missing, and stays ready; with no topics there is nothing to wait for.
func TestCatchUpDeadline(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCatchUp([]operation.Topic{topicOf("a").Topic, topicOf("b").Topic}, start.Add(2*time.Minute), quietLog())
	if err := c.err(start.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "2 of 2") {
		t.Fatalf("before the deadline: %v", err)
	}
	c.observe(topicOf("a").Topic, node.SyncEnded{Peer: testPeer(t)})
	if err := c.err(start.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("one topic synced: %v", err)
	}
	if err := c.err(start.Add(2 * time.Minute)); err != nil {
		t.Fatalf("at the deadline: %v", err)
	}
	if err := c.err(start.Add(time.Minute)); err != nil {
		t.Fatalf("caught up is final: %v", err)
	}
	if err := newCatchUp(nil, start, quietLog()).err(start.Add(-time.Hour)); err != nil {
		t.Fatalf("no topics: %v", err)
	}
	var none *catchUp
	if err := none.err(start); err != nil {
		t.Fatalf("no wait configured: %v", err)
	}
}

// testPeer is a fresh peer's public key.
func testPeer(t *testing.T) operation.PublicKey {
	t.Helper()
	k, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}
