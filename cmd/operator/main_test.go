package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pandanet/pandanet/controllers/testenv"
	"github.com/pandanet/pandanet/internal/testutil"
)

// TestOperatorStarts runs the real main wiring against envtest: leader election takes
// its Lease, /healthz and /readyz answer, metrics are served, and it stops cleanly.
func TestOperatorStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("needs envtest")
	}
	assets := testenv.AssetsDir(filepath.Join("..", ".."))
	if assets == "" {
		if testenv.MustRun() {
			t.Fatal("envtest binaries missing and CI is set: run `make envtest`")
		}
		t.Skip("envtest binaries not found: run `make envtest`")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	t.Setenv("KUBECONFIG", testenv.AdminKubeconfig(t, env, "operator"))

	probe, metrics := testutil.FreePort(t), testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, flag.NewFlagSet("panda-operator", flag.ContinueOnError), []string{
			"--leader-elect", "--leader-election-namespace=default",
			fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probe),
			fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics),
			"--default-node-image=example.org/node:test", "--zap-log-level=error",
		})
	}()
	get := func(port int, path string) error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return nil
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = get(probe, "/healthz")
		if err == nil {
			err = get(probe, "/readyz")
		}
		if err == nil {
			err = get(metrics, "/metrics")
		}
		if err == nil {
			err = c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "panda-operator.pandanet.io"}, &coordinationv1.Lease{})
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("operator not up: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("operator exited early: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("operator stopped with error: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("operator did not stop")
	}
}

func TestCacheOptionsWatchNamespaces(t *testing.T) {
	if got := cacheOptions(""); got.DefaultNamespaces != nil {
		t.Errorf("no flag must watch all namespaces: %v", got.DefaultNamespaces)
	}
	got := cacheOptions("apps, games,")
	if len(got.DefaultNamespaces) != 2 {
		t.Fatalf("namespaces %v", got.DefaultNamespaces)
	}
	for _, ns := range []string{"apps", "games"} {
		if _, ok := got.DefaultNamespaces[ns]; !ok {
			t.Errorf("%s not watched: %v", ns, got.DefaultNamespaces)
		}
	}
}
