// Package fault holds pandanet's fault and abuse suites (issue 7, items 2 and 3).
//
// The fault tests run the real panda-node binary: they kill it with SIGKILL mid-sync and
// mid-publish, start it on a read-only or full disk, restart the always-on node of a small
// network, and cut and degrade links between network namespaces. The abuse tests speak the
// log-sync protocol maliciously to an in-process node. docs/reliability.md summarises what
// each test shows.
package fault

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// nodeBinEnv names a panda-node binary to test instead of building one.
const nodeBinEnv = "PANDA_FAULT_NODE_BIN"

// nodeBin is the panda-node binary built once by TestMain (empty when the build was skipped).
var nodeBin string

// buildErr is why nodeBin is empty; daemon tests fail with it.
var buildErr error

func TestMain(m *testing.M) {
	if os.Getenv(floodEnv) != "" {
		// Re-executed inside the attacker's namespace by TestNamespacesConnectionFlood.
		os.Exit(runFlood())
	}
	code := func() int {
		dir, err := os.MkdirTemp("", "pandanet-fault-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		switch {
		case os.Getenv(nodeBinEnv) != "":
			// Run the suite against another build (an older release, to compare).
			nodeBin = os.Getenv(nodeBinEnv)
		case !isShort():
			nodeBin, buildErr = buildNode(dir)
		}
		return m.Run()
	}()
	if code == 0 {
		// The abuse tests run libp2p hosts in-process; every goroutine must be gone.
		if err := goleak.Find(goleakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var goleakOpts = []goleak.Option{
	// Process-wide singletons of dependencies, started on first use and never stopped.
	goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	goleak.IgnoreAnyFunction("github.com/libp2p/go-flow-metrics.(*sweeper).run"),
	// Not ignored, because they stop when their owner closes: quicreuse.(*reuse).gc,
	// connmgr.(*BasicConnMgr).background, sql.(*DB).connectionOpener.
}

// isShort reports -test.short before flag.Parse has run (TestMain builds before m.Run).
func isShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" || a == "-short" {
			return true
		}
	}
	return false
}

// buildNode builds cmd/node with the Makefile's tags (without -race: the fault tests exercise
// the binary's durability, and a race build would only make the 2-core CI slower).
func buildNode(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "panda-node")
	cmd := exec.Command("go", "build", "-tags", "sqlite_omit_load_extension netgo osusergo", "-o", bin, "./cmd/node")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build panda-node: %v\n%s", err, out)
	}
	return bin, nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the pandanet module")
	}
	return filepath.Dir(mod), nil
}

// needBinary skips in -short mode and fails if the build failed.
func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the panda-node binary (not in -short)")
	}
	if nodeBin == "" {
		t.Fatalf("panda-node binary unavailable: %v", buildErr)
	}
}

// needRoot skips tests that mount file systems or create network namespaces.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root (mount / ip netns); run the suite as root to include it", what)
	}
}
