package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
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
