package main

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pandanet/pandanet/internal/metrics"
)

// TestStoreHealthFullDisk: with less free space than one operation needs, the store
// reports that it cannot write and the gauge drops to 0; with space back, both recover.
func TestStoreHealthFullDisk(t *testing.T) {
	m := metrics.New()
	h := newStoreHealth(t.TempDir(), m)
	var free uint64 = 1 << 30
	h.free = func(string) (uint64, error) { return free, nil }
	if err := h.check(); err != nil || testutil.ToFloat64(m.StoreWritable) != 1 {
		t.Fatalf("1 GiB free: %v, gauge %v", err, testutil.ToFloat64(m.StoreWritable))
	}
	free = 16 << 10
	if err := h.check(); err == nil || !strings.Contains(err.Error(), "store cannot write") || testutil.ToFloat64(m.StoreWritable) != 0 {
		t.Fatalf("16 KiB free: %v, gauge %v", err, testutil.ToFloat64(m.StoreWritable))
	}
	free = 64 << 20
	if err := h.check(); err != nil || testutil.ToFloat64(m.StoreWritable) != 1 {
		t.Fatalf("space back: %v, gauge %v", err, testutil.ToFloat64(m.StoreWritable))
	}
}
