package controllers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
