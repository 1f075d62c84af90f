package main

import (
	"context"
	"io"
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
