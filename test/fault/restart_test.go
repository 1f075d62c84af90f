package fault

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
)

// The always-on node (public, relay service, everyone's bootstrap peer) is killed and
// restarted while two edges keep publishing; afterwards all three hold the same logs.
func TestAlwaysOnRestart(t *testing.T) {
	needBinary(t)
	root := t.TempDir()
	hub := newDaemon(t, "always-on", filepath.Join(root, "hub"), "", "127.0.0.1", "--public", "--relay-service")
	hub.start()
	e1 := newDaemon(t, "edge1", filepath.Join(root, "e1"), "", "127.0.0.1", "--bootstrap", hub.addr())
	e2 := newDaemon(t, "edge2", filepath.Join(root, "e2"), "", "127.0.0.1", "--bootstrap", hub.addr())
	e1.start()
	e2.start()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var published, failed atomic.Int64
	var stop atomic.Bool // not ctx: cancelling a request in flight would hide a stored publish
	var wg sync.WaitGroup
	for _, e := range []*daemon{e1, e2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if _, err := e.publish(ctx, fmt.Sprintf("%s message %d", e.name, i)); err != nil {
					failed.Add(1)
				} else {
					published.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	waitPositive(t, hub)
	hub.kill()
	killedAt := published.Load()
	// The edges keep publishing while the always-on node is down: the test is about those
	// operations, so it waits until there are some rather than sleeping and hoping.
	const minDuringOutage = 20
	testutil.Eventually(t, 60*time.Second, "edges publishing while the always-on node is down", func() (bool, error) {
		if failed.Load() > 0 {
			return false, fmt.Errorf("%d publishes failed", failed.Load())
		}
		return published.Load()-killedAt >= minDuringOutage, nil
	})
	duringOutage := published.Load() - killedAt
	hub.start()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d publishes on the edges failed while the always-on node restarted", failed.Load())
	}
	took := waitConverged(t, 90*time.Second, nil, hub, e1, e2)
	h, _ := hub.topics()
	if ops(h) != uint64(published.Load()) {
		t.Fatalf("converged on %d operations, the edges published %d", ops(h), published.Load())
	}
	t.Logf("edges published %d operations (%d while the always-on node was down); all three converged %v after publishing stopped",
		published.Load(), duringOutage, took.Round(time.Millisecond))
	hub.stop()
	checkStore(t, hub.dir, nil)
}

// waitPositive waits until d holds at least one operation (the session is up).
func waitPositive(t *testing.T, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h, err := d.topics(); err == nil && ops(h) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s received nothing in 30s", d.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
