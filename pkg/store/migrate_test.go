package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

// A store written by schema version 3 (whole-hash primary key) opens under the current
// schema with every row, rowid, log, cursor and retired log intact, and its hash lookups
// use the new prefix index.
func TestMigrationToPrefixHashIndexKeepsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	old := filepath.Join(dir, "v3.sqlite")
	all, keys, want := writeMigrationFixture(t, dir, old)

	s, err := Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkMigrated(t, s, want)
	gone := pruned(all)
	for _, op := range all {
		got, err := s.Get(ctx, op.Hash)
		if slices.Contains(gone, op.Hash) {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("get %s (pruned before the migration): %v, want ErrNotFound", op.Hash.Short(), err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("get %s after migration: %v", op.Hash.Short(), err)
		}
		if got.Hash != op.Hash {
			t.Fatalf("get %s returned %s", op.Hash.Short(), got.Hash.Short())
		}
	}
	// The migrated store keeps working: an operation extends its log, a duplicate is found
	// by hash, a fork by (author, log, seq).
	next := chain(t, keys[0], topicA, all[39], 1, nil)[0]
	fork := chain(t, keys[0], topicA, all[38], 1, func(int) []byte { return []byte("fork") })[0]
	res, err := s.InsertBatch(ctx, inserts(topicA, next, next, fork))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomes(res), []Outcome{Inserted, AlreadyExists, Rejected}; !equalOutcomes(got, want) {
		t.Fatalf("outcomes after migration %v, want %v", got, want)
	}
}

// writeMigrationFixture fills a current store through the real write path (two topics,
// three authors, a pruned log, an ack cursor, a retired log), writes it as version 3 had it
// to old and returns its operations, keys and dumpTables.
func writeMigrationFixture(t *testing.T, dir, old string) ([]*operation.Operation, []operation.PrivateKey, string) {
	t.Helper()
	ctx := context.Background()
	src := filepath.Join(dir, "current.sqlite")
	s, err := Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := []operation.PrivateKey{newKey(t), newKey(t), newKey(t)}
	var all []*operation.Operation
	for i, key := range keys {
		topic := topicA
		if i == 2 {
			topic = topicB
		}
		ops := chain(t, key, topic, nil, 40, func(j int) []byte { return fmt.Appendf(nil, "%d/%d", i, j) })
		if i == 1 {
			ops = append(ops, signPrune(t, key, topic, ops[len(ops)-1], []byte("pruned")))
		}
		if _, err := s.InsertBatch(ctx, inserts(topic, ops...)); err != nil {
			t.Fatal(err)
		}
		all = append(all, ops...)
	}
	if err := s.Ack(ctx, topicA, keys[0].PublicKey(), operation.LogIDFromTopic(topicA), 17); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireLogs(ctx, topicB, []RetiredLog{
		{Author: newKey(t).PublicKey(), Log: operation.LogIDFromTopic(topicB), Seq: 9},
	}); err != nil {
		t.Fatal(err)
	}
	want := dumpTables(t, s.r)
	writeVersion3(t, src, old)
	return all, keys, want
}

// A start that stopped in the middle of moving the operations (a crash between two chunks:
// some rows in the new table, the rest in the old one, user_version 4) is finished by the
// next start, with every row and rowid where it was.
func TestMigrationResumesAfterStopMidMove(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old := filepath.Join(dir, "v3.sqlite")
	_, _, want := writeMigrationFixture(t, dir, old)

	defer func(n int) { moveChunk = n }(moveChunk)
	moveChunk = 16
	db, err := sql.Open("sqlite3", "file:"+old+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What migrate does up to the crash: migration 4, then two chunks of migration 5.
	if err := inTx(ctx, conn, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, migrations[3].sql); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "PRAGMA user_version = 4")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if n, err := moveChunkOfOperations(ctx, conn); err != nil || n != 16 {
			t.Fatalf("move a chunk: %d rows, %v", n, err)
		}
	}
	var left, moved int
	if err := conn.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM operations), (SELECT count(*) FROM operations_v5)").Scan(&left, &moved); err != nil {
		t.Fatal(err)
	}
	if moved != 32 || left == 0 {
		t.Fatalf("before the restart: %d rows moved, %d left; want 32 moved and some left", moved, left)
	}
	conn.Close()
	db.Close()

	s, err := Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkMigrated(t, s, want)
}

// checkMigrated checks that s is at SchemaVersion with the prefix index, passes the
// integrity check and holds exactly the rows dumpTables rendered as want.
func checkMigrated(t *testing.T, s *Store, want string) {
	t.Helper()
	var version int
	if err := s.r.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != SchemaVersion {
		t.Fatalf("user_version %d %v, want %d", version, err, SchemaVersion)
	}
	if got := dumpTables(t, s.r); got != want {
		t.Fatalf("migrated tables differ from the store they were copied from:\n got %s\nwant %s", got, want)
	}
	if got, wantIdx := indexNames(t, s.r), []string{"operations_log"}; !slices.Equal(got, wantIdx) {
		t.Fatalf("operations indexes %v, want %v", got, wantIdx)
	}
	checkHashTables(t, s.r)
	if err := s.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// checkHashTables checks that the three hash tables together hold exactly one row for
// every operation, under its hash's prefix and rowid, and nothing else.
func checkHashTables(t *testing.T, db *sql.DB) {
	t.Helper()
	var ops, hashes, found int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM operations),
		(SELECT count(*) FROM operation_hashes) + (SELECT count(*) FROM operation_hashes_mid) +
			(SELECT count(*) FROM operation_hashes_recent),
		(SELECT count(*) FROM operations o WHERE
			EXISTS (SELECT 1 FROM operation_hashes WHERE prefix = substr(o.hash, 1, 8) AND op = o.rowid) +
			EXISTS (SELECT 1 FROM operation_hashes_mid WHERE prefix = substr(o.hash, 1, 8) AND op = o.rowid) +
			EXISTS (SELECT 1 FROM operation_hashes_recent WHERE prefix = substr(o.hash, 1, 8) AND op = o.rowid) = 1)`).
		Scan(&ops, &hashes, &found); err != nil {
		t.Fatal(err)
	}
	if hashes != ops || found != ops {
		t.Fatalf("%d operations, %d hash rows, %d operations found in exactly one hash table", ops, hashes, found)
	}
}

// writeVersion3 writes the store at src as schema version 3 wrote it (whole-hash primary
// key) to a new file dst: migrations 1–3, then every row of src, rowids included.
func writeVersion3(t testing.TB, src, dst string) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+dst)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var stmts []string
	for _, m := range migrations[:3] {
		stmts = append(stmts, m.sql)
	}
	stmts = append(stmts, []string{
		"PRAGMA user_version = 3",
		"ATTACH DATABASE '" + src + "' AS current",
		`INSERT INTO operations (rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune)
			SELECT rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune FROM current.operations`,
		"INSERT INTO topic_logs SELECT * FROM current.topic_logs",
		"INSERT INTO ack_cursors SELECT * FROM current.ack_cursors",
		"INSERT INTO retired_logs SELECT * FROM current.retired_logs",
		"DETACH DATABASE current",
	}...)
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if got := indexNames(t, db); !slices.Contains(got, "sqlite_autoindex_operations_1") {
		t.Fatalf("version 3 store has indexes %v, want the whole-hash primary key", got)
	}
}

// BenchmarkMigrateToPrefixHashIndex times opening a version 3 store of b.N 1 KiB operations
// (10 logs), which moves its operations to the new table: what the upgrade costs at start.
// Run it with -benchtime=100000x; b.N is the store's size, not a repetition count.
func BenchmarkMigrateToPrefixHashIndex(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "current.sqlite")
	s, err := Open(ctx, src)
	if err != nil {
		b.Fatal(err)
	}
	insertInBatches(b, s, benchInserts(b, b.N), 1000)
	s.Close()
	old := filepath.Join(dir, "v3.sqlite")
	writeVersion3(b, src, old)
	before := fileSizes(b, old)
	b.ResetTimer()
	s, err = Open(ctx, old)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	after := fileSizes(b, old, old+"-wal")
	s.Close()
	b.ReportMetric(b.Elapsed().Seconds(), "s")
	b.ReportMetric(float64(before)/(1<<20), "MiB-before")
	b.ReportMetric(float64(after)/(1<<20), "MiB-db+wal-after")
}

func fileSizes(b *testing.B, paths ...string) int64 {
	var total int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		total += fi.Size()
	}
	return total
}

// pruned returns the hashes a prune operation in ops removed (the earlier ops of its log).
func pruned(ops []*operation.Operation) []operation.Hash {
	var out []operation.Hash
	for _, p := range ops {
		if !p.Prune() {
			continue
		}
		for _, op := range ops {
			if op.Author() == p.Author() && op.LogID() == p.LogID() && op.SeqNum() < p.SeqNum() {
				out = append(out, op.Hash)
			}
		}
	}
	return out
}

// Every lookup by hash is an index search, never a scan of the operations table.
func TestHashLookupsSearchTheIndex(t *testing.T) {
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			for _, query := range []string{
				`SELECT header, body FROM operations WHERE ` + hashLookup,
				`SELECT 1 FROM operations WHERE ` + hashLookup,
			} {
				hash := operation.HashOf([]byte(query))
				rows, err := s.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, hash[:])
				if err != nil {
					t.Fatal(err)
				}
				var plan []string
				for rows.Next() {
					var id, parent, unused int
					var detail string
					if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
						t.Fatal(err)
					}
					plan = append(plan, detail)
				}
				rows.Close()
				var searches []string
				for _, step := range plan {
					if strings.HasPrefix(step, "SCAN") {
						t.Fatalf("plan of %q scans: %q", query, plan)
					}
					if strings.HasPrefix(step, "SEARCH") {
						searches = append(searches, step)
					}
				}
				if want := []string{
					"SEARCH operations USING INTEGER PRIMARY KEY (rowid=?)",
					"SEARCH operation_hashes USING PRIMARY KEY (prefix=?)",
					"SEARCH operation_hashes_mid USING PRIMARY KEY (prefix=?)",
					"SEARCH operation_hashes_recent USING PRIMARY KEY (prefix=?)",
				}; !slices.Equal(searches, want) {
					t.Fatalf("plan of %q: %q, want the searches %q", query, plan, want)
				}
			}
		})
	}
}

// dumpTables renders every row of the store's tables (operations with their rowids) in a
// fixed order, so two stores can be compared for equality.
func dumpTables(t *testing.T, db *sql.DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT rowid, hex(hash), hex(author), hex(log_id), seq, hex(header), hex(body), payload_size, timestamp, prune FROM operations ORDER BY rowid`,
		`SELECT hex(topic), hex(author), hex(log_id) FROM topic_logs ORDER BY 1, 2, 3`,
		`SELECT hex(topic), hex(author), hex(log_id), seq FROM ack_cursors ORDER BY 1, 2, 3`,
		`SELECT hex(topic), hex(author), hex(log_id), seq FROM retired_logs ORDER BY 1, 2, 3`,
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, vals)
			n++
		}
		rows.Close()
		if n == 0 {
			t.Fatalf("%s: no rows (the fixture must fill every table)", q)
		}
	}
	return b.String()
}

func indexNames(t testing.TB, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'operations' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	return out
}
