package main

import (
	"strings"
	"testing"
)

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

// A growth row that failed after some sizes still says so (its chart lacks the point), and
// any failed row makes the run fail; a row skipped for a missing environment does not.
func TestFailuresAreReported(t *testing.T) {
	g := growth{Name: "peers row", Param: "peers", Metrics: []string{"s"},
		Points: []growthPoint{{X: 10, Metrics: map[string]float64{"s": 2.5}}},
		Error:  "exit status 1: --- FAIL: BenchmarkEdgePeers/peers=500\n    save peers: no such table"}
	var out strings.Builder
	printGrowth(&out, []growth{g})
	if !strings.Contains(out.String(), "ERROR after 1 sizes: exit status 1: --- FAIL: BenchmarkEdgePeers/peers=500 save peers: no such table") {
		t.Fatalf("growth table hides the failure:\n%s", out.String())
	}
	skipped := row{Name: "operator", Error: "skipped: KUBEBUILDER_ASSETS not set"}
	failed := row{Name: "ingest", Error: "benchmark did not report \"ops/s\""}
	if n := failures([]row{skipped}, nil); n != 0 {
		t.Fatalf("a skipped row counted as %d failures", n)
	}
	if n := failures([]row{skipped, failed}, []growth{g}); n != 2 {
		t.Fatalf("failures = %d, want 2", n)
	}
}
