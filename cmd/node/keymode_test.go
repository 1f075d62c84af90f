package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
)

// The operator mounts the identity Secret read-only with mode 0440 (the kubelet adds group
// read for the pod's fsGroup whatever mode is asked for): the node accepted the key but
// warned "readable by group or others; chmod 600 it" on every start, which nobody can act
// on. Group read on a read-only mount is now accepted silently; every other loose mode, or
// the same mode on a writable file system, still warns.
func TestKeyFileModeWarning(t *testing.T) {
	orig := readOnlyMount
	defer func() { readOnlyMount = orig }()
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		mode     os.FileMode
		readOnly bool
		warn     bool
	}{
		{"kubelet secret 0440 read-only", 0o440, true, false},
		{"0400 read-only", 0o400, true, false},
		{"0600 writable", 0o600, false, false},
		{"0440 writable", 0o440, false, true},
		{"0444 read-only", 0o444, true, true},
		{"0460 read-only", 0o460, true, true},
		{"0644 writable", 0o644, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.key")
			if err := operation.WriteKeyFile(path, key); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			readOnlyMount = func(p string) bool {
				if p != path {
					t.Errorf("readOnlyMount(%q), want the key file", p)
				}
				return tc.readOnly
			}
			var logs bytes.Buffer
			got, err := loadKey(&config.Config{KeyFile: path}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if got.PublicKey() != key.PublicKey() {
				t.Fatal("loaded another key")
			}
			if warned := strings.Contains(logs.String(), "chmod 600"); warned != tc.warn {
				t.Fatalf("warned = %v, want %v; logs:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
}

// readOnlyMount itself: a file on a writable temp dir is not on a read-only mount.
func TestReadOnlyMountWritableDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if readOnlyMount(path) {
		t.Fatal("a file in a writable temp dir reported as on a read-only mount")
	}
}

// A read-only bind mount of a writable directory (what the kubelet does for a Secret volume
// with readOnly: true) is detected from the mount flags. The pods' non-root user could not
// tell it with access(2), which answers EACCES for a 0440 file before it looks at the
// mount (the real-cluster e2e saw the warning on every pod).
func TestReadOnlyMountBindMount(t *testing.T) {
	testutil.RequireRoot(t, "a bind mount")
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "identity.key"), []byte("x"), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
	if readOnlyMount(filepath.Join(dst, "identity.key")) {
		t.Fatal("a writable bind mount reported as read-only")
	}
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	if !readOnlyMount(filepath.Join(dst, "identity.key")) {
		t.Fatal("a file on a read-only bind mount not reported as read-only")
	}
	if readOnlyMount(filepath.Join(src, "identity.key")) {
		t.Fatal("the writable source of the bind mount reported as read-only")
	}
}
