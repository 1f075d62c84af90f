package main

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pandanet/pandanet/internal/metrics"
	"github.com/pandanet/pandanet/pkg/operation"
)

// minFreeBytes is the free space the data dir needs for the store to take the largest
// operation (1 MiB body) with its header and some index and WAL pages.
const minFreeBytes = operation.DefaultMaxPayloadSize + 64<<10

// storeHealth says whether the store can write. A node whose disk is full still answers
// and serves reads, but every publish and every received operation fails; readiness and
// the panda_store_writable gauge say so instead of "ok".
type storeHealth struct {
	dataDir string
	metrics *metrics.Metrics
	// free reports the bytes available to the process in dir (statfs; a variable for tests).
	free func(dir string) (uint64, error)

	mu       sync.Mutex
	writable bool
}

func newStoreHealth(dataDir string, m *metrics.Metrics) *storeHealth {
	return &storeHealth{dataDir: dataDir, metrics: m, free: freeBytes, writable: true}
}

func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// check returns why the store cannot write, or nil, and updates the gauge.
func (h *storeHealth) check() error {
	free, err := h.free(h.dataDir)
	if err == nil && free < minFreeBytes {
		err = fmt.Errorf("store cannot write: %d bytes free in %s, an operation may need %d", free, h.dataDir, uint64(minFreeBytes))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok := err == nil; ok != h.writable {
		h.writable = ok
		h.metrics.SetStoreWritable(ok)
	}
	return err
}
