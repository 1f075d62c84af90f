// Package chart tests the Helm chart charts/panda-operator with the Helm SDK (rendering, schema,
// lint, drift against the generated manifests) and validates every manifest the project ships
// (chart, kustomize config/default, config/samples) against a real API server with
// server-side dry run.
package chart

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	releaseName      = "panda-operator"
	releaseNamespace = "panda-system"
)

// repoRoot is the repository root, found from this file's location so tests work from any
// working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "panda-operator") }

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// render runs the equivalent of `helm install --dry-run` without a cluster (helm template):
// values are coalesced with values.yaml and validated against values.schema.json.
func render(t testing.TB, vals map[string]any) (string, error) {
	t.Helper()
	rel, err := install(t, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

func install(t testing.TB, vals map[string]any) (*release.Release, error) {
	t.Helper()
	c := loadChart(t)
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.ClientOnly = true
	inst.DryRun = true
	inst.Replace = true
	inst.ReleaseName = releaseName
	inst.Namespace = releaseNamespace
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	// Pretend the prometheus-operator CRDs are served, as a cluster with ServiceMonitors has them.
	inst.APIVersions = chartutil.VersionSet{"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"}
	if vals == nil {
		vals = map[string]any{}
	}
	return inst.Run(c, vals)
}

// mustRender renders and decodes the manifest into objects.
func mustRender(t testing.TB, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	manifest, err := render(t, vals)
	if err != nil {
		t.Fatalf("render chart with %v: %v", vals, err)
	}
	objs, err := decodeObjects([]byte(manifest))
	if err != nil {
		t.Fatalf("decode rendered chart: %v\n%s", err, manifest)
	}
	return objs
}

// decodeObjects splits a multi-document YAML stream into objects, skipping empty documents.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode document %d: %w", len(out)+1, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		// UnmarshalJSON keeps integers as int64, as the API machinery does.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("document %d: %w", len(out)+1, err)
		}
		out = append(out, u)
	}
}

// decodeFile decodes one YAML file (possibly multi-document).
func decodeFile(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func count(objs []*unstructured.Unstructured, kind string) int {
	n := 0
	for _, o := range objs {
		if o.GetKind() == kind {
			n++
		}
	}
	return n
}

func describe(objs []*unstructured.Unstructured) string {
	var b strings.Builder
	for _, o := range objs {
		fmt.Fprintf(&b, "%s/%s ", o.GetKind(), o.GetName())
	}
	return b.String()
}
