package store

import (
	"context"
	"fmt"
	"os"
)

// migrations are applied in order; migration i brings the schema to user_version i+1.
// Never edit a released migration, append a new one.
var migrations = []string{
	// 1: operations, topic↔log mapping, ack cursors.
	`
CREATE TABLE operations (
	hash         BLOB    NOT NULL PRIMARY KEY,
	author       BLOB    NOT NULL,
	log_id       BLOB    NOT NULL,
	seq          INTEGER NOT NULL,
	header       BLOB    NOT NULL,
	body         BLOB,
	payload_size INTEGER NOT NULL,
	timestamp    INTEGER NOT NULL,
	prune        INTEGER NOT NULL
);
-- Latest entry, heights and ranges are index seeks; a second operation at a taken
-- (author, log, seq) cannot exist (fork rejection enforced by the database too).
CREATE UNIQUE INDEX operations_log ON operations (author, log_id, seq);

CREATE TABLE topic_logs (
	topic  BLOB NOT NULL,
	author BLOB NOT NULL,
	log_id BLOB NOT NULL,
	PRIMARY KEY (topic, author, log_id)
) WITHOUT ROWID;

-- One row per (topic, author, log): the highest acknowledged seq (a high-water mark).
CREATE TABLE ack_cursors (
	topic  BLOB    NOT NULL,
	author BLOB    NOT NULL,
	log_id BLOB    NOT NULL,
	seq    INTEGER NOT NULL,
	PRIMARY KEY (topic, author, log_id)
) WITHOUT ROWID;
`,
	// 2: the address book (p2panda's node_infos), so a restarted node can find the peers
	// it knew without asking a bootstrap peer first.
	`
CREATE TABLE peers (
	peer_id        TEXT    NOT NULL PRIMARY KEY,
	record         BLOB    NOT NULL, -- the peer's signed libp2p peer record (envelope)
	last_succeeded INTEGER NOT NULL, -- unix ms, 0 = never
	last_failed    INTEGER NOT NULL  -- unix ms, 0 = never
) WITHOUT ROWID;
`,
	// 3: logs a topic's retention policy dropped, so the node refuses to take them back from
	// peers that still hold them (see RetireLogs).
	`
CREATE TABLE retired_logs (
	topic  BLOB    NOT NULL,
	author BLOB    NOT NULL,
	log_id BLOB    NOT NULL,
	seq    INTEGER NOT NULL, -- the highest seq that was dropped
	PRIMARY KEY (topic, author, log_id)
) WITHOUT ROWID;
`,
	// 4: lookups by hash use an index of the hash's first 8 bytes instead of the whole-hash
	// primary key. Hashes are random, so every insert lands on its own page of that index:
	// with 32-byte keys that was most of a durable write. 8-byte keys pack four times as
	// many entries per page (BenchmarkWrite, 1 KiB operations: 30.3 -> 17.6 us per operation
	// at 100k, 50.5 -> 42.1 us at 1M). Uniqueness is not lost: the hash covers author, log
	// and seq, so two rows with one hash would also break the unique operations_log index.
	// A primary key's index cannot be dropped, so the table is rebuilt, keeping every row
	// and rowid, in the migration's one transaction: a crash or a full disk leaves version 3
	// intact. It needs the table's size again in free disk space, takes ~16 s per million
	// 1 KiB operations, and leaves the old table's pages free in the file for new writes.
	`
CREATE TABLE operations_v4 (
	hash         BLOB    NOT NULL,
	author       BLOB    NOT NULL,
	log_id       BLOB    NOT NULL,
	seq          INTEGER NOT NULL,
	header       BLOB    NOT NULL,
	body         BLOB,
	payload_size INTEGER NOT NULL,
	timestamp    INTEGER NOT NULL,
	prune        INTEGER NOT NULL
);
INSERT INTO operations_v4 (rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune)
	SELECT rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune FROM operations ORDER BY rowid;
DROP TABLE operations;
ALTER TABLE operations_v4 RENAME TO operations;
CREATE UNIQUE INDEX operations_log ON operations (author, log_id, seq);
-- Queries by hash say "substr(hash, 1, 8) = ? AND hash = ?" (see hashLookup).
CREATE INDEX operations_hash ON operations (substr(hash, 1, 8));
`,
}

// hashLookup is the WHERE clause that finds an operation by hash through operations_hash;
// its arguments are hashArgs. The planner uses an expression index only for a term that
// repeats the indexed expression, so the prefix is its own argument.
const hashLookup = `substr(hash, 1, 8) = ? AND hash = ?`

func hashArgs(hash []byte) []any { return []any{hash[:8], hash} }

// SchemaVersion is the user_version this code writes.
var SchemaVersion = len(migrations)

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: read user_version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate: database schema version %d is newer than this program's %d", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate: apply migration %d: %w", i+1, err)
		}
	}
	if version == len(migrations) {
		return nil
	}
	// PRAGMA does not take parameters; the value is an integer we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: set user_version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

func statFile(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
