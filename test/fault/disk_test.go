package fault

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pandanet/pandanet/internal/testutil"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// mountReadOnly bind-mounts dir read-only onto itself (root ignores file modes, so chmod
// would not make the directory read-only for the daemon).
func mountReadOnly(t *testing.T, dir string) (unmount func()) {
	t.Helper()
	run(t, "mount", "--bind", dir, dir)
	done := false
	unmount = func() {
		if !done {
			done = true
			run(t, "umount", dir)
		}
	}
	t.Cleanup(unmount)
	run(t, "mount", "-o", "remount,bind,ro", dir)
	return unmount
}

// A read-only data directory: the daemon must refuse to run (exit non-zero, saying why)
// instead of running without persistence, and the data must be intact afterwards.
func TestReadOnlyDataDir(t *testing.T) {
	needBinary(t)
	needRoot(t, "bind-mounting a read-only data dir")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := t.TempDir()

	t.Run("fresh", func(t *testing.T) {
		dir := filepath.Join(root, "fresh")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mountReadOnly(t, dir)
		d := newDaemon(t, "fresh", filepath.Join(root, "fresh-parent", "data"), "", "127.0.0.1")
		d.dir = dir // the key file of newDaemon is elsewhere: nothing can be created here
		d.extra = append(d.extra, "--key-file", filepath.Join(dir, "identity.key"))
		d.spawn()
		expectFailedStart(t, d)
	})

	t.Run("existing", func(t *testing.T) {
		dir := filepath.Join(root, "existing")
		d := newDaemon(t, "existing", dir, "", "127.0.0.1")
		d.start()
		var acked []string
		for i := range 20 {
			r, err := d.publish(ctx, fmt.Sprintf("before read-only %d", i))
			if err != nil {
				t.Fatal(err)
			}
			acked = append(acked, r.Hash)
		}
		d.stop()
		unmount := mountReadOnly(t, dir)
		d.spawn()
		expectFailedStart(t, d)
		unmount()
		checkStore(t, dir, acked)
		d.start()
		h, err := d.topics()
		if err != nil || ops(h) != 20 {
			t.Fatalf("after remounting read-write: %v (err %v), want 20 operations", h, err)
		}
		if _, err := d.publish(ctx, "after read-only"); err != nil {
			t.Fatalf("publish after remounting read-write: %v", err)
		}
	})
}

// expectFailedStart waits for d to exit by itself with a non-zero status and a log line
// that says the data dir or database is read-only.
func expectFailedStart(t *testing.T, d *daemon) {
	t.Helper()
	err, exited := d.waitExit(30 * time.Second)
	if !exited {
		h, terr := d.topics()
		t.Fatalf("daemon kept running on a read-only data dir (topics %v, err %v)\n%s", h, terr, d.logTail(20))
	}
	if err == nil {
		t.Fatalf("daemon exited with status 0 on a read-only data dir\n%s", d.logTail(20))
	}
	tail := d.logTail(5)
	if !strings.Contains(strings.ToLower(tail), "read-only") {
		t.Fatalf("exit %v without a message naming the read-only file system:\n%s", err, tail)
	}
	t.Logf("exit %v; last log line: %s", err, lastLine(tail))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// A full disk: publishing fails with a clear error, nothing is corrupted, and after space is
// freed a restart finds every acknowledged operation and accepts new ones.
func TestFullDisk(t *testing.T) {
	needBinary(t)
	needRoot(t, "mounting a 2 MiB tmpfs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := t.TempDir()
	mnt := filepath.Join(root, "small")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size=2m", "pandanet-fault", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	d := newDaemon(t, "full", filepath.Join(mnt, "data"), "", "127.0.0.1", "--metrics-listen", metricsAddr)
	d.start()
	if code, body := getReadyz(t, metricsAddr); code != http.StatusOK {
		t.Fatalf("/readyz before the disk filled up = %d %q", code, body)
	}
	body := strings.Repeat("x", 16<<10)
	var acked []string
	var pubErr error
	for i := 0; i < 1000; i++ {
		r, err := d.publish(ctx, fmt.Sprintf("%d %s", i, body))
		if err != nil {
			pubErr = err
			break
		}
		acked = append(acked, r.Hash)
	}
	if pubErr == nil {
		t.Fatalf("1000 publishes of 16 KiB succeeded on a 2 MiB file system")
	}
	msg := strings.ToLower(pubErr.Error())
	if !strings.Contains(msg, "full") && !strings.Contains(msg, "no space") {
		t.Fatalf("publish on a full disk failed without saying so: %v", pubErr)
	}
	t.Logf("after %d acknowledged publishes (%d KiB): %v", len(acked), len(acked)*16, pubErr)
	// The node stays up and reports the same error rather than crashing.
	if _, err := d.publish(ctx, "still full"); err == nil {
		t.Log("a small publish still fit")
	}
	// Readiness and the gauge say that the node cannot store.
	code, ready := getReadyz(t, metricsAddr)
	if code != http.StatusServiceUnavailable || !strings.Contains(ready, "store cannot write") {
		t.Fatalf("/readyz on a full disk = %d %q, want 503 store cannot write", code, ready)
	}
	if m := getMetrics(t, metricsAddr); !strings.Contains(m, "panda_store_writable 0") {
		t.Fatal("panda_store_writable is not 0 on a full disk")
	}
	t.Logf("/readyz on a full disk: %d %s", code, strings.TrimSpace(ready))
	// Space comes back while the node runs: it is ready again without a write.
	run(t, "mount", "-o", "remount,size=8m", mnt)
	testutil.Eventually(t, 30*time.Second, "ready after space was freed", func() (bool, error) {
		code, _ := getReadyz(t, metricsAddr)
		return code == http.StatusOK, nil
	})
	if _, err := d.publish(ctx, "after growing to 8 MiB"); err != nil {
		t.Fatalf("publish after freeing space: %v", err)
	}
	if m := getMetrics(t, metricsAddr); !strings.Contains(m, "panda_store_writable 1") {
		t.Fatal("panda_store_writable is not 1 after a successful write")
	}
	d.stop()
	checkStore(t, d.dir, acked)

	run(t, "mount", "-o", "remount,size=64m", mnt)
	d.start()
	h, err := d.topics()
	if err != nil {
		t.Fatal(err)
	}
	if ops(h) < uint64(len(acked)) {
		t.Fatalf("after freeing space the node holds %d operations, %d were acknowledged", ops(h), len(acked))
	}
	if _, err := d.publish(ctx, "after freeing space"); err != nil {
		t.Fatalf("publish after freeing space: %v", err)
	}
	d.stop()
	checkStore(t, d.dir, acked)
}

func getReadyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
