package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
)

// migration brings the schema from user_version i to i+1 (i is its index in migrations).
// Consecutive SQL migrations run in one transaction that also sets user_version; a run
// migration manages its own transactions and sets user_version in its last one.
type migration struct {
	sql string
	run func(ctx context.Context, conn *sql.Conn) error
}

// migrations are applied in order. Never edit a released migration, append a new one.
var migrations = []migration{
	// 1: operations, topic↔log mapping, ack cursors.
	{sql: `
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
`},
	// 2: the address book (p2panda's node_infos), so a restarted node can find the peers
	// it knew without asking a bootstrap peer first.
	{sql: `
CREATE TABLE peers (
	peer_id        TEXT    NOT NULL PRIMARY KEY,
	record         BLOB    NOT NULL, -- the peer's signed libp2p peer record (envelope)
	last_succeeded INTEGER NOT NULL, -- unix ms, 0 = never
	last_failed    INTEGER NOT NULL  -- unix ms, 0 = never
) WITHOUT ROWID;
`},
	// 3: logs a topic's retention policy dropped, so the node refuses to take them back from
	// peers that still hold them (see RetireLogs).
	{sql: `
CREATE TABLE retired_logs (
	topic  BLOB    NOT NULL,
	author BLOB    NOT NULL,
	log_id BLOB    NOT NULL,
	seq    INTEGER NOT NULL, -- the highest seq that was dropped
	PRIMARY KEY (topic, author, log_id)
) WITHOUT ROWID;
`},
	// 4 and 5: lookups by hash use an index of the hash's first 8 bytes instead of the
	// whole-hash primary key. Hashes are random, so every insert lands on its own page of
	// that index: with 32-byte keys that was most of a durable write. 8-byte keys pack four
	// times as many entries per page (BenchmarkWrite, 1 KiB operations: 30.3 -> 17.6 us per
	// operation at 100k, 50.5 -> 42.1 us at 1M). Uniqueness is not lost: the hash covers
	// author, log and seq, so two rows with one hash would also break the unique
	// operations_log index. A primary key's index cannot be dropped, so the rows move to a
	// new table: migration 4 creates it, migration 5 (moveOperations) moves them.
	{sql: `
DROP INDEX operations_log; -- not needed while rows move; makes deleting them cheaper
CREATE TABLE operations_v5 (
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
`},
	{run: moveOperations},
	// 6: the hash index becomes two tables, a large one and a small one that new operations
	// go to (see hashMergeAt). An index of random hashes puts every insert on a page of its
	// own once the index is larger than a write batch: each operation dirtied one more 4 KiB
	// page, written to the WAL at commit and again at checkpoint. At 100k operations that was
	// a third of the writer's CPU and half of its bytes (batches of 100: 30.9 -> 20.2 us and
	// 11.9 -> 6.1 KB per operation without it). The small table stays a few dozen pages, so a
	// batch dirties few of its pages, and merging it into the large one in key order dirties
	// each page of that one at most once per hashMergeAt operations.
	{sql: `
CREATE TABLE operation_hashes (
	prefix BLOB    NOT NULL, -- the hash's first 8 bytes
	op     INTEGER NOT NULL, -- operations.rowid
	PRIMARY KEY (prefix, op)
) WITHOUT ROWID;
CREATE TABLE operation_hashes_recent (
	prefix BLOB    NOT NULL,
	op     INTEGER NOT NULL,
	PRIMARY KEY (prefix, op)
) WITHOUT ROWID;
INSERT INTO operation_hashes (prefix, op) SELECT substr(hash, 1, 8), rowid FROM operations ORDER BY 1, 2;
DROP INDEX operations_hash;
-- Every way of deleting operations (prune, retire) drops their hashes too. Inserts add them
-- in the store's code instead of here: a trigger per inserted row cost more than the rows.
CREATE TRIGGER operations_drop_hash AFTER DELETE ON operations BEGIN
	DELETE FROM operation_hashes WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
	DELETE FROM operation_hashes_recent WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
END;
`},
	// 7: a middle hash table between the two of migration 6. Merging the small table into
	// the large one touches a page of the large one per merged hash once the large one has
	// more pages than a merge has hashes (~8,192 x 150 rows, about a million operations), so
	// from that size on the pages written per operation grow again. The middle table takes
	// the merges of the small one and is itself merged into the large one every
	// hashMergeAt[1] hashes, so a merge into the large table is rare and a merge into the
	// middle one touches at most its ~1,700 pages (see hashMergeAt).
	{sql: `
CREATE TABLE operation_hashes_mid (
	prefix BLOB    NOT NULL,
	op     INTEGER NOT NULL,
	PRIMARY KEY (prefix, op)
) WITHOUT ROWID;
DROP TRIGGER operations_drop_hash;
CREATE TRIGGER operations_drop_hash AFTER DELETE ON operations BEGIN
	DELETE FROM operation_hashes WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
	DELETE FROM operation_hashes_mid WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
	DELETE FROM operation_hashes_recent WHERE prefix = substr(old.hash, 1, 8) AND op = old.rowid;
END;
`},
}

// moveOperations is migration 5: it moves the operations to the table migration 4 created,
// moveChunk rows per transaction, each row's insert and delete in the same transaction,
// then swaps the tables and builds the indexes. Moving in chunks instead of one
// INSERT ... SELECT keeps the space it needs small: a chunk's inserts reuse the pages the
// previous chunk's deletes freed, and the WAL is checkpointed after each chunk (one
// transaction copying the table needed 2.9x the store's size on disk: the new table in the
// WAL and again in the file). A crash in between leaves every row in exactly one of the
// two tables, and the next start resumes; user_version stays 4 until the swap, and a
// program that knows only version 3 refuses the store instead of serving half of it.
func moveOperations(ctx context.Context, conn *sql.Conn) error {
	for {
		moved, err := moveChunkOfOperations(ctx, conn)
		if err != nil {
			return err
		}
		if moved == 0 {
			break
		}
		// Outside any transaction, so the WAL starts again from the beginning instead of
		// growing by every chunk (a no-op for the in-memory store).
		if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return inTx(ctx, conn, func(tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != 4 {
			return err // another process opening the store finished the move first
		}
		_, err := tx.ExecContext(ctx, `
DROP TABLE operations;
ALTER TABLE operations_v5 RENAME TO operations;
CREATE UNIQUE INDEX operations_log ON operations (author, log_id, seq);
-- Queries by hash say "substr(hash, 1, 8) = ? AND hash = ?" (see hashLookup).
CREATE INDEX operations_hash ON operations (substr(hash, 1, 8));
PRAGMA user_version = 5;
`)
		return err
	})
}

// moveChunk is how many operations one transaction of moveOperations moves: ~11 MiB of
// 1 KiB operations, the most the move needs beyond the store's own size. A variable so
// tests can move a small store in several chunks.
var moveChunk = 10_000

func moveChunkOfOperations(ctx context.Context, conn *sql.Conn) (moved int64, err error) {
	err = inTx(ctx, conn, func(tx *sql.Tx) error {
		var last sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT max(rowid) FROM (SELECT rowid FROM operations ORDER BY rowid LIMIT ?)`, moveChunk).Scan(&last)
		if err != nil || !last.Valid {
			return err // an empty table: nothing left to move
		}
		res, err := tx.ExecContext(ctx, `
INSERT INTO operations_v5 (rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune)
	SELECT rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune FROM operations WHERE rowid <= ?`, last.Int64)
		if err != nil {
			return err
		}
		if moved, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM operations WHERE rowid <= ?`, last.Int64)
		return err
	})
	return moved, err
}

func inTx(ctx context.Context, conn *sql.Conn, f func(*sql.Tx) error) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// hashLookup is the WHERE clause that finds an operation by hash, its one argument: the
// rowid is in one of the three hash tables (migrations 6 and 7) under the hash's first 8
// bytes, cut here as the writer cuts them, and the hash is the one asked for (two may share
// a prefix).
const hashLookup = `rowid IN (SELECT op FROM operation_hashes WHERE prefix = substr(?1, 1, 8)
	UNION ALL SELECT op FROM operation_hashes_mid WHERE prefix = substr(?1, 1, 8)
	UNION ALL SELECT op FROM operation_hashes_recent WHERE prefix = substr(?1, 1, 8)) AND hash = ?1`

// SchemaVersion is the user_version this code writes.
var SchemaVersion = len(migrations)

// migrate brings the store to SchemaVersion. Every step reads user_version inside its own
// write transaction (BEGIN IMMEDIATE), so two processes opening one file never apply a
// migration twice.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	for {
		var run func(context.Context, *sql.Conn) error
		var version int
		err := inTx(ctx, conn, func(tx *sql.Tx) error {
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
				return fmt.Errorf("read user_version: %w", err)
			}
			if version > len(migrations) {
				return fmt.Errorf("database schema version %d is newer than this program's %d", version, len(migrations))
			}
			if version == len(migrations) {
				return nil
			}
			if run = migrations[version].run; run != nil {
				return nil // it runs its own transactions, below
			}
			next := version
			for ; next < len(migrations) && migrations[next].run == nil; next++ {
				if _, err := tx.ExecContext(ctx, migrations[next].sql); err != nil {
					return fmt.Errorf("apply migration %d: %w", next+1, err)
				}
			}
			// PRAGMA does not take parameters; the value is an integer we control.
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", next))
			return err
		})
		switch {
		case err != nil:
			return fmt.Errorf("migrate: %w", err)
		case version == len(migrations):
			return nil
		case run != nil:
			if err := run(ctx, conn); err != nil {
				return fmt.Errorf("migrate: apply migration %d: %w", version+1, err)
			}
		}
	}
}

func statFile(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
