package fault

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// version3Operations is the operations table as schema version 3 created it: the whole
// hash as primary key. Schemas 4 and 5 move the rows to a table that indexes an 8-byte
// prefix instead, and schema 6 moves that index into two tables of its own, which a
// version 3 store does not have; this frozen copy lets the test write a store the way an
// older panda-node left it.
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
DROP TABLE operation_hashes;
DROP TABLE operation_hashes_mid;
DROP TABLE operation_hashes_recent;
PRAGMA user_version = 3;
`

// Upgrading a store on a full disk: the daemon refuses to start and says the disk is full,
// every operation is still stored (in the old or the new table, never both or neither),
// and once there is some room the same daemon finishes the upgrade and serves every
// operation. The room it needs is a fraction of the store, not a copy of it.
func TestUpgradeOnFullDisk(t *testing.T) {
	needBinary(t)
	needRoot(t, "mounting a tmpfs")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size=512m", "pandanet-upgrade", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	dataDir := filepath.Join(mnt, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dataDir, "panda.db")
	// Written on the test's disk (VACUUM needs room of its own), then copied in.
	built := filepath.Join(t.TempDir(), "v3.db")
	hashes := writeVersion3Store(t, ctx, built, 100_000) // ~120 MiB, ten chunks of the move
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dbPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	storeSize := fi.Size()
	d := newDaemon(t, "upgrade", dataDir, "", "127.0.0.1")

	// 256 KiB to spare: not even the first chunk fits.
	run(t, "mount", "-o", fmt.Sprintf("remount,size=%dk", usedKiB(t, mnt)+256), mnt)
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
	if version, n := schemaAndCount(t, dbPath); version > 4 || n != len(hashes) {
		t.Fatalf("after the failed upgrade: schema %d with %d operations, want <= 4 with %d", version, n, len(hashes))
	}

	// 40 MiB to spare is enough: the move needs one chunk's growth of the file, that chunk
	// in the WAL and the new indexes, not a copy of the table (one transaction copying it
	// needed 2.9 times the store).
	spare := int64(40 << 20)
	run(t, "mount", "-o", fmt.Sprintf("remount,size=%dk", usedKiB(t, mnt)+spare>>10), mnt)
	d.start()
	h, err := d.topics()
	if err != nil {
		t.Fatal(err)
	}
	if ops(h) != uint64(len(hashes)) {
		t.Fatalf("after the upgrade the node holds %d operations, want %d", ops(h), len(hashes))
	}
	t.Logf("upgraded a %d MiB store with %d MiB to spare", storeSize>>20, spare>>20)
	d.stop()
	run(t, "mount", "-o", "remount,size=512m", mnt)
	d.start()
	if _, err := d.publish(ctx, "after the upgrade"); err != nil {
		t.Fatalf("publish after the upgrade: %v", err)
	}
	d.stop()
	if version, n := schemaAndCount(t, dbPath); version != store.SchemaVersion || n != len(hashes)+1 {
		t.Fatalf("after the upgrade: schema %d with %d operations, want %d with %d", version, n, store.SchemaVersion, len(hashes)+1)
	}
	checkUpgradedLogs(t, dbPath, hashes)
}

// checkUpgradedLogs checks in SQL (checkStore decodes and verifies every operation, too
// slow for 100,000 on a busy CI machine) that every hash is stored and every log is
// gap-free from seq 0.
func checkUpgradedLogs(t *testing.T, path string, hashes []string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored := map[string]bool{}
	rows, err := db.Query("SELECT lower(hex(hash)) FROM operations")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		stored[h] = true
	}
	rows.Close()
	for _, h := range hashes {
		if !stored[h] {
			t.Fatalf("operation %s is missing after the upgrade", h)
		}
	}
	rows, err = db.Query("SELECT lower(hex(author)), min(seq), max(seq), count(*) FROM operations GROUP BY author, log_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var author string
		var lo, hi, n int64
		if err := rows.Scan(&author, &lo, &hi, &n); err != nil {
			t.Fatal(err)
		}
		if lo != 0 || n != hi+1 {
			t.Fatalf("log of %s after the upgrade: seq %d..%d with %d entries, want gap-free from 0", author[:8], lo, hi, n)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// usedKiB is how much of the file system at dir is in use.
func usedKiB(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize >> 10
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
	// During the upgrade to schema 5 the operations are in two tables, each in exactly one.
	var moving int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'operations_v5'").Scan(&moving); err != nil {
		t.Fatal(err)
	}
	count := "SELECT count(*) FROM operations"
	if moving == 1 {
		count = "SELECT (SELECT count(*) FROM operations) + (SELECT count(*) FROM operations_v5)"
	}
	if err := db.QueryRow(count).Scan(&n); err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	return version, n
}
