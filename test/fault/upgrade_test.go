package fault

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// version3Operations is the operations table as schema version 3 created it: the whole
// hash as primary key. Schema 4 rebuilds the table to index an 8-byte prefix instead; this
// frozen copy lets the test write a store the way an older panda-node left it.
const version3Operations = `
CREATE TABLE operations_v3 (
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
INSERT INTO operations_v3 (rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune)
	SELECT rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune FROM operations;
DROP TABLE operations;
ALTER TABLE operations_v3 RENAME TO operations;
CREATE UNIQUE INDEX operations_log ON operations (author, log_id, seq);
PRAGMA user_version = 3;
`

// Upgrading a store whose disk has no room for the schema 4 rebuild: the daemon refuses to
// start and says the disk is full, the store stays at version 3 with every operation, and
// once there is space the same daemon upgrades it and serves every operation.
func TestUpgradeOnFullDisk(t *testing.T) {
	needBinary(t)
	needRoot(t, "mounting a tmpfs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size=64m", "pandanet-upgrade", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	dataDir := filepath.Join(mnt, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dataDir, "panda.db")
	hashes := writeVersion3Store(t, ctx, dbPath, 3000)

	// Room for the store and half of it again: the rebuild needs a copy of the table in
	// the WAL and in the file, so it cannot fit.
	fi, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-o", fmt.Sprintf("remount,size=%dk", (fi.Size()*3/2)>>10+64), mnt)

	d := newDaemon(t, "upgrade", dataDir, "", "127.0.0.1")
	d.spawn()
	err, exited := d.waitExit(60 * time.Second)
	if !exited {
		t.Fatalf("daemon kept running although the upgrade cannot fit\n%s", d.logTail(20))
	}
	tail := d.logTail(5)
	if err == nil || !strings.Contains(strings.ToLower(tail), "full") {
		t.Fatalf("exit %v without a message naming the full disk:\n%s", err, tail)
	}
	t.Logf("exit %v; last log line: %s", err, lastLine(tail))
	if version, n := schemaAndCount(t, dbPath); version != 3 || n != len(hashes) {
		t.Fatalf("after the failed upgrade: schema %d with %d operations, want 3 with %d", version, n, len(hashes))
	}

	run(t, "mount", "-o", "remount,size=64m", mnt)
	d.start()
	h, err := d.topics()
	if err != nil {
		t.Fatal(err)
	}
	if ops(h) != uint64(len(hashes)) {
		t.Fatalf("after the upgrade the node holds %d operations, want %d", ops(h), len(hashes))
	}
	if _, err := d.publish(ctx, "after the upgrade"); err != nil {
		t.Fatalf("publish after the upgrade: %v", err)
	}
	d.stop()
	if version, _ := schemaAndCount(t, dbPath); version != store.SchemaVersion {
		t.Fatalf("schema %d after the upgrade, want %d", version, store.SchemaVersion)
	}
	checkStore(t, dataDir, hashes)
}

// writeVersion3Store writes n 1 KiB operations (one log of one topic) through the current
// store, rewrites its operations table as schema version 3 had it and compacts the file.
// It returns the operations' hashes.
func writeVersion3Store(t *testing.T, ctx context.Context, path string, n int) []string {
	t.Helper()
	s, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	topic, err := operation.ParseTopic(topicName) // the topic every daemon of this suite follows
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	var batch []store.Insert
	var prev *operation.Operation
	for i := range n {
		d := operation.Draft{LogID: operation.LogIDFromTopic(topic), Timestamp: uint64(i + 1), Body: make([]byte, 1024)}
		if prev != nil {
			d.SeqNum, d.Backlink = prev.SeqNum()+1, prev.Hash
		}
		op, err := operation.Sign(key, d)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, store.Insert{Topic: topic, Op: op})
		hashes = append(hashes, op.Hash.String())
		prev = op
	}
	res, err := s.InsertBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != store.Inserted {
			t.Fatalf("op %d: %v %v", i, r.Outcome, r.Err)
		}
	}
	s.Close()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, stmt := range []string{version3Operations, "PRAGMA journal_mode = DELETE", "VACUUM"} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("write version 3 store: %v", err)
		}
	}
	return hashes
}

// schemaAndCount reads a store's schema version and operation count without migrating it.
func schemaAndCount(t *testing.T, path string) (version, n int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*) FROM operations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	return version, n
}
