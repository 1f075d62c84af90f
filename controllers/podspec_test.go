package controllers

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestGracePeriodExceedsNodeShutdown: the kubelet must not SIGKILL a node while its own
// bounded shutdown (admin drain, then node close and store flush) is still running.
// NodeShutdownTimeout must follow the node's timeouts, read from its source so a change
// there fails here.
func TestGracePeriodExceedsNodeShutdown(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "cmd", "node", "run.go"))
	if err != nil {
		t.Fatal(err)
	}
	nodeTimeout := 0
	for _, name := range []string{"adminDrainTimeout", "nodeCloseTimeout"} {
		m := regexp.MustCompile(name + `\s*=\s*(\d+) \* time\.Second`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("cmd/node/run.go: %s not found; update NodeShutdownTimeout and this test", name)
		}
		n, _ := strconv.Atoi(string(m[1]))
		nodeTimeout += n
	}
	if nodeTimeout != NodeShutdownTimeout {
		t.Fatalf("node shutdown bound %ds, operator assumes %ds", nodeTimeout, NodeShutdownTimeout)
	}
	tmpl := BuildPodTemplate(unitNetwork(), "img")
	if g := *tmpl.Spec.TerminationGracePeriodSeconds; g <= int64(nodeTimeout) {
		t.Fatalf("terminationGracePeriodSeconds %d <= node shutdown timeout %d", g, nodeTimeout)
	}
}

// TestPodSettings: pod placement defaults (soft anti-affinity, soft zone spread) and the
// pod settings users expect, without letting pod labels override the selector.
func TestPodSettings(t *testing.T) {
	pn := unitNetwork()
	tmpl := BuildPodTemplate(pn, "img")
	aa := tmpl.Spec.Affinity.PodAntiAffinity
	if aa == nil || len(aa.PreferredDuringSchedulingIgnoredDuringExecution) != 1 || len(aa.RequiredDuringSchedulingIgnoredDuringExecution) != 0 ||
		aa.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
		t.Errorf("default anti-affinity: %+v", tmpl.Spec.Affinity)
	}
	if ts := tmpl.Spec.TopologySpreadConstraints; len(ts) != 1 || ts[0].WhenUnsatisfiable != corev1.ScheduleAnyway || ts[0].TopologyKey != corev1.LabelTopologyZone {
		t.Errorf("default spread: %+v", ts)
	}
	pn.Spec.Affinity = &corev1.Affinity{}
	pn.Spec.PodLabels = map[string]string{"team": "chat", "app.kubernetes.io/instance": "hijack"}
	pn.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	pn.Spec.ServiceAccountName = "panda"
	pn.Spec.PriorityClassName = "high"
	tmpl = BuildPodTemplate(pn, "img")
	if tmpl.Spec.Affinity.PodAntiAffinity != nil {
		t.Errorf("spec.affinity must replace the default")
	}
	if tmpl.Labels["team"] != "chat" || tmpl.Labels["app.kubernetes.io/instance"] != pn.Name {
		t.Errorf("labels %v", tmpl.Labels)
	}
	if len(tmpl.Spec.ImagePullSecrets) != 1 || tmpl.Spec.ServiceAccountName != "panda" || tmpl.Spec.PriorityClassName != "high" ||
		*tmpl.Spec.AutomountServiceAccountToken {
		t.Errorf("pod settings %+v", tmpl.Spec)
	}
}

// TestListenAddressesDualStack: the node listens on both address families (libp2p, admin
// and metrics), so IPv6-only and dual-stack clusters reach it.
func TestListenAddressesDualStack(t *testing.T) {
	args := strings.Join(nodeArgs(unitNetwork()), " ")
	for _, want := range []string{"--listen=/ip4/0.0.0.0/tcp/4001", "--listen=/ip6/::/tcp/4001",
		"--listen=/ip4/0.0.0.0/udp/4001/quic-v1", "--listen=/ip6/::/udp/4001/quic-v1",
		"--admin-listen=:7070", "--metrics-listen=:9464"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "0.0.0.0:") {
		t.Errorf("an IPv4-only HTTP listen address: %s", args)
	}
}
