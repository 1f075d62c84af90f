package chart

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	fullname  = "panda-operator" // release name == chart name, so no prefix
	keepAnno  = "helm.sh/resource-policy"
	crdPandaN = "pandanetworks.pandanet.io"
	crdTopicR = "topicreplicas.pandanet.io"
)

func deploymentContainer(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	d := find(objs, "Deployment", fullname)
	if d == nil {
		t.Fatalf("no Deployment %s in %s", fullname, describe(objs))
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("want 1 container, got %d", len(cs))
	}
	return cs[0].(map[string]any)
}

func args(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	a, _, _ := unstructured.NestedStringSlice(deploymentContainer(t, objs), "args")
	return a
}

func TestRenderDefaults(t *testing.T) {
	objs := mustRender(t, nil)

	// Exactly these objects, no more: an unexpected object is a chart change worth a look.
	want := []string{
		"CustomResourceDefinition/" + crdPandaN, "CustomResourceDefinition/" + crdTopicR,
		"ServiceAccount/" + fullname,
		"ClusterRole/" + fullname + "-manager", "ClusterRoleBinding/" + fullname + "-manager",
		"Role/" + fullname + "-leader-election", "RoleBinding/" + fullname + "-leader-election",
		"Service/" + fullname + "-metrics", "Deployment/" + fullname,
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
		if o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "ClusterRole" &&
			o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != releaseNamespace {
			t.Errorf("%s/%s in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), releaseNamespace)
		}
		if o.GetLabels()["app.kubernetes.io/part-of"] != "pandanet" {
			t.Errorf("%s/%s lacks the part-of label", o.GetKind(), o.GetName())
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("objects:\n got %v\nwant %v", got, want)
	}

	for _, name := range []string{crdPandaN, crdTopicR} {
		crd := find(objs, "CustomResourceDefinition", name)
		if crd.GetAnnotations()[keepAnno] != "keep" {
			t.Errorf("CRD %s: annotations %v, want %s=keep by default", name, crd.GetAnnotations(), keepAnno)
		}
	}

	// The ClusterRole grants exactly the controller-gen rules.
	role := find(objs, "ClusterRole", fullname+"-manager")
	gen := decodeFile(t, filepath.Join(chartDir(t), "files", "rbac", "role.yaml"))
	if !reflect.DeepEqual(role.Object["rules"], gen[0].Object["rules"]) {
		t.Errorf("ClusterRole rules differ from files/rbac/role.yaml")
	}
	crb := find(objs, "ClusterRoleBinding", fullname+"-manager")
	subj, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
	if len(subj) != 1 || subj[0].(map[string]any)["name"] != fullname || subj[0].(map[string]any)["namespace"] != releaseNamespace {
		t.Errorf("ClusterRoleBinding subjects = %v", subj)
	}

	c := deploymentContainer(t, objs)
	if img := c["image"]; img != "ghcr.io/pandanet/panda-operator:0.1.0" {
		t.Errorf("image = %v, want appVersion tag", img)
	}
	if c["imagePullPolicy"] != "IfNotPresent" {
		t.Errorf("imagePullPolicy = %v", c["imagePullPolicy"])
	}
	a := args(t, objs)
	for _, w := range []string{"--leader-elect=true", "--health-probe-bind-address=:8081",
		"--metrics-bind-address=:8080", "--default-node-image=ghcr.io/pandanet/panda-node:0.1.0"} {
		if !slices.Contains(a, w) {
			t.Errorf("args %v lack %s", a, w)
		}
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if path, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); path == "" {
			t.Errorf("%s missing", probe)
		}
	}
	if ro, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !ro {
		t.Error("container securityContext.readOnlyRootFilesystem is not true")
	}
	if pe, found, _ := unstructured.NestedBool(c, "securityContext", "allowPrivilegeEscalation"); !found || pe {
		t.Error("container securityContext.allowPrivilegeEscalation is not false")
	}
	d := find(objs, "Deployment", fullname)
	if nr, _, _ := unstructured.NestedBool(d.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot"); !nr {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if _, found, _ := unstructured.NestedMap(c, "resources", "limits"); !found {
		t.Error("no resource limits by default")
	}
	svc := find(objs, "Service", fullname+"-metrics")
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	podLabels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
	for k, v := range sel {
		if podLabels[k] != v {
			t.Errorf("metrics Service selector %s=%s does not match the pod labels %v", k, v, podLabels)
		}
	}
}

func TestRenderSwitches(t *testing.T) {
	tests := []struct {
		name  string
		vals  map[string]any
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{
		{"crds.install=false", map[string]any{"crds": map[string]any{"install": false}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				if n := count(objs, "CustomResourceDefinition"); n != 0 {
					t.Errorf("%d CRDs rendered", n)
				}
			}},
		{"crds.keep=false", map[string]any{"crds": map[string]any{"keep": false}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				if n := count(objs, "CustomResourceDefinition"); n != 2 {
					t.Fatalf("%d CRDs rendered, want 2", n)
				}
				for _, o := range objs {
					if _, ok := o.GetAnnotations()[keepAnno]; ok && o.GetKind() == "CustomResourceDefinition" {
						t.Errorf("CRD %s still has %s", o.GetName(), keepAnno)
					}
				}
			}},
		{"serviceAccount.create=false", map[string]any{"serviceAccount": map[string]any{"create": false, "name": "byo-sa"}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				if count(objs, "ServiceAccount") != 0 {
					t.Error("ServiceAccount rendered")
				}
				d := find(objs, "Deployment", fullname)
				if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != "byo-sa" {
					t.Errorf("serviceAccountName = %q", sa)
				}
				crb := find(objs, "ClusterRoleBinding", "")
				subj, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
				if subj[0].(map[string]any)["name"] != "byo-sa" {
					t.Errorf("binding subject = %v", subj)
				}
			}},
		{"rbac.create=false", map[string]any{"rbac": map[string]any{"create": false}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				for _, k := range []string{"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
					if count(objs, k) != 0 {
						t.Errorf("%s rendered", k)
					}
				}
			}},
		// Namespaced mode: a Role per watched namespace (no cluster-wide Secrets access),
		// only read access to Nodes cluster-wide, and the flag that limits the caches.
		{"watchNamespaces", map[string]any{"watchNamespaces": []any{"apps", "games"}, "leaderElection": map[string]any{"enabled": false}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				if !slices.Contains(args(t, objs), "--watch-namespaces=apps,games") {
					t.Errorf("args %v", args(t, objs))
				}
				roles := 0
				for _, o := range objs {
					switch o.GetKind() {
					case "Role":
						roles++
						rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
						text := fmt.Sprint(rules)
						if !strings.Contains(text, "secrets") || strings.Contains(text, "nodes") {
							t.Errorf("Role in %s: %s", o.GetNamespace(), text)
						}
					case "ClusterRole":
						rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
						if text := fmt.Sprint(rules); strings.Contains(text, "secrets") || !strings.Contains(text, "nodes") ||
							strings.Contains(text, "create") {
							t.Errorf("ClusterRole %s: %s", o.GetName(), text)
						}
					}
				}
				if roles != 2 || count(objs, "RoleBinding") != 2 || count(objs, "ClusterRole") != 1 {
					t.Errorf("roles %d rolebindings %d clusterroles %d", roles, count(objs, "RoleBinding"), count(objs, "ClusterRole"))
				}
			}},
		{"leaderElection.enabled=false", map[string]any{"leaderElection": map[string]any{"enabled": false}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				if !slices.Contains(args(t, objs), "--leader-elect=false") {
					t.Errorf("args %v", args(t, objs))
				}
				if count(objs, "Role") != 0 || count(objs, "RoleBinding") != 0 {
					t.Error("leader election Role rendered")
				}
			}},
		{"metrics.enabled=false", map[string]any{"metrics": map[string]any{"enabled": false, "serviceMonitor": map[string]any{"enabled": true}}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				if find(objs, "Service", "") != nil || find(objs, "ServiceMonitor", "") != nil {
					t.Error("metrics Service or ServiceMonitor rendered with metrics off")
				}
				if !slices.Contains(args(t, objs), "--metrics-bind-address=0") {
					t.Errorf("args %v", args(t, objs))
				}
			}},
		{"serviceMonitor", map[string]any{"metrics": map[string]any{
			"port": 9090, "service": map[string]any{"port": 9443, "annotations": map[string]any{"a": "b"}},
			"serviceMonitor": map[string]any{"enabled": true, "interval": "15s", "scrapeTimeout": "10s",
				"labels": map[string]any{"release": "kube-prometheus"}}}},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				sm := find(objs, "ServiceMonitor", fullname)
				if sm == nil {
					t.Fatalf("no ServiceMonitor in %s", describe(objs))
				}
				if sm.GetLabels()["release"] != "kube-prometheus" {
					t.Errorf("labels %v", sm.GetLabels())
				}
				eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
				ep := eps[0].(map[string]any)
				if ep["port"] != "metrics" || ep["interval"] != "15s" || ep["scrapeTimeout"] != "10s" {
					t.Errorf("endpoint %v", ep)
				}
				svc := find(objs, "Service", fullname+"-metrics")
				ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
				if p := ports[0].(map[string]any); p["port"] != int64(9443) || p["name"] != "metrics" {
					t.Errorf("service port %v", p)
				}
				// The ServiceMonitor selects the metrics Service by its component label.
				sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
				for k, v := range sel {
					if svc.GetLabels()[k] != v {
						t.Errorf("ServiceMonitor selector %s=%s does not match Service labels %v", k, v, svc.GetLabels())
					}
				}
				if !slices.Contains(args(t, objs), "--metrics-bind-address=:9090") {
					t.Errorf("args %v", args(t, objs))
				}
			}},
		{"scheduling, image and resources", map[string]any{
			"replicaCount":     2,
			"image":            map[string]any{"repository": "registry.local/op", "tag": "v9", "pullPolicy": "Always"},
			"nodeImage":        map[string]any{"repository": "registry.local/node", "tag": "v9"},
			"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
			"nodeSelector":     map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":      []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "panda", "effect": "NoSchedule"}},
			"affinity": map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
				"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{
					"key": "kubernetes.io/arch", "operator": "In", "values": []any{"amd64"}}}}}}}},
			"resources":         map[string]any{"requests": map[string]any{"cpu": "50m"}},
			"priorityClassName": "system-cluster-critical",
			"podAnnotations":    map[string]any{"x": "y"},
			"extraArgs":         []any{"--zap-log-level=debug"},
			"extraEnv":          []any{map[string]any{"name": "GOMAXPROCS", "value": "2"}},
		}, func(t *testing.T, objs []*unstructured.Unstructured) {
			d := find(objs, "Deployment", fullname)
			spec := d.Object["spec"].(map[string]any)
			if spec["replicas"] != int64(2) {
				t.Errorf("replicas %v", spec["replicas"])
			}
			pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
			for _, k := range []string{"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} {
				if pod[k] == nil {
					t.Errorf("pod spec lacks %s", k)
				}
			}
			if pod["priorityClassName"] != "system-cluster-critical" {
				t.Errorf("priorityClassName %v", pod["priorityClassName"])
			}
			c := deploymentContainer(t, objs)
			if c["image"] != "registry.local/op:v9" || c["imagePullPolicy"] != "Always" {
				t.Errorf("image %v %v", c["image"], c["imagePullPolicy"])
			}
			a := args(t, objs)
			if !slices.Contains(a, "--default-node-image=registry.local/node:v9") || !slices.Contains(a, "--zap-log-level=debug") {
				t.Errorf("args %v", a)
			}
			if lim, found, _ := unstructured.NestedMap(c, "resources", "limits"); found {
				// Helm merges maps: a user's resources.requests keeps the default limits.
				if lim["memory"] != "256Mi" {
					t.Errorf("limits %v", lim)
				}
			}
			if cpu, _, _ := unstructured.NestedString(c, "resources", "requests", "cpu"); cpu != "50m" {
				t.Errorf("requests.cpu %q", cpu)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, mustRender(t, tc.vals)) })
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		vals map[string]any
		want string // fragment of the error
	}{
		{"unknown top-level key", map[string]any{"replicas": 2}, "replicas"},
		{"unknown nested key", map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enable": true}}}, "enable"},
		{"unknown crds key", map[string]any{"crds": map[string]any{"enabled": true}}, "enabled"},
		{"bad pullPolicy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
		{"replicaCount string", map[string]any{"replicaCount": "two"}, "replicaCount"},
		{"replicaCount negative", map[string]any{"replicaCount": -1}, "replicaCount"},
		{"crds.install string", map[string]any{"crds": map[string]any{"install": "yes"}}, "install"},
		{"port out of range", map[string]any{"metrics": map[string]any{"port": 70000}}, "port"},
		{"annotation not a string", map[string]any{"podAnnotations": map[string]any{"a": 1}}, "podAnnotations"},
		{"bad interval", map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"interval": "soon"}}}, "interval"},
		{"extraArgs not strings", map[string]any{"extraArgs": []any{1}}, "extraArgs"},
		{"empty image repository", map[string]any{"image": map[string]any{"repository": ""}}, "repository"},
		{"resources unknown key", map[string]any{"resources": map[string]any{"limit": map[string]any{}}}, "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.vals)
			if err == nil {
				t.Fatalf("values %v accepted", tc.vals)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			t.Logf("rejected: %v", err)
		})
	}
	// A ServiceAccount that is neither created nor named cannot work.
	if _, err := render(t, map[string]any{"serviceAccount": map[string]any{"create": false}}); err == nil ||
		!strings.Contains(err.Error(), "serviceAccount.name") {
		t.Errorf("serviceAccount.create=false without name: err = %v", err)
	}
}

// TestChartInSyncWithGeneratedManifests fails when the CRDs or the manager role in the chart
// differ from what `make manifests` generates; `make chart-sync` fixes it.
func TestChartInSyncWithGeneratedManifests(t *testing.T) {
	root := repoRoot(t)
	pairs := map[string]string{
		filepath.Join(root, "config", "crd", "bases"): filepath.Join(chartDir(t), "files", "crds"),
	}
	for src, dst := range pairs {
		srcFiles, err := filepath.Glob(filepath.Join(src, "*.yaml"))
		if err != nil || len(srcFiles) == 0 {
			t.Fatalf("no generated CRDs in %s (run `make manifests`): %v", src, err)
		}
		dstFiles, _ := filepath.Glob(filepath.Join(dst, "*.yaml"))
		if len(srcFiles) != len(dstFiles) {
			t.Errorf("%d CRDs in %s, %d in %s: run `make chart-sync`", len(srcFiles), src, len(dstFiles), dst)
		}
		for _, f := range srcFiles {
			sameFile(t, f, filepath.Join(dst, filepath.Base(f)))
		}
	}
	sameFile(t, filepath.Join(root, "config", "rbac", "role.yaml"), filepath.Join(chartDir(t), "files", "rbac", "role.yaml"))
}

func sameFile(t *testing.T, want, got string) {
	t.Helper()
	w, err := os.ReadFile(want)
	if err != nil {
		t.Errorf("read %s: %v", want, err)
		return
	}
	g, err := os.ReadFile(got)
	if err != nil {
		t.Errorf("read %s: %v (run `make chart-sync`)", got, err)
		return
	}
	if !bytes.Equal(w, g) {
		t.Errorf("%s differs from %s: run `make chart-sync`", got, want)
	}
}

// TestLint runs `helm lint` (the SDK's lint package, strict: warnings fail) with the default
// values and with every switch flipped.
func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults": nil,
		"all switches": {
			"crds":           map[string]any{"install": false, "keep": false},
			"serviceAccount": map[string]any{"create": false, "name": "x"},
			"rbac":           map[string]any{"create": false},
			"leaderElection": map[string]any{"enabled": false},
			"metrics":        map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := lint.AllWithKubeVersionAndSchemaValidation(chartDir(t), vals, releaseNamespace, nil, false)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				} else {
					t.Logf("lint: %s", m)
				}
			}
		})
	}
}

func TestNotes(t *testing.T) {
	for name, tc := range map[string]struct {
		vals       map[string]any
		want, omit []string
	}{
		"defaults": {nil,
			[]string{"rollout status deploy/panda-operator", "helm.sh/resource-policy: keep", "status.bootstrapPeers",
				"ghcr.io/pandanet/panda-node:0.1.0", "panda-operator-metrics, port 8080"},
			[]string{"ServiceMonitor", "crds.install=false"}},
		"no crds, service monitor": {map[string]any{"crds": map[string]any{"install": false},
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}},
			[]string{"crds.install=false", "ServiceMonitor panda-operator"},
			[]string{"resource-policy"}},
	} {
		t.Run(name, func(t *testing.T) {
			rel, err := install(t, tc.vals)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("NOTES:\n%s", rel.Info.Notes)
			for _, w := range tc.want {
				if !strings.Contains(rel.Info.Notes, w) {
					t.Errorf("NOTES lack %q:\n%s", w, rel.Info.Notes)
				}
			}
			for _, o := range tc.omit {
				if strings.Contains(rel.Info.Notes, o) {
					t.Errorf("NOTES contain %q:\n%s", o, rel.Info.Notes)
				}
			}
		})
	}
}
