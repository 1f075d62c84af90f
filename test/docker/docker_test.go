//go:build docker

// Package docker is the local Docker test of the panda-node image: it builds the image from
// the repository's Dockerfile (with local stand-ins for the base images unless told
// otherwise), runs three nodes on a private Docker network — one always-on relay, two edges
// bootstrapped to it by multiaddr — publishes through the CLI/admin API with `docker exec` and
// checks that the operations arrive on the other nodes.
//
// Run with `make test-docker`. Environment:
//
//	DOCKER             docker CLI to use (default: first of docker, /usr/bin/docker with BuildKit)
//	PANDA_NODE_IMAGE   use this image instead of building one
//	BUILDER_IMAGE, RUNTIME_IMAGE  base images for the build (default: test/docker/base-images.sh)
package docker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// Generous failure guards, not expectations: the first image build compiles SQLite and libp2p.
	buildTimeout = 30 * time.Minute
	syncTimeout  = 2 * time.Minute
	nodeUID      = 65532
)

type identity struct {
	PeerID    string `json:"peerId"`
	PublicKey string `json:"publicKey"`
}

type logStatus struct {
	Author string `json:"author"`
	Height uint64 `json:"height"`
}

type topicStatus struct {
	Topic      string      `json:"topic"`
	Operations int64       `json:"operations"`
	Logs       []logStatus `json:"logs"`
}

type event struct {
	Type    string `json:"type"`
	Author  string `json:"author"`
	Seq     uint64 `json:"seq"`
	Message []byte `json:"message"`
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// dockerCLI picks a docker client that can build with BuildKit: one with the buildx plugin, or
// one older than 23.0 (BuildKit built in, enabled by DOCKER_BUILDKIT=1).
func dockerCLI(t *testing.T) string {
	if d := os.Getenv("DOCKER"); d != "" {
		return d
	}
	for _, c := range []string{"docker", "/usr/bin/docker"} {
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if exec.Command(path, "buildx", "version").Run() == nil {
			return path
		}
		out, err := exec.Command(path, "version", "--format", "{{.Client.Version}}").Output()
		if err != nil {
			continue
		}
		if major, err := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0]); err == nil && major < 23 {
			return path
		}
	}
	t.Skip("no docker CLI with BuildKit (buildx plugin, or a client older than 23.0) found; set DOCKER")
	return ""
}

type harness struct {
	t      *testing.T
	docker string
}

// run runs a docker command and returns stdout; stderr goes into the error.
func (h *harness) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.docker, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (h *harness) must(ctx context.Context, args ...string) string {
	h.t.Helper()
	out, err := h.run(ctx, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// image builds the node image (or returns PANDA_NODE_IMAGE).
func (h *harness) image(ctx context.Context) string {
	t := h.t
	if img := os.Getenv("PANDA_NODE_IMAGE"); img != "" {
		return img
	}
	root := repoRoot(t)
	builder, runtimeImg := os.Getenv("BUILDER_IMAGE"), os.Getenv("RUNTIME_IMAGE")
	if builder == "" || runtimeImg == "" {
		cmd := exec.CommandContext(ctx, filepath.Join(root, "test", "docker", "base-images.sh"))
		cmd.Env = append(os.Environ(), "DOCKER="+h.docker)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("base-images.sh: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "BUILDER_IMAGE":
				builder = v
			case "RUNTIME_IMAGE":
				runtimeImg = v
			}
		}
	}
	tag := "pandanet-local/panda-node:test"
	start := time.Now()
	cmd := exec.CommandContext(ctx, h.docker, "build", "--target", "node",
		"--build-arg", "BUILDER_IMAGE="+builder, "--build-arg", "RUNTIME_IMAGE="+runtimeImg,
		"-t", tag, root)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, tailLines(string(out), 60))
	}
	size := strings.TrimSpace(h.must(ctx, "image", "inspect", "--format", "{{.Size}}", tag))
	t.Logf("built %s in %s (base %s, runtime %s), %s bytes", tag, time.Since(start).Round(time.Second), builder, runtimeImg, size)
	return tag
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type node struct {
	name string
	id   identity
	ip   string
}

func TestThreeNodesOnPrivateNetwork(t *testing.T) {
	h := &harness{t: t, docker: dockerCLI(t)}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout+5*time.Minute)
	defer cancel()
	if _, err := h.run(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("docker engine not reachable: %v", err)
	}
	img := h.image(ctx)

	// The image runs as the non-root user and keeps data in a volume.
	cfgJSON := h.must(ctx, "image", "inspect", "--format", "{{json .Config}}", img)
	var imgCfg struct {
		User    string
		Volumes map[string]struct{}
	}
	if err := json.Unmarshal([]byte(cfgJSON), &imgCfg); err != nil {
		t.Fatalf("image config: %v", err)
	}
	if imgCfg.User != "65532:65532" {
		t.Errorf("image user = %q, want 65532:65532", imgCfg.User)
	}
	if _, ok := imgCfg.Volumes["/var/lib/panda"]; !ok {
		t.Errorf("image volumes = %v, want /var/lib/panda", imgCfg.Volumes)
	}

	suffix := randomSuffix(t)
	network := "pandanet-test-" + suffix
	networkID := "docker-test-" + suffix
	topic := "docker-test-topic-" + suffix
	dir := t.TempDir()

	// Cleanup is registered before anything is created, and runs on failure too: containers
	// (with their anonymous data volumes), then the network. On failure, logs first.
	var containers []string
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for _, c := range containers {
			if t.Failed() {
				logs, _ := exec.CommandContext(cctx, h.docker, "logs", "--tail", "80", c).CombinedOutput()
				t.Logf("--- logs of %s ---\n%s", c, logs)
			}
			if _, err := h.run(cctx, "rm", "-f", "-v", c); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if _, err := h.run(cctx, "network", "rm", network); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	// --internal: no route out of the network; the nodes only see each other.
	h.must(ctx, "network", "create", "--internal", "--label", "pandanet-test=1", network)

	// The topics file every node syncs (docs/node-contract.md "Topics file").
	topicsFile := filepath.Join(dir, "topics")
	writeFile(t, topicsFile, "# docker test\n"+topic+"\n")

	start := func(name string, extra ...string) node {
		keyFile := filepath.Join(dir, name+".key")
		// keygen without --out: key on stdout, identity on stderr.
		cmd := exec.CommandContext(ctx, h.docker, "run", "--rm", "--network", "none", img, "keygen", "--json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("keygen: %v: %s", err, stderr.String())
		}
		var id identity
		if err := json.Unmarshal(stderr.Bytes(), &id); err != nil {
			t.Fatalf("keygen identity %q: %v", stderr.String(), err)
		}
		writeFile(t, keyFile, stdout.String())
		mounts := []string{
			"-v", keyFile + ":/etc/panda/identity.key:ro",
			"-v", topicsFile + ":/etc/panda/topics:ro",
		}
		// `panda-node id` on the mounted file must agree with keygen.
		out := h.must(ctx, append(append([]string{"run", "--rm", "--network", "none"}, mounts...),
			img, "id", "--key-file", "/etc/panda/identity.key", "--json")...)
		var again identity
		if err := json.Unmarshal([]byte(out), &again); err != nil || again != id {
			t.Fatalf("id of %s = %q (%v), keygen said %+v", name, out, err, id)
		}

		cname := network + "-" + name
		args := []string{"run", "-d", "--name", cname, "--hostname", name, "--network", network,
			"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
			"--label", "pandanet-test=1"}
		args = append(args, mounts...)
		args = append(args, img, "run",
			"--network-id", networkID,
			"--key-file", "/etc/panda/identity.key",
			"--topics-file", "/etc/panda/topics",
			"--mdns=false", // discovery must come from the bootstrap address, not the LAN
			"--log-level", "debug")
		args = append(args, extra...)
		containers = append(containers, cname)
		h.must(ctx, args...)
		ip := strings.TrimSpace(h.must(ctx, "inspect", "--format",
			"{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", cname))
		if ip == "" {
			state := strings.TrimSpace(h.must(ctx, "inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}}", cname))
			t.Fatalf("%s has no address on %s (container %s)", cname, network, state)
		}
		n := node{name: cname, id: id, ip: ip}
		h.waitAdmin(ctx, n)
		return n
	}

	relay := start("relay", "--relay-service", "--public")
	bootstrap := fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", relay.ip, relay.id.PeerID)
	t.Logf("relay %s at %s", relay.name, bootstrap)
	edge1 := start("edge1", "--bootstrap", bootstrap)
	edge2 := start("edge2", "--bootstrap", bootstrap)

	// The edges find the relay through the bootstrap address alone.
	for _, e := range []node{edge1, edge2} {
		h.waitFor(ctx, e, "connected to the relay", func() (bool, string) {
			out, err := h.exec(ctx, e, "peers", "--json")
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(out, relay.id.PeerID), out
		})
	}

	msg1 := "hello from edge1 " + suffix
	pub := h.publish(ctx, edge1, topic, msg1)
	t.Logf("edge1 published seq %d hash %s", pub.Seq, pub.Hash)
	for _, n := range []node{relay, edge2} {
		h.waitForMessage(ctx, n, topic, edge1.id.PublicKey, msg1)
	}

	// And the other way round, so both edges author and both receive.
	msg2 := "hello from edge2 " + suffix
	h.publish(ctx, edge2, topic, msg2)
	for _, n := range []node{relay, edge1} {
		h.waitForMessage(ctx, n, topic, edge2.id.PublicKey, msg2)
	}

	// The node process runs as 65532 inside the container.
	for _, n := range []node{relay, edge1, edge2} {
		user := strings.TrimSpace(h.must(ctx, "inspect", "--format", "{{.Config.User}}", n.name))
		if user != "65532:65532" {
			t.Errorf("%s runs as %q", n.name, user)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o400); err != nil {
		t.Fatal(err)
	}
	// The node runs as 65532; as root we hand it the file, otherwise make it readable.
	if os.Getuid() == 0 {
		if err := os.Chown(path, nodeUID, nodeUID); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
}

// exec runs the panda-node CLI inside a container against its loopback admin API.
func (h *harness) exec(ctx context.Context, n node, args ...string) (string, error) {
	return h.run(ctx, append([]string{"exec", n.name, "panda-node"}, args...)...)
}

func (h *harness) waitAdmin(ctx context.Context, n node) {
	h.t.Helper()
	h.waitFor(ctx, n, "admin API up with the mounted identity", func() (bool, string) {
		out, err := h.exec(ctx, n, "status", "--json")
		if err != nil {
			return false, err.Error()
		}
		var st struct {
			PeerID string `json:"peerId"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, out
		}
		if st.PeerID != n.id.PeerID {
			h.t.Fatalf("%s reports peer id %s, key file says %s", n.name, st.PeerID, n.id.PeerID)
		}
		return true, out
	})
}

// waitFor polls cond until it holds or syncTimeout passes (a failure guard, not a timing
// expectation); on timeout the last observation is reported.
func (h *harness) waitFor(ctx context.Context, n node, what string, cond func() (bool, string)) {
	h.t.Helper()
	deadline := time.Now().Add(syncTimeout)
	var last string
	for {
		ok, obs := cond()
		if ok {
			return
		}
		last = obs
		if time.Now().After(deadline) || ctx.Err() != nil {
			h.t.Fatalf("%s: not %s after %s; last: %s", n.name, what, syncTimeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type published struct {
	Hash string `json:"hash"`
	Seq  uint64 `json:"seq"`
}

func (h *harness) publish(ctx context.Context, n node, topic, msg string) published {
	h.t.Helper()
	out, err := h.exec(ctx, n, "publish", "--topic", topic, "--json", msg)
	if err != nil {
		h.t.Fatalf("publish on %s: %v", n.name, err)
	}
	var p published
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Hash == "" {
		h.t.Fatalf("publish on %s: output %q: %v", n.name, out, err)
	}
	return p
}

// waitForMessage waits until n holds author's log in topic (admin topics), then reads the
// topic's events from the start and finds msg by author.
func (h *harness) waitForMessage(ctx context.Context, n node, topic, author, msg string) {
	h.t.Helper()
	h.waitFor(ctx, n, "holding "+author[:8]+"'s log", func() (bool, string) {
		out, err := h.exec(ctx, n, "topics", "--json")
		if err != nil {
			return false, err.Error()
		}
		var ts []topicStatus
		if err := json.Unmarshal([]byte(out), &ts); err != nil {
			return false, out
		}
		for _, tp := range ts {
			for _, l := range tp.Logs {
				// Height is the highest seq, so a log holding only seq 0 has height 0:
				// the log being listed at all means the node holds the author's entries.
				if l.Author == author {
					return true, out
				}
			}
		}
		return false, out
	})

	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	// -i so the exec'd subscriber ends when we close its stdin / kill the client.
	cmd := exec.CommandContext(sctx, h.docker, "exec", "-i", n.name, "panda-node", "subscribe",
		"--topic", topic, "--from", "start", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed by the context: the error is expected
	}()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var seen []string
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			h.t.Fatalf("%s: bad event line %q: %v", n.name, sc.Text(), err)
		}
		if ev.Author == author && string(ev.Message) == msg {
			return
		}
		seen = append(seen, fmt.Sprintf("%s %s/%d %q", ev.Type, short(ev.Author), ev.Seq, ev.Message))
	}
	h.t.Fatalf("%s: message %q by %s not in the event stream (%v); seen %v; stderr %s",
		n.name, msg, short(author), sc.Err(), seen, stderr.String())
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
