package controllers

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/controllers/testenv"
)

// One API server and one manager for the whole package: starting envtest costs seconds,
// each test then works in its own namespace.
var (
	k8sClient  client.Client
	testConfig *rest.Config
	testScheme = runtime.NewScheme()
	fakeNodes  = &fakeNodeClient{byPod: map[string][]NodeTopicStatus{}}
	envSkipMsg string
)

const testImage = "example.org/panda-node:test"

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(pandav1.AddToScheme(testScheme))
}

// fakeNodeClient answers NodeStatusClient calls from a table keyed by "<ns>/<pod>".
type fakeNodeClient struct {
	mu    sync.Mutex
	byPod map[string][]NodeTopicStatus
}

func (f *fakeNodeClient) set(ns, pod string, topics []NodeTopicStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byPod[ns+"/"+pod] = topics
}

func (f *fakeNodeClient) Topics(_ context.Context, ep NodeEndpoint) ([]NodeTopicStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.byPod[ep.Namespace+"/"+ep.Pod]
	if !ok {
		return nil, nil
	}
	return append([]NodeTopicStatus(nil), t...), nil
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		// Unit tests only: no API server goroutines around, so leaks are checkable.
		envSkipMsg = "envtest suites skipped in -short mode"
		code := m.Run()
		if err := goleak.Find(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			return 1
		}
		return code
	}
	assets := testenv.AssetsDir(filepath.Join(".."))
	if assets == "" {
		if testenv.MustRun() {
			fmt.Fprintln(os.Stderr, "envtest binaries not found (KUBEBUILDER_ASSETS unset and bin/k8s empty); CI is set, so this is a failure: run `make envtest`")
			return 1
		}
		envSkipMsg = "envtest binaries not found: run `make envtest` (or set KUBEBUILDER_ASSETS) to run the API-server suites"
		return m.Run()
	}
	// Errors only: reconcile noise would drown test output; PANDA_TEST_LOG=1 shows all.
	ctrl.SetLogger(zap.New(zap.UseDevMode(os.Getenv("PANDA_TEST_LOG") != ""), zap.WriteTo(os.Stderr), zap.Level(logLevel())))
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	testConfig = cfg
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "new manager:", err)
		return 1
	}
	if err := Setup(mgr, Options{DefaultImage: testImage, Nodes: fakeNodes, PollInterval: 2 * time.Second, MonitoringRecheck: time.Second}); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	// Tests use a direct (uncached) client so they observe the API server, not the cache.
	if k8sClient, err = client.New(cfg, client.Options{Scheme: testScheme}); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	return m.Run()
}

func logLevel() zapcore.Level {
	if os.Getenv("PANDA_TEST_LOG") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

func keyOf(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

func requireEnv(t *testing.T) {
	t.Helper()
	if k8sClient == nil {
		t.Skip(envSkipMsg)
	}
}

var nsCounter struct {
	sync.Mutex
	n int
}

// newNamespace creates a fresh namespace per test (envtest has no namespace controller,
// so they are never cleaned up; names just have to be unique).
func newNamespace(t *testing.T) string {
	t.Helper()
	nsCounter.Lock()
	nsCounter.n++
	name := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1_000_000, nsCounter.n)
	nsCounter.Unlock()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// eventually polls fn until it returns nil or the deadline passes (a deadline for a
// condition, not a timing assertion).
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}
