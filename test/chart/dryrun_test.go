package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const dryRunManager = "pandanet-manifest-dryrun"

// TestManifestsServerSideDryRun sends every manifest the project ships — kustomize
// config/default, config/samples, and the Helm chart rendered with defaults and with every
// switch on — to a real kube-apiserver (envtest) as server-side-apply dry runs, the equivalent
// of `kubectl apply --server-side --dry-run=server`. That validates each object against the
// real OpenAPI schemas, the CRDs' structural schemas and CEL rules, and admission, without
// persisting anything.
func TestManifestsServerSideDryRun(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" && os.Getenv("CI") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: run `make test` (it provides the envtest binaries with `make envtest`) " +
			"or export KUBEBUILDER_ASSETS=bin/k8s/<version>-<os>-<arch>")
	}
	if testing.Short() {
		t.Skip("needs a kube-apiserver (envtest)")
	}
	root := repoRoot(t)

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		// The chart's optional ServiceMonitor needs prometheus-operator's CRD; a permissive
		// stand-in proves the kind is served as the chart expects, not its full schema.
		CRDs: []*apiextensionsv1.CustomResourceDefinition{serviceMonitorCRD()},
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type source func(t *testing.T) []*unstructured.Unstructured
	sets := map[string]source{
		"kustomize config/default": func(t *testing.T) []*unstructured.Unstructured {
			return kustomizeBuild(t, filepath.Join(root, "config", "default"))
		},
		"kustomize config/namespaced": func(t *testing.T) []*unstructured.Unstructured {
			return kustomizeBuild(t, filepath.Join(root, "config", "namespaced"))
		},
		"config/samples": func(t *testing.T) []*unstructured.Unstructured {
			return samples(t, filepath.Join(root, "config", "samples"))
		},
		"chart defaults": func(t *testing.T) []*unstructured.Unstructured { return mustRender(t, nil) },
		"chart, every switch on": func(t *testing.T) []*unstructured.Unstructured {
			return mustRender(t, map[string]any{
				"metrics":          map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}},
				"nodeSelector":     map[string]any{"kubernetes.io/os": "linux"},
				"tolerations":      []any{map[string]any{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}},
				"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
				"extraEnv":         []any{map[string]any{"name": "GOMAXPROCS", "value": "2"}},
			})
		},
	}
	for name, load := range sets {
		t.Run(name, func(t *testing.T) {
			objs := load(t)
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
			for _, o := range objs {
				if err := dryRunApply(ctx, c, o); err != nil {
					t.Errorf("%s %s/%s: %v", o.GetAPIVersion(), o.GetKind(), o.GetName(), err)
				} else {
					t.Logf("ok %s %s/%s", o.GetAPIVersion(), o.GetKind(), o.GetName())
				}
			}
		})
	}

	// Negative control: the same path must reject what a real cluster rejects, or the test
	// above proves nothing.
	t.Run("rejects invalid objects", func(t *testing.T) {
		dep := find(mustRender(t, nil), "Deployment", fullname)
		cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		cs[0].(map[string]any)["imagePullPolicy"] = "Sometimes"
		if err := unstructured.SetNestedSlice(dep.Object, cs, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		if err := dryRunApply(ctx, c, dep); !apierrors.IsInvalid(err) {
			t.Errorf("bad imagePullPolicy: err = %v, want Invalid", err)
		}
		typo := find(mustRender(t, nil), "Deployment", fullname)
		if err := unstructured.SetNestedField(typo.Object, int64(1), "spec", "replicaz"); err != nil {
			t.Fatal(err)
		}
		if err := dryRunApply(ctx, c, typo); err == nil {
			t.Error("unknown field spec.replicaz accepted")
		}
		pn := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "pandanet.io/v1alpha1", "kind": "PandaNetwork",
			"metadata": map[string]any{"name": "bad", "namespace": "default"},
			"spec":     map[string]any{"networkID": "x", "exposure": map[string]any{"type": "Ingress"}},
		}}
		if err := dryRunApply(ctx, c, pn); !apierrors.IsInvalid(err) {
			t.Errorf("PandaNetwork with exposure.type Ingress: err = %v, want Invalid", err)
		}
	})
}

// dryRunApply server-side-applies obj as a dry run. Namespaces are created for real (a dry-run
// Namespace would not make the objects inside it valid); objects of namespaced kinds without
// a namespace go to "default", as kubectl would do.
func dryRunApply(ctx context.Context, c client.Client, obj *unstructured.Unstructured) error {
	obj = obj.DeepCopy()
	if obj.GetKind() == "Namespace" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetName()}}
		if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace: %w", err)
		}
	}
	namespaced, err := c.IsObjectNamespaced(obj)
	if err != nil {
		return fmt.Errorf("resolve kind: %w", err)
	}
	if namespaced && obj.GetNamespace() == "" {
		obj.SetNamespace("default")
	}
	if namespaced && obj.GetNamespace() != "default" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}}
		if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", obj.GetNamespace(), err)
		}
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
		client.DryRunAll, client.ForceOwnership, client.FieldOwner(dryRunManager))
}

// kustomizeBuild is `kustomize build dir` (what `kubectl apply -k dir` applies).
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err != nil {
		t.Fatalf("%s has no kustomization.yaml: %v", dir, err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	data, err := res.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("decode kustomize output of %s: %v", dir, err)
	}
	return objs
}

// samples reads config/samples: through its kustomization if it has one, else every YAML file.
func samples(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err == nil {
		return kustomizeBuild(t, dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "kustomization") {
			continue
		}
		out = append(out, decodeFile(t, f)...)
	}
	return out
}

func serviceMonitorCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: "ServiceMonitor", ListKind: "ServiceMonitorList", Plural: "servicemonitors", Singular: "servicemonitor",
			},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", XPreserveUnknownFields: &preserve},
					},
				}},
			}},
		},
	}
}
