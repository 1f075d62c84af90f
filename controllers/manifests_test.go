package controllers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pandanet/pandanet/internal/testutil"
)

func decodeYAMLObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// TestSamplesApply: every sample is accepted by the real API server (schema, CEL).
func TestSamplesApply(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	files, err := filepath.Glob(filepath.Join("..", "config", "samples", "pandanet_*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("samples: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range decodeYAMLObjects(t, data) {
			o.SetNamespace(ns)
			if err := k8sClient.Create(context.Background(), o); err != nil {
				t.Errorf("%s: %s %s rejected: %v", f, o.GetKind(), o.GetName(), err)
			}
		}
	}
}

// TestDefaultKustomizationRenders: `kubectl kustomize config/default` renders and every
// namespaced/cluster object passes a server-side dry-run create.
func TestDefaultKustomizationRenders(t *testing.T) {
	requireEnv(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; config/default rendering not checked")
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join("..", "config", "default")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v", err)
	}
	objs := decodeYAMLObjects(t, out)
	ctx := context.Background()
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			// Created for real so namespaced objects can be dry-run into it.
			if err := k8sClient.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			continue // CRDs are already installed by envtest from the same files.
		}
		if err := k8sClient.Create(ctx, o, client.DryRunAll); err != nil {
			t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// TestNamespacedKustomization: config/namespaced (issue 11 item 6: namespaced mode in
// kustomize, not only the chart) grants the manager rules as a Role in the operator's
// namespace only, keeps exactly one read-only ClusterRole (nodes), runs the operator with
// --watch-namespaces set to that namespace, and (with envtest) every object passes a
// server-side dry-run.
func TestNamespacedKustomization(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("kubectl not installed; config/namespaced not checked")
		}
		t.Skip("kubectl not installed; config/namespaced not checked")
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join("..", "config", "namespaced")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/namespaced: %v", err)
	}
	generated, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wantRules := decodeYAMLObjects(t, generated)[0].Object["rules"]
	objs := decodeYAMLObjects(t, out)
	const ns = "panda-operator-system"
	var role, args []any
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			rules, _ := o.Object["rules"].([]any)
			if o.GetName() != "panda-operator-nodes" || len(rules) != 1 ||
				fmt.Sprint(rules[0]) != fmt.Sprint(map[string]any{"apiGroups": []any{""}, "resources": []any{"nodes"}, "verbs": []any{"get", "list", "watch"}}) {
				t.Errorf("ClusterRole %s grants %v; namespaced mode keeps only a read-only nodes ClusterRole", o.GetName(), rules)
			}
		case "ClusterRoleBinding":
			if ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name"); ref != "panda-operator-nodes" {
				t.Errorf("ClusterRoleBinding %s binds %s", o.GetName(), ref)
			}
		case "Role":
			if o.GetName() == "panda-operator-manager" {
				if o.GetNamespace() != ns {
					t.Errorf("manager Role in namespace %q, want %s", o.GetNamespace(), ns)
				}
				role, _ = o.Object["rules"].([]any)
			}
		case "Deployment":
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			args, _, _ = unstructured.NestedSlice(cs[0].(map[string]any), "args")
		}
	}
	if fmt.Sprint(role) != fmt.Sprint(wantRules) {
		t.Errorf("manager Role rules differ from config/rbac/role.yaml:\n got %v\nwant %v", role, wantRules)
	}
	if !slices.Contains(args, any("--watch-namespaces="+ns)) {
		t.Errorf("operator args %v lack --watch-namespaces=%s", args, ns)
	}
	if k8sClient == nil {
		return // rendering checked; the dry-run needs envtest
	}
	ctx := context.Background()
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := k8sClient.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := k8sClient.Create(ctx, o, client.DryRunAll); err != nil {
			t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}
