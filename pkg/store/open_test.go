package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenCorruptFileNamesPath: a file that is not a SQLite database fails to open with an
// error that names the file, so an operator knows what to restore or move away.
func TestOpenCorruptFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "panda.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path)
	if err == nil {
		s.Close()
		t.Fatal("opened a corrupt file")
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
}
