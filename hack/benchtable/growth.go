package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// growth is one growth row: a benchmark with sub-benchmarks "<Param>=<x>", each reporting
// the same metrics, plotted as one chart per metric against x.
type growth struct {
	Name    string   `json:"name"`
	Package string   `json:"package"`
	Bench   string   `json:"benchmark"`
	Param   string   `json:"param"`   // the sub-benchmark parameter, e.g. "ops"
	XLabel  string   `json:"xLabel"`  // axis label for Param
	Metrics []string `json:"metrics"` // reported metrics to plot, one chart each
	// LargeEnv names the environment variable through which -large passes the row's
	// long, opt-in sizes (Large, comma-separated) to the benchmark.
	LargeEnv string `json:"-"`
	Large    string `json:"-"`
	// Chart is the PNG file name prefix in docs/.
	Chart string `json:"chart"`

	Command string        `json:"command"`
	Points  []growthPoint `json:"points"`
	Error   string        `json:"error,omitempty"`
}

type growthPoint struct {
	X       float64            `json:"x"`
	Metrics map[string]float64 `json:"metrics"`
}

var growthRows = []growth{
	{Name: "fresh edge catch-up vs log size", Package: "./pkg/node", Bench: "^BenchmarkCatchUpGrowth$", Param: "ops",
		XLabel: "operations in the topic (1 KiB each)", Metrics: []string{"s", "peak-rss-MiB"},
		LargeEnv: "PANDANET_BENCH_LARGE", Large: "1000000", Chart: "growth-catchup"},
	{Name: "one node's RSS vs followed topics (3 ops each)", Package: "./pkg/node", Bench: "^BenchmarkTopicMemoryGrowth$", Param: "topics",
		XLabel: "topics followed", Metrics: []string{"rss-MiB", "goroutines/topic"},
		LargeEnv: "PANDANET_BENCH_LARGE_TOPICS", Large: "100000", Chart: "growth-topics"},
	{Name: "always-on node vs connected edge peers (1 topic each)", Package: "./pkg/node", Bench: "^BenchmarkEdgePeers$", Param: "peers",
		XLabel: "edge peers syncing from one always-on node", Metrics: []string{"server-peak-rss-MiB", "server-cpu-s", "server-idle-cpu-pct", "s"},
		LargeEnv: "PANDANET_BENCH_LARGE_PEERS", Large: "500", Chart: "growth-peers"},
	{Name: "fresh edge syncs many topics x 10 ops", Package: "./pkg/node", Bench: "^BenchmarkSyncManyTopics$", Param: "topics",
		XLabel: "topics (10 operations each)", Metrics: []string{"s", "peak-rss-MiB"},
		LargeEnv: "PANDANET_BENCH_LARGE_SYNC_TOPICS", Large: "10000", Chart: "growth-sync-topics"},
	{Name: "serving memory, 3 fresh peers sync 1 MiB ops at once", Package: "./pkg/node", Bench: "^BenchmarkServeLargeOps$", Param: "ops",
		XLabel: "1 MiB operations in the topic", Metrics: []string{"server-peak-rss-MiB", "s"},
		LargeEnv: "PANDANET_BENCH_LARGE_OPS", Large: "1000", Chart: "growth-large-ops"},
}

// runGrowth runs one growth row, with its opt-in long sizes if large is set.
func runGrowth(tags string, large bool, g *growth) {
	g.Command = fmt.Sprintf("go test -tags '%s' -run '^$' -bench '%s' -benchtime 1x -count 1 %s", tags, g.Bench, g.Package)
	if large && g.LargeEnv != "" {
		g.Command = g.LargeEnv + "=" + g.Large + " " + g.Command
	}
	fmt.Fprintf(os.Stderr, "running %s\n", g.Command)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", tags, "-run", "^$", "-bench", g.Bench, "-benchtime", "1x", "-count", "1", "-timeout", "3h", g.Package)
	cmd.Env = os.Environ()
	if large && g.LargeEnv != "" {
		cmd.Env = append(cmd.Env, g.LargeEnv+"="+g.Large)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	g.Points = parseGrowth(out.String(), g.Param)
	if err != nil {
		tail := out.String()
		if len(tail) > 600 {
			tail = tail[len(tail)-600:]
		}
		g.Error = fmt.Sprintf("%v: %s", err, strings.TrimSpace(tail))
	}
}

// parseGrowth reads "BenchmarkX/<param>=<x>-2  N  v1 unit1 ..." lines, sorted by x.
func parseGrowth(out, param string) []growthPoint {
	var points []growthPoint
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		_, sub, ok := strings.Cut(fields[0], "/"+param+"=")
		if !ok {
			continue
		}
		if i := strings.LastIndexByte(sub, '-'); i > 0 { // GOMAXPROCS suffix
			sub = sub[:i]
		}
		x, err := strconv.ParseFloat(sub, 64)
		if err != nil {
			continue
		}
		p := growthPoint{X: x, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				p.Metrics[fields[i+1]] = v
			}
		}
		points = append(points, p)
	}
	slices.SortFunc(points, func(a, b growthPoint) int {
		switch {
		case a.X < b.X:
			return -1
		case a.X > b.X:
			return 1
		}
		return 0
	})
	return points
}

// plotGrowth writes one PNG per metric, docs/<Chart>-<metric>.png, and returns the paths.
func plotGrowth(dir string, g *growth) ([]string, error) {
	var paths []string
	for _, metric := range g.Metrics {
		xys := make(plotter.XYs, 0, len(g.Points))
		for _, p := range g.Points {
			if v, ok := p.Metrics[metric]; ok {
				xys = append(xys, plotter.XY{X: p.X, Y: v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		plt := plot.New()
		plt.Title.Text = g.Name
		plt.X.Label.Text = g.XLabel
		plt.Y.Label.Text = metric
		plt.X.Min, plt.Y.Min = 0, 0
		if err := plotutil.AddLinePoints(plt, metric, xys); err != nil {
			return paths, fmt.Errorf("plot %s: %w", metric, err)
		}
		path := fmt.Sprintf("%s/%s-%s.png", dir, g.Chart, metricFileName(metric))
		if err := plt.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
			return paths, fmt.Errorf("save %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func metricFileName(metric string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(metric))
}

func printGrowth(w io.Writer, gs []growth) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "growth row\tx\tmetrics")
	fmt.Fprintln(tw, "----------\t-\t-------")
	for _, g := range gs {
		if g.Error != "" && len(g.Points) == 0 {
			fmt.Fprintf(tw, "%s\t-\tERROR: %s\n", g.Name, oneLine(g.Error))
			continue
		}
		for _, p := range g.Points {
			var ms []string
			for _, m := range g.Metrics {
				if v, ok := p.Metrics[m]; ok {
					ms = append(ms, num(v)+" "+m)
				}
			}
			fmt.Fprintf(tw, "%s\t%s=%s\t%s\n", g.Name, g.Param, num(p.X), strings.Join(ms, ", "))
		}
		if g.Error != "" && len(g.Points) > 0 {
			// Some sizes ran, a later one failed: its chart lacks that point.
			fmt.Fprintf(tw, "%s\t-\tERROR after %d sizes: %s\n", g.Name, len(g.Points), oneLine(g.Error))
		}
	}
	tw.Flush()
}

// oneLine folds a multi-line error (go test's output tail) into one table cell.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
