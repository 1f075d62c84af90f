package main

import (
	"os"
	"testing"
)

func TestParseAndPlotGrowth(t *testing.T) {
	out := `goos: linux
BenchmarkCatchUpGrowth/ops=100000-2   	       1	63662933663 ns/op	      1571 ops/s	        63.66 s	   410.5 peak-rss-MiB
BenchmarkCatchUpGrowth/ops=10000-2    	       1	5593166747 ns/op	      1798 ops/s	        5.563 s	   48.96 peak-rss-MiB
BenchmarkOther-2 1 5 ns/op 3 s
PASS`
	points := parseGrowth(out, "ops")
	if len(points) != 2 || points[0].X != 10000 || points[1].X != 100000 {
		t.Fatalf("points %+v", points)
	}
	if points[0].Metrics["s"] != 5.563 || points[1].Metrics["peak-rss-MiB"] != 410.5 {
		t.Fatalf("metrics %+v", points)
	}
	g := growth{Name: "test", Param: "ops", XLabel: "ops", Metrics: []string{"s", "peak-rss-MiB"}, Chart: "growth-test", Points: points}
	paths, err := plotGrowth(t.TempDir(), &g)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("wrote %v", paths)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < 8 || string(data[1:4]) != "PNG" {
			t.Fatalf("%s is not a PNG", p)
		}
	}
}
