package operation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadOrCreateKeyFileEmptyFile: a 0-byte key file (an interrupted creation) is replaced
// by a new key instead of failing every later start.
func TestLoadOrCreateKeyFileEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	key, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateKeyFile on an empty file = created %v, %v", created, err)
	}
	again, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || again.PublicKey() != key.PublicKey() {
		t.Fatalf("second load = created %v, %v, same key %v", created, err, again.PublicKey() == key.PublicKey())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the key file", len(entries))
	}
}

func TestWriteKeyFileRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	k, _ := GenerateKey()
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err == nil || !errors.Is(err, os.ErrExist) {
		t.Fatalf("second WriteKeyFile = %v, want exists", err)
	}
}

// TestLoadOrCreateKeyFileFIFO: a FIFO is refused at once instead of blocking the start.
func TestLoadOrCreateKeyFileFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := LoadOrCreateKeyFile(path); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		// Unblock the reader so the test binary can exit.
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("LoadOrCreateKeyFile blocked on a FIFO")
	}
}

// TestLoadOrCreateKeyFileTooLarge: a large file is refused after reading at most
// MaxKeyFileSize+1 bytes.
func TestLoadOrCreateKeyFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, []byte(strings.Repeat("a", 1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}
