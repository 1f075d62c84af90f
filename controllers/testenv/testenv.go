// Package testenv finds the envtest control-plane binaries for the operator's test
// suites, decides whether a suite may skip when they are missing, and gives processes
// beside a suite an admin kubeconfig.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// K8sVersion of the envtest binaries (mk/operator.mk ENVTEST_K8S_VERSION).
const K8sVersion = "1.37.2"

// AssetsDir returns a directory holding kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else
// <repo>/bin/k8s/<version>-<os>-<arch>, else the machine-wide cache that `make envtest`
// fills. repoRoot is the path from the test's package directory to the repository root.
func AssetsDir(repoRoot string) string {
	cands := []string{os.Getenv("KUBEBUILDER_ASSETS"),
		filepath.Join(repoRoot, "bin", "k8s", fmt.Sprintf("%s-%s-%s", K8sVersion, runtime.GOOS, runtime.GOARCH))}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache")
		}
	}
	if cache != "" {
		cands = append(cands, filepath.Join(cache, "pandanet", "envtest", K8sVersion))
	}
	for _, d := range cands {
		if d != "" && executable(filepath.Join(d, "kube-apiserver")) && executable(filepath.Join(d, "etcd")) {
			abs, err := filepath.Abs(d)
			if err == nil {
				return abs
			}
			return d
		}
	}
	return ""
}

// Binary returns the path of an extra binary (kube-controller-manager, kwok): the
// explicit env var if set, else the file in assetsDir.
func Binary(envVar, assetsDir, name string) string {
	if p := os.Getenv(envVar); p != "" && executable(p) {
		return p
	}
	if assetsDir != "" && executable(filepath.Join(assetsDir, name)) {
		return filepath.Join(assetsDir, name)
	}
	return ""
}

// MustRun is true in CI: missing binaries are a failure there, never a skip.
func MustRun() bool { return os.Getenv("CI") != "" }

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// AdminKubeconfig adds a cluster-admin user (group system:masters) to env's control plane
// and writes its kubeconfig into a temporary file, for processes that run beside the
// test (the operator binary, kube-controller-manager, kwok). It returns the file's path.
func AdminKubeconfig(t testing.TB, env *envtest.Environment, user string) string {
	t.Helper()
	u, err := env.ControlPlane.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("add envtest user %s: %v", user, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig of envtest user %s: %v", user, err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
