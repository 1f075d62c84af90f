package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestImageTagsAgree pins the one tag story: `make images` tags the images with the chart's
// appVersion, the chart deploys that tag by default, and the kustomize manager (config/manager)
// names the same tag. A plain `helm install` or `kubectl apply -k` after `make images` then
// finds the images it needs.
func TestImageTagsAgree(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q, %v", chart.AppVersion, err)
	}

	manager, err := os.ReadFile(filepath.Join(root, "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`ghcr\.io/pandanet/panda-(?:operator|node):([^\s"]+)`).FindAllStringSubmatch(string(manager), -1)
	if len(refs) != 2 {
		t.Fatalf("want the operator and node image in config/manager/manager.yaml, found %v", refs)
	}
	for _, r := range refs {
		if r[1] != chart.AppVersion {
			t.Errorf("config/manager/manager.yaml uses %s, chart appVersion is %s", r[0], chart.AppVersion)
		}
	}

	objs := mustRender(t, nil)
	image, _ := deploymentContainer(t, objs)["image"].(string)
	if want := "ghcr.io/pandanet/panda-operator:" + chart.AppVersion; image != want {
		t.Errorf("chart default operator image %q, want %q", image, want)
	}
	if want := "--default-node-image=ghcr.io/pandanet/panda-node:" + chart.AppVersion; !slices.Contains(args(t, objs), want) {
		t.Errorf("chart default node image: args %v lack %s", args(t, objs), want)
	}

	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed: cannot check the Makefile's IMAGE_TAG")
	}
	out, err := exec.Command("make", "--no-print-directory", "-s", "-C", root, "image-tag").CombinedOutput()
	if err != nil {
		t.Fatalf("make image-tag: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != chart.AppVersion {
		t.Errorf("make images tags %q, chart appVersion is %q", got, chart.AppVersion)
	}
}
