package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
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

// TestWriterCheckpointsEvery10000Pages: the file-backed writer's connections carry the
// larger autocheckpoint interval, including a connection database/sql opens later to
// replace a discarded one, and the readers keep SQLite's default (they never write).
func TestWriterCheckpointsEvery10000Pages(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "panda.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pages := func(db interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		var n int
		if err := db.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := pages(s.w); got != walAutocheckpointPages {
		t.Fatalf("writer wal_autocheckpoint = %d, want %d", got, walAutocheckpointPages)
	}
	// A new connection (what database/sql opens after discarding one) gets it too.
	conn, err := s.w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Mark the current connection, so that reading 10,000 below proves a new one answered.
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 5"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Raw(func(any) error { return driver.ErrBadConn }); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("discarding the writer connection: %v", err)
	}
	conn.Close()
	if got := pages(s.w); got != walAutocheckpointPages {
		t.Fatalf("replacement writer connection: wal_autocheckpoint = %d, want %d", got, walAutocheckpointPages)
	}
	if got := pages(s.r); got != 1000 {
		t.Fatalf("reader wal_autocheckpoint = %d, want SQLite's default 1000", got)
	}
}
