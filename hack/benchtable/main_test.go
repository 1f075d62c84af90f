package main

import "testing"

// A benchmark that skips must surface its reason, not a bare "did not report".
func TestSkipReason(t *testing.T) {
	out := "goos: linux\n--- SKIP: BenchmarkReconcile100TopicReplicas\n" +
		"    reconcile_bench_test.go:28: envtest binaries not found: run `make envtest`\nPASS\nok  	x	0.1s\n"
	if got, want := skipReason(out), "envtest binaries not found: run `make envtest`"; got != want {
		t.Fatalf("skipReason = %q, want %q", got, want)
	}
	if got := skipReason("BenchmarkX-2 1 5.0 s\nPASS\n"); got != "" {
		t.Fatalf("skipReason of a run without skips = %q, want empty", got)
	}
}
