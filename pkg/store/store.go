// Package store persists operations, the topic↔log mapping and per-topic ack cursors in
// SQLite (mattn/go-sqlite3 through database/sql).
//
// Concurrency model: SQLite allows one writer per database. A file-backed store therefore
// opens two handles on the same file: a writer with exactly one connection whose
// transactions start with BEGIN IMMEDIATE (the write lock is taken up front, so a
// transaction never fails half-way on a lock upgrade), and a pool of read-only connections.
// The file runs in WAL mode so readers see the last committed state while the writer works.
// Writers are expected to batch many operations per transaction (see pkg/pipeline): with
// synchronous=FULL every commit is an fsync, which is cheap per operation only when batched.
//
// The in-memory store (path "") is a uniquely named shared-cache memory database. Shared
// cache uses table-level locks whose conflicts surface as SQLITE_LOCKED, which busy_timeout
// does not cover (a reader and a writer on separate connections fail with "database table
// is locked" instead of waiting), so the in-memory store uses one connection for reads and
// writes. Without fsync its transactions are short; long reads (LogRange) are chunked so they
// never hold the connection for long. That connection is not what keeps the data alive:
// database/sql discards a connection whose transaction's context is cancelled (go-sqlite3
// cannot reset a session), and a memory database is dropped with its last connection, so a
// second, idle "anchor" connection that never runs a statement holds it until Close.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// writerDriver is the "sqlite3" driver plus the per-connection settings the file-backed
// writer needs that its DSN cannot carry (go-sqlite3 has no DSN key for them). A hook
// rather than one PRAGMA after Open, because database/sql may replace the connection.
const writerDriver = "sqlite3-pandanet-writer"

// walAutocheckpointPages is how many WAL pages (4 KiB each) the writer lets pile up before
// it copies them back into the database file. SQLite's default, 1,000 (4 MB), makes a busy
// writer checkpoint every few commits, and each checkpoint writes the hot pages again (the
// indexes' inner nodes and the growing end of every b-tree). At 10,000 pages a fresh edge
// catching up 100,000 operations took 17 % less time (mean of four alternating runs, 7.18
// → 5.98 s; see docs/performance.md). The price: the WAL file grows to ~40 MB and keeps
// that size (SQLite reuses it), and recovery after a crash replays up to 40 MB. Durability
// is unchanged: every commit still fsyncs the WAL.
const walAutocheckpointPages = 10_000

func init() {
	sql.Register(writerDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		if _, err := c.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", walAutocheckpointPages), nil); err != nil {
			return fmt.Errorf("set wal_autocheckpoint: %w", err)
		}
		return nil
	}})
}

// Store is an operation store. All methods are safe for concurrent use.
type Store struct {
	w      *sql.DB // the single writer connection
	r      *sql.DB // read pool; == w for the in-memory store
	anchor *sql.DB // in-memory store only: keeps the database alive (see the package doc)
	stmts  *writeStmts
	// writeMu is held for a whole Write or RetireLogs (they take turns on the one writer
	// connection anyway) and guards what the writer remembers between transactions:
	// hashCounts, the sizes of the hash tables that merge after the last committed write or
	// -1 when unknown (see mergeHashes), and the log heads.
	writeMu    sync.Mutex
	hashCounts hashCounts
	heads      headCache
	path       string
	memory     bool
}

type config struct {
	readers     int
	busyTimeout time.Duration
	synchronous string
}

// Option configures Open.
type Option func(*config)

// WithReaders sets the size of the read pool of a file-backed store (default
// max(4, 2*GOMAXPROCS)).
func WithReaders(n int) Option { return func(c *config) { c.readers = n } }

// WithBusyTimeout sets how long a connection waits for a lock held by another process or
// connection before failing with SQLITE_BUSY (default 5s).
func WithBusyTimeout(d time.Duration) Option { return func(c *config) { c.busyTimeout = d } }

// WithSynchronous overrides PRAGMA synchronous for a file-backed store (default "FULL": a
// committed batch survives power loss). "NORMAL" trades the last commits on power loss
// (never on a process crash) for fewer fsyncs.
func WithSynchronous(mode string) Option { return func(c *config) { c.synchronous = mode } }

// Open opens (creating if needed) the store at path and applies pending migrations. An empty
// path opens a private in-memory store that lives until Close.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := config{readers: max(4, 2*runtime.GOMAXPROCS(0)), busyTimeout: 5 * time.Second, synchronous: "FULL"}
	for _, o := range opts {
		o(&cfg)
	}
	switch cfg.synchronous {
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("open store: invalid synchronous mode %q", cfg.synchronous)
	}
	s := &Store{path: path, memory: path == "", hashCounts: unknownHashCounts}
	busy := fmt.Sprint(cfg.busyTimeout.Milliseconds())
	if s.memory {
		var name [12]byte
		if _, err := rand.Read(name[:]); err != nil {
			return nil, fmt.Errorf("open in-memory store: %w", err)
		}
		dsn := "file:pandanet-" + hex.EncodeToString(name[:]) + "?mode=memory&cache=shared&_txlock=immediate&_foreign_keys=1&_busy_timeout=" + busy
		db, err := openOneConn(dsn)
		if err != nil {
			return nil, fmt.Errorf("open in-memory store: %w", err)
		}
		anchor, err := openAnchor(ctx, dsn)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open in-memory store: %w", err)
		}
		s.w, s.r, s.anchor = db, db, anchor
	} else {
		// _mutex=no opens each connection in SQLite's multi-thread mode, without the lock
		// it would otherwise take around every call: database/sql never uses a connection
		// from two goroutines at once.
		common := "_journal_mode=WAL&_foreign_keys=1&_mutex=no&_busy_timeout=" + busy
		u := "file:" + (&url.URL{Path: path}).EscapedPath()
		w, err := sql.Open(writerDriver, u+"?_txlock=immediate&_synchronous="+cfg.synchronous+"&"+common)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		s.w = w
		// Create the file and the schema through the writer before readers open it.
		if err := s.migrate(ctx); err != nil {
			w.Close()
			return nil, explainOpenErr(path, err)
		}
		r, err := sql.Open("sqlite3", u+"?_query_only=1&"+common)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("open store %s readers: %w", path, err)
		}
		r.SetMaxOpenConns(cfg.readers)
		r.SetMaxIdleConns(cfg.readers)
		s.r = r
		if err := r.PingContext(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("open store %s readers: %w", path, err)
		}
	}
	if s.memory {
		if err := s.migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	var err error
	if s.stmts, err = prepareWriteStmts(ctx, s.w); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// openAnchor opens one idle connection to the in-memory database dsn and keeps it: the
// database lives while any connection to it is open, whatever database/sql does with the
// store's working connection.
func openAnchor(ctx context.Context, dsn string) (*sql.DB, error) {
	anchor, err := openOneConn(dsn)
	if err != nil {
		return nil, err
	}
	if err := anchor.PingContext(ctx); err != nil { // opens the connection, then idles it
		anchor.Close()
		return nil, err
	}
	return anchor, nil
}

// openOneConn opens dsn as a pool of one connection that is never recycled for age or
// idleness: the in-memory store's connections must stay open (see the package doc).
func openOneConn(dsn string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// Path returns the database path, "" for an in-memory store.
func (s *Store) Path() string { return s.path }

// Close closes all connections. An in-memory store's data is gone afterwards.
func (s *Store) Close() error {
	var errs []error
	if s.stmts != nil {
		errs = append(errs, s.stmts.close())
	}
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if s.anchor != nil {
		errs = append(errs, s.anchor.Close()) // last: this drops an in-memory database
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns an error describing every problem.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	rows, err := s.r.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []error
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, errors.New(line))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check failed: %w", errors.Join(problems...))
	}
	return nil
}

// Size returns the database size in bytes (pages in use plus the WAL file, if any). It is
// meant for metrics, not accounting.
func (s *Store) Size(ctx context.Context) (int64, error) {
	var pages, pageSize int64
	if err := s.r.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return 0, fmt.Errorf("store size: %w", err)
	}
	if err := s.r.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return 0, fmt.Errorf("store size: %w", err)
	}
	size := pages * pageSize
	if !s.memory {
		if fi, err := statFile(s.path + "-wal"); err == nil {
			size += fi
		}
	}
	return size, nil
}

// explainOpenErr names the usual cause of a failed open: SQLite reports a directory it
// cannot create the -wal/-shm files in as "unable to open database file" with a stale
// errno ("no such file or directory"), which sends operators looking for a missing file.
func explainOpenErr(path string, err error) error {
	dir := filepath.Dir(path)
	f, perr := os.CreateTemp(dir, ".panda-write-probe-*")
	if perr != nil {
		return fmt.Errorf("open store %s: data directory %s is not writable: %w (%w)", path, dir, perr, err)
	}
	f.Close()
	os.Remove(f.Name())
	return fmt.Errorf("open store %s: %w", path, err)
}
