//go:build tools

// Package tools pins the Kubernetes commands that pandanet's tests run: the envtest control
// plane (kube-apiserver, kube-controller-manager) and the rest of a real single-node cluster
// (kube-scheduler, kubelet, kube-proxy, kubectl) for `make test-cluster`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
