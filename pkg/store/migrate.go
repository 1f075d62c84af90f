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
}

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
