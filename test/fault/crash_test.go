package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// largeSyncOps is the size of the log the receiving node is killed in the middle of.
const largeSyncOps = 20_000

// seedLog writes n operations by key into <dir>/panda.db in-process (much faster than n
// admin API calls), so a daemon started on dir serves them.
func seedLog(t *testing.T, dir string, key operation.PrivateKey, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nd, err := node.New(ctx, node.WithDatabase(filepath.Join(dir, "panda.db")), node.WithPrivateKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	topic, err := operation.ParseTopic(topicHex)
	if err != nil {
		t.Fatal(err)
	}
	pub, sub, err := nd.Stream(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range sub.Events() {
		}
	}()
	// Keep a window of publishes in flight so the writer batches them.
	window := make(chan *node.Pending, 512)
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for p := range window {
			if _, err := p.Wait(ctx); err != nil {
				errc <- err
				for range window {
				}
				return
			}
		}
	}()
	for i := range n {
		p, err := pub.Publish(ctx, []byte(fmt.Sprintf("seed %06d %s", i, filler)))
		if err != nil {
			close(window)
			t.Fatal(err)
		}
		window <- p
	}
	close(window)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// filler makes operations ~300 bytes, like a short chat message with metadata.
const filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."

// SIGKILL the receiving node in the middle of a 20k-operation catch-up, then restart it.
func TestKillDuringLargeSync(t *testing.T) {
	needBinary(t)
	root := t.TempDir()
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srcDir := filepath.Join(root, "source")
	seedStart := time.Now()
	seedLog(t, srcDir, key, largeSyncOps)
	t.Logf("seeded %d operations in %v", largeSyncOps, time.Since(seedStart).Round(time.Millisecond))

	src := newDaemonWithKey(t, "source", srcDir, "", "127.0.0.1", key, "--public")
	src.start()
	want, err := src.topics()
	if err != nil || ops(want) != largeSyncOps {
		t.Fatalf("source serves %v (err %v), want %d operations", want, err, largeSyncOps)
	}
	rcv := newDaemon(t, "receiver", filepath.Join(root, "receiver"), "", "127.0.0.1", "--bootstrap", src.addr())
	syncStart := time.Now()
	rcv.start()

	// Kill once a few thousand operations arrived, well before the end.
	var got uint64
	for {
		h, err := rcv.topics()
		if err == nil {
			got = ops(h)
		}
		if got >= 3000 {
			break
		}
		if time.Since(syncStart) > 90*time.Second {
			t.Fatalf("receiver got only %d operations in 90s", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rcv.kill()
	after := checkStore(t, rcv.dir, nil)
	killedAt := ops(after)
	if killedAt >= largeSyncOps {
		t.Fatalf("the sync finished (%d operations) before the kill; the test did not interrupt it", killedAt)
	}
	t.Logf("SIGKILL after %v with %d/%d operations stored; integrity_check ok, log gap-free",
		time.Since(syncStart).Round(time.Millisecond), killedAt, largeSyncOps)

	restart := time.Now()
	rcv.start()
	took := waitConverged(t, 2*time.Minute, want, src, rcv)
	t.Logf("after restart the receiver converged in %v (%d remaining operations, %v since restart)",
		took.Round(time.Millisecond), largeSyncOps-int(killedAt), time.Since(restart).Round(time.Millisecond))
	rcv.stop()
	checkStore(t, rcv.dir, nil)
}

// SIGKILL a node while clients publish through its admin API as fast as they can; every
// publish it acknowledged must survive, and after a restart it converges with its peer,
// which published concurrently.
func TestKillDuringPublishStream(t *testing.T) {
	needBinary(t)
	root := t.TempDir()
	a := newDaemon(t, "a", filepath.Join(root, "a"), "", "127.0.0.1", "--public")
	a.start()
	b := newDaemon(t, "b", filepath.Join(root, "b"), "", "127.0.0.1", "--bootstrap", a.addr())
	b.start()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				r, err := a.publish(ctx, fmt.Sprintf("writer %d message %d", w, i))
				if err != nil {
					return // the kill: connection refused / reset
				}
				mu.Lock()
				acked = append(acked, r.Hash)
				mu.Unlock()
			}
		}()
	}
	// b publishes too, before and after the kill, so both directions must converge.
	var bAcked int
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := b.publish(ctx, fmt.Sprintf("b message %d", i)); err == nil {
				bAcked++
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 1500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d publishes acknowledged in 60s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.kill() // publishes are in flight right now
	wg.Wait()
	mu.Lock()
	confirmed := append([]string(nil), acked...)
	mu.Unlock()
	stored := checkStore(t, a.dir, confirmed)
	t.Logf("SIGKILL with 4 clients publishing: %d acknowledged, %d stored for a's log; integrity_check ok, all acknowledged present, gap-free",
		len(confirmed), ops(stored))

	time.Sleep(500 * time.Millisecond) // b keeps publishing while a is down
	a.start()
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-bDone
	took := waitConverged(t, time.Minute, nil, a, b)
	h, _ := a.topics()
	t.Logf("after restart a and b converged in %v on %d operations (b published %d)", took.Round(time.Millisecond), ops(h), bAcked)
}
