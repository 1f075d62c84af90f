package fault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/p2p"
	"github.com/pandanet/pandanet/pkg/store"
)

// faultNetwork is the network id every daemon of this suite joins.
const faultNetwork = "pandanet-fault-suite"

// topicName is the topic the daemons sync (listed in each one's topics file).
const topicName = "fault"

var topicHex = func() string {
	id, err := operation.ParseID(topicName)
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(id[:])
}()

// daemon is one panda-node process, on the host's loopback or inside a network namespace.
type daemon struct {
	t      *testing.T
	name   string
	dir    string // data dir
	ns     string // network namespace, "" for the host
	ip     string // libp2p listen address
	port   int    // libp2p TCP port (fixed across restarts, so bootstrap addresses stay valid)
	admin  string // admin host:port (inside ns when ns != "")
	peerID string
	extra  []string
	logf   *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	client  *admin.Client
}

// newDaemon prepares (but does not start) a daemon with a fresh identity key in dir.
func newDaemon(t *testing.T, name, dir, ns, ip string, extra ...string) *daemon {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return newDaemonWithKey(t, name, dir, ns, ip, key, extra...)
}

func newDaemonWithKey(t *testing.T, name, dir, ns, ip string, key operation.PrivateKey, extra ...string) *daemon {
	t.Helper()
	keyFile := filepath.Join(dir, "identity.key")
	if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
		if err := operation.WriteKeyFile(keyFile, key); err != nil {
			t.Fatal(err)
		}
	}
	pid, err := p2p.PeerIDFromPublicKey(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	topics := filepath.Join(filepath.Dir(dir), name+".topics")
	if err := os.WriteFile(topics, []byte(topicName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(dir), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, name: name, dir: dir, ns: ns, ip: ip, peerID: pid.String(), logf: logf,
		extra: append([]string{"--topics-file", topics}, extra...)}
	if ns == "" {
		d.port, d.admin = testutil.FreePort(t), fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	} else {
		d.port, d.admin = 4001, "127.0.0.1:7070"
	}
	d.client, err = admin.NewClient(d.admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			d.dumpLog()
		}
		logf.Close()
	})
	return d
}

// addr is the bootstrap multiaddr of d.
func (d *daemon) addr() string {
	return fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", d.ip, d.port, d.peerID)
}

func (d *daemon) command(args ...string) *exec.Cmd {
	if d.ns != "" {
		return exec.Command("ip", append([]string{"netns", "exec", d.ns, nodeBin}, args...)...)
	}
	return exec.Command(nodeBin, args...)
}

// spawn starts the process without waiting for it to become ready.
func (d *daemon) spawn() {
	d.t.Helper()
	args := []string{"run", "--data-dir", d.dir, "--network-id", faultNetwork, "--mdns=false",
		"--listen", fmt.Sprintf("/ip4/%s/tcp/%d", d.ip, d.port),
		"--admin-listen", d.admin, "--metrics-listen", "", "--log-level", "debug"}
	cmd := d.command(append(args, d.extra...)...)
	fmt.Fprintf(d.logf, "\n===== %s: start %s\n", time.Now().Format(time.TimeOnly), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = d.logf, d.logf
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s: %v", d.name, err)
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.done, d.waitErr = cmd, done, nil
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.waitErr = err
		d.mu.Unlock()
		close(done)
	}()
}

// start spawns the daemon and waits until its admin API answers.
func (d *daemon) start() {
	d.t.Helper()
	d.spawn()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.topics(); err == nil {
			return
		}
		select {
		case <-d.done:
			d.t.Fatalf("%s exited during start: %v\n%s", d.name, d.exitErr(), d.logTail(30))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s did not come up within 30s\n%s", d.name, d.logTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitExit waits for the process to end by itself and returns its error.
func (d *daemon) waitExit(timeout time.Duration) (error, bool) {
	select {
	case <-d.done:
		return d.exitErr(), true
	case <-time.After(timeout):
		return nil, false
	}
}

func (d *daemon) exitErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitErr
}

// kill sends SIGKILL and waits until the process is gone (no-op if it is not running).
func (d *daemon) kill() { d.signal(syscall.SIGKILL) }

// stop sends SIGTERM (graceful shutdown) and waits.
func (d *daemon) stop() { d.signal(syscall.SIGTERM) }

func (d *daemon) signal(sig syscall.Signal) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	fmt.Fprintf(d.logf, "===== %s: %v\n", time.Now().Format(time.TimeOnly), sig)
}

// publish publishes msg and returns the acknowledged operation hash.
func (d *daemon) publish(ctx context.Context, msg string) (admin.PublishResult, error) {
	if d.ns == "" {
		return d.client.Publish(ctx, topicName, []byte(msg))
	}
	out, err := d.cli(ctx, "publish", "--json", "--topic", topicName, msg)
	if err != nil {
		return admin.PublishResult{}, err
	}
	var r admin.PublishResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("publish output %q: %w", out, err)
	}
	return r, nil
}

// heights returns author → height of the fault topic (nil map when the topic is empty).
func (d *daemon) topics() (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ts []admin.TopicStatus
	if d.ns == "" {
		var err error
		if ts, err = d.client.Topics(ctx); err != nil {
			return nil, err
		}
	} else {
		out, err := d.cli(ctx, "topics", "--json")
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(out, &ts); err != nil {
			return nil, fmt.Errorf("topics output %q: %w", out, err)
		}
	}
	h := map[string]uint64{}
	for _, t := range ts {
		if t.Topic == topicHex {
			for _, l := range t.Logs {
				h[l.Author] = l.Height
			}
		}
	}
	return h, nil
}

// cli runs a panda-node client command against d's admin API (inside d's namespace).
func (d *daemon) cli(ctx context.Context, args ...string) ([]byte, error) {
	cmd := d.command(append(args, "--admin-addr", d.admin)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", d.name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (d *daemon) logTail(n int) string {
	b, _ := os.ReadFile(d.logf.Name())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *daemon) dumpLog() {
	d.t.Logf("--- last log lines of %s (%s)\n%s", d.name, d.logf.Name(), d.logTail(40))
}

// ops counts the operations in a heights map (unpruned logs: height+1 each).
func ops(h map[string]uint64) uint64 {
	var n uint64
	for _, v := range h {
		n += v + 1
	}
	return n
}

func sameHeights(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func fmtHeights(h map[string]uint64) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s…=%d ", k[:8], h[k])
	}
	return strings.TrimSpace(b.String())
}

// waitConverged polls until every daemon reports the same heights and, if want is non-nil,
// exactly want. It returns how long that took; the timeout is only a failure guard.
func waitConverged(t *testing.T, timeout time.Duration, want map[string]uint64, ds ...*daemon) time.Duration {
	t.Helper()
	start := time.Now()
	var last []map[string]uint64
	for {
		last = last[:0]
		ok := true
		for _, d := range ds {
			h, err := d.topics()
			if err != nil {
				ok = false
				last = append(last, nil)
				continue
			}
			last = append(last, h)
		}
		if ok {
			for _, h := range last[1:] {
				ok = ok && sameHeights(last[0], h)
			}
			if want != nil {
				ok = ok && sameHeights(last[0], want)
			}
			if ok {
				return time.Since(start)
			}
		}
		if time.Since(start) > timeout {
			var b strings.Builder
			for i, d := range ds {
				fmt.Fprintf(&b, "\n  %s: %s", d.name, fmtHeights(last[i]))
			}
			if want != nil {
				fmt.Fprintf(&b, "\n  want: %s", fmtHeights(want))
			}
			t.Fatalf("no convergence within %v:%s", timeout, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkStore opens a dead daemon's database: integrity_check must pass, every log must be
// gap-free from seq 0 with matching backlinks, and every hash in acked must be stored. It
// returns the heights of the fault topic by author hex.
func checkStore(t *testing.T, dataDir string, acked []string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.Open(ctx, filepath.Join(dataDir, "panda.db"))
	if err != nil {
		t.Fatalf("open store after crash: %v", err)
	}
	defer s.Close()
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatalf("PRAGMA integrity_check: %v", err)
	}
	topics, err := s.Topics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, topic := range topics {
		heights, err := s.LogHeights(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		for author, logs := range heights {
			for log, h := range logs {
				next := uint64(0)
				var prev operation.Hash
				if err := s.LogRange(ctx, author, log, 0, h, func(op *operation.Operation) error {
					if op.SeqNum() != next {
						return fmt.Errorf("gap: expected seq %d, found %d", next, op.SeqNum())
					}
					if next > 0 && op.Header.Backlink != prev {
						return fmt.Errorf("seq %d: backlink does not point to seq %d", next, next-1)
					}
					if err := op.Validate(); err != nil {
						return fmt.Errorf("seq %d: %w", next, err)
					}
					prev, next = op.Hash, next+1
					return nil
				}); err != nil {
					t.Fatalf("log %s of %s: %v", log.Short(), author.Short(), err)
				}
				if next != h+1 {
					t.Fatalf("log %s of %s: height %d but %d operations", log.Short(), author.Short(), h, next)
				}
				if hex.EncodeToString(topic[:]) == topicHex {
					out[hex.EncodeToString(author[:])] = h
				}
			}
		}
	}
	missing := 0
	for _, hs := range acked {
		h, err := operation.ParseHash(hs)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Has(ctx, h); err != nil {
			t.Fatal(err)
		} else if !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged operations are missing after the crash", missing, len(acked))
	}
	return out
}
