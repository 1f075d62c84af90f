package fault

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// servingMemoryBudgetMiB is how much a node serving large operations may grow above idle,
// however many clients read slowly or peers sync from it.
const servingMemoryBudgetMiB = 128

// rssSampler records the highest resident memory of a process until stopped.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  float64
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := rssMiB(pid); err == nil {
				s.mu.Lock()
				s.max = max(s.max, rss)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) finish() float64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// stalledReader opens GET /events?from=start with a tiny receive buffer and never reads.
func stalledReader(t *testing.T, adminAddr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(c, "GET /v1/topics/%s/events?from=start HTTP/1.1\r\nHost: node\r\n\r\n", topicName); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServingMemoryLargeOperations: a node holding 300 operations of 1 MiB serves three
// from=start readers that stall, then three fresh peers that sync everything, and its
// resident memory stays within servingMemoryBudgetMiB above idle in both cases.
func TestServingMemoryLargeOperations(t *testing.T) {
	needBinary(t)
	const count, size = 300, 1 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root := t.TempDir()
	src := newDaemon(t, "big", filepath.Join(root, "big"), "", "127.0.0.1")
	src.start()
	body := make([]byte, size)
	for i := 0; i < count; i++ {
		copy(body, fmt.Sprintf("%08d", i))
		if _, err := src.client.Publish(ctx, topicName, body); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// Idle: a fresh process on the full data dir, as an always-on pod after a restart.
	src.stop()
	src.start()
	idle := sampleRSS(src.pid())
	time.Sleep(2 * time.Second)
	idleMiB := idle.finish()

	readers := sampleRSS(src.pid())
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		conns = append(conns, stalledReader(t, src.admin))
	}
	// The readers stall within the first few operations; sample while they hang (the
	// server drops them after its event write timeout of 30 s).
	time.Sleep(10 * time.Second)
	if _, err := src.topics(); err != nil {
		t.Fatalf("admin API while readers stall: %v", err)
	}
	readersMiB := readers.finish()
	for _, c := range conns {
		c.Close()
	}

	peers := sampleRSS(src.pid())
	start := time.Now()
	var fresh []*daemon
	for i := 0; i < 3; i++ {
		p := newDaemon(t, fmt.Sprint("fresh", i), filepath.Join(root, fmt.Sprint("fresh", i)), "", "127.0.0.1",
			"--bootstrap", src.addr())
		p.start()
		fresh = append(fresh, p)
	}
	want, err := src.topics()
	if err != nil {
		t.Fatal(err)
	}
	took := waitConverged(t, 5*time.Minute, want, fresh...)
	peersMiB := peers.finish()
	t.Logf("serving %d x %d KiB: idle RSS %.0f MiB; 3 stalled from=start readers: max %.0f MiB (+%.0f); 3 fresh peers synced %d MiB each in %v (converged %v after the last one started): max %.0f MiB (+%.0f)",
		count, size>>10, idleMiB, readersMiB, readersMiB-idleMiB, count*size>>20, time.Since(start).Round(time.Millisecond),
		took.Round(time.Millisecond), peersMiB, peersMiB-idleMiB)
	if readersMiB-idleMiB > servingMemoryBudgetMiB {
		t.Errorf("stalled readers grew the node by %.0f MiB (budget %d)", readersMiB-idleMiB, servingMemoryBudgetMiB)
	}
	if peersMiB-idleMiB > servingMemoryBudgetMiB {
		t.Errorf("syncing peers grew the node by %.0f MiB (budget %d)", peersMiB-idleMiB, servingMemoryBudgetMiB)
	}
}
