package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/pandanet/pandanet/pkg/operation"
)

// ErrNotFound is returned by Get for an unknown (or pruned) operation.
var ErrNotFound = errors.New("operation not found")

// Insert is one operation to store under a topic.
type Insert struct {
	Topic operation.Topic
	Op    *operation.Operation
}

// Outcome is what InsertBatch did with one operation.
type Outcome uint8

const (
	// Inserted: the operation is now stored and associated with the topic.
	Inserted Outcome = iota + 1
	// AlreadyExists: an operation with the same hash was already stored; nothing changed.
	AlreadyExists
	// MissingBacklink: the log does not yet contain the operation's predecessor (a gap).
	// Nothing changed; the caller may retry once the missing entries are stored.
	MissingBacklink
	// Rejected: the operation can never be appended (fork, backlink mismatch, below a pruned
	// start). Err carries the typed operation error.
	Rejected
)

func (o Outcome) String() string {
	switch o {
	case Inserted:
		return "inserted"
	case AlreadyExists:
		return "already_exists"
	case MissingBacklink:
		return "missing_backlink"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// InsertResult reports the outcome for one Insert.
type InsertResult struct {
	Outcome Outcome
	// Err is set for MissingBacklink and Rejected; it wraps an operation.Err* sentinel.
	Err error
	// Pruned is the number of earlier entries deleted because the operation carried the
	// prune flag.
	Pruned int64
}

// Ack moves a topic's cursor for one log to Seq (if that is higher than the stored value).
type Ack struct {
	Topic  operation.Topic
	Author operation.PublicKey
	Log    operation.LogID
	Seq    uint64
}

// InsertBatch stores the operations in one transaction. See Write.
func (s *Store) InsertBatch(ctx context.Context, inserts []Insert) ([]InsertResult, error) {
	return s.Write(ctx, inserts, nil)
}

// Write applies inserts and acks in one transaction and returns one result per insert, in
// order. Every insert is checked against the log as it stands after the earlier inserts of
// the same batch:
//
//   - an operation whose hash is stored already → AlreadyExists;
//   - another operation at the same (author, log, seq) → Rejected with operation.ErrFork;
//   - otherwise operation.CheckSequence against the latest entry; a gap → MissingBacklink,
//     any other failure → Rejected;
//   - on success the operation is inserted, associated with the topic and, if it carries
//     the prune flag, the log's entries with a lower seq are deleted.
//
// A rejected operation does not affect the others. An error return means the database
// failed (I/O, disk full, context cancelled) and nothing of the batch was committed.
//
// The caller is responsible for operation.Decode (signature, payload) having succeeded.
func (s *Store) Write(ctx context.Context, inserts []Insert, acks []Ack) ([]InsertResult, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("write batch: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	results := make([]InsertResult, len(inserts))
	counts := unknownHashCounts // the hash tables' sizes after this batch, once known
	var b *batch
	if len(inserts) > 0 {
		if err := s.heads.valid(ctx, tx, s.stmts.dataVersion); err != nil {
			return nil, err
		}
		b = prepareBatch(tx, s.stmts, &s.heads)
		defer b.close()
		for i := range inserts {
			if results[i], err = b.insert(ctx, &inserts[i]); err != nil {
				return nil, err
			}
		}
		if err := b.flushPending(ctx); err != nil {
			return nil, err
		}
		if counts, err = s.mergeHashes(ctx, tx, b.inserted); err != nil {
			return nil, err
		}
	}
	if len(acks) > 0 {
		stmt := tx.StmtContext(ctx, s.stmts.ack)
		defer stmt.Close()
		for _, a := range acks {
			if _, err := stmt.ExecContext(ctx, a.Topic[:], a.Author[:], a.Log[:], int64(a.Seq)); err != nil {
				return nil, fmt.Errorf("write batch: ack: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		// Unknown whether it was committed: count and read again.
		s.hashCounts = unknownHashCounts
		s.heads.forget()
		return nil, fmt.Errorf("write batch: commit: %w", err)
	}
	if counts[0] >= 0 {
		s.hashCounts = counts
	}
	if b != nil {
		s.heads.remember(b.latest)
	}
	return results, nil
}

// hashTables are the hash tables (migrations 6 and 7), from the small one that new
// operations' hashes go to, to the large one that ends up with most of them.
var hashTables = [...]string{"operation_hashes_recent", "operation_hashes_mid", "operation_hashes"}

// hashMergeAt[i] is how many hashes hashTables[i] collects before a write moves them into
// hashTables[i+1]. A merge dirties each page of the table it goes into at most once, so a
// level costs about its target's pages per hashMergeAt[i] operations:
//   - 8,192 into the middle table: the small table stays ~40 pages, and a merge touches at
//     most the middle table's ~1,700 pages (262,144 hashes of ~20 bytes at ~150 per page),
//     under 0.2 pages per operation and half that on average;
//   - 262,144 into the large table: its pages once per 262,144 operations, 0.03 pages per
//     operation at a million operations and 0.3 at ten million. Such a merge is one
//     transaction, so it writes them to the WAL at once: ~27 MB at a million operations,
//     ~260 MB at ten million.
//
// With the small table merged into the large one directly (schema 6), a merge touched most
// of the large table's pages from about a million operations on: at a million the store
// wrote 11.2 instead of 9.0 KB per operation, and more the larger it grew. A variable so
// tests can merge often.
var hashMergeAt = [len(hashTables) - 1]int64{8192, 32 * 8192}

// hashCounts are the sizes of the hash tables that merge (all but the large one), or -1
// each when unknown.
type hashCounts [len(hashMergeAt)]int64

var unknownHashCounts = hashCounts{-1, -1}

// mergeHashes counts the inserted operations' hashes into the small table and moves a
// table's hashes into the next one when it holds hashMergeAt of them. Selecting from a
// WITHOUT ROWID table returns its rows in key order, so the insert walks the next table
// once from the first key to the last. It returns the tables' sizes after the transaction.
// The sizes live in memory (Store.hashCounts), read after a restart or a failed commit;
// they only decide when to merge, so deletes that shrink the tables (their trigger) are
// not counted.
func (s *Store) mergeHashes(ctx context.Context, tx *sql.Tx, inserted int64) (hashCounts, error) {
	n := s.hashCounts
	if n[0] < 0 {
		for i := range n {
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+hashTables[i]).Scan(&n[i]); err != nil {
				return n, fmt.Errorf("write batch: count %s: %w", hashTables[i], err)
			}
		}
		inserted = 0 // the count includes this batch
	}
	n[0] += inserted
	for i := range n {
		if n[i] < hashMergeAt[i] {
			break
		}
		from, into := hashTables[i], hashTables[i+1]
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+into+` (prefix, op) SELECT prefix, op FROM `+from); err != nil {
			return n, fmt.Errorf("write batch: merge %s into %s: %w", from, into, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+from); err != nil {
			return n, fmt.Errorf("write batch: merge %s into %s: %w", from, into, err)
		}
		if i+1 < len(n) {
			n[i+1] += n[i]
		}
		n[i] = 0
	}
	return n, nil
}

const ackSQL = `INSERT INTO ack_cursors (topic, author, log_id, seq) VALUES (?, ?, ?, ?)
	ON CONFLICT (topic, author, log_id) DO UPDATE SET seq = max(seq, excluded.seq)`

// insertSizes are the row counts of the multi-row INSERT statements, largest first: a
// batch's rows go out in as many 64-row statements as fit, then at most one statement of
// each smaller size (46 rows: 32 + 8 + 4 + 2), instead of one statement per leftover row,
// which cost the writer a statement step and a few allocations per operation. 10 × 64
// parameters stay far below SQLite's limit.
var insertSizes = [...]int{64, 32, 16, 8, 4, 2, 1}

// insertStmts holds one statement per insertSizes entry.
type insertStmts [len(insertSizes)]*sql.Stmt

// The operation's rowid is the batch's to choose (batch.nextRowID), so its hash row can
// name it without asking SQLite which rowid each row of a multi-row insert got.
const (
	insertOpColumns   = `INSERT INTO operations (rowid, hash, author, log_id, seq, header, body, payload_size, timestamp, prune) VALUES `
	opRow             = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	opColumns         = 10
	insertHashColumns = `INSERT INTO operation_hashes_recent (prefix, op) VALUES `
	// The whole hash is bound and cut here, so both rows share the operation's boxed
	// arguments (each []byte or int64 put in an interface is an allocation).
	hashRow     = `(substr(?, 1, 8), ?)`
	hashColumns = 2
)

// insertSQL returns the INSERT statement of n rows, each row (one set of placeholders).
func insertSQL(columns, row string, n int) string {
	var sb strings.Builder
	sb.WriteString(columns)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(row)
	}
	return sb.String()
}

// batch is one Write transaction. It keeps the latest entry of every log it touched in
// memory, so an in-order operation (the common case: sync streams logs in seq order) costs
// no lookup at all, and it defers the inserts into multi-row statements. Deferred rows are
// written before any statement that could observe them (flushPending).
type batch struct {
	tx                                                *sql.Tx
	exists, latestStmt, atSeq, insTopic, maxRowID, pr lazyStmt
	insOps, insHashes                                 [len(insertSizes)]lazyStmt
	bound                                             []*sql.Stmt // the statements bound so far; close closes them
	topics                                            map[topicLog]struct{}
	cache                                             *headCache // committed heads of earlier batches
	// latest holds, per log touched in this batch, its latest entry as the database plus
	// the pending rows have it (nil: the log is empty).
	latest        map[logKey]*latestEntry
	pending       []any // opColumns arguments per deferred operation
	pendingHashes []any // hashColumns arguments per deferred operation
	nextRowID     int64 // the rowid of the next inserted operation; 0 until read
	inserted      int64
}

type logKey struct {
	author operation.PublicKey
	log    operation.LogID
}

type latestEntry struct {
	hash operation.Hash
	seq  uint64
}

type topicLog struct {
	topic  operation.Topic
	author operation.PublicKey
	log    operation.LogID
}

// writeStmts are the statements of a Write, prepared once on the writer connection:
// parsing and planning them again for every batch (the 64-row insert has 576 parameters)
// was ~7 % of the writer's SQLite time in a catch-up. Each batch binds them to its
// transaction with Tx.StmtContext, which reuses the connection's prepared statement.
type writeStmts struct {
	exists, latest, atSeq, insTopic, prune, ack, maxRowID, dataVersion *sql.Stmt
	insOps, insHashes                                                  insertStmts
}

func prepareWriteStmts(ctx context.Context, db *sql.DB) (*writeStmts, error) {
	ws := &writeStmts{}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&ws.exists, `SELECT 1 FROM operations WHERE ` + hashLookup},
		{&ws.latest, `SELECT hash, seq FROM operations WHERE author = ? AND log_id = ? ORDER BY seq DESC LIMIT 1`},
		{&ws.atSeq, `SELECT hash FROM operations WHERE author = ? AND log_id = ? AND seq = ?`},
		{&ws.maxRowID, `SELECT coalesce(max(rowid), 0) FROM operations`},
		{&ws.dataVersion, `PRAGMA data_version`},
		{&ws.insTopic, `INSERT OR IGNORE INTO topic_logs (topic, author, log_id) VALUES (?, ?, ?)`},
		{&ws.prune, `DELETE FROM operations WHERE author = ? AND log_id = ? AND seq < ?`},
		{&ws.ack, ackSQL},
	} {
		if err := ws.prepare(ctx, db, p.dst, p.query); err != nil {
			return nil, err
		}
	}
	for i, n := range insertSizes {
		if err := ws.prepare(ctx, db, &ws.insOps[i], insertSQL(insertOpColumns, opRow, n)); err != nil {
			return nil, err
		}
		if err := ws.prepare(ctx, db, &ws.insHashes[i], insertSQL(insertHashColumns, hashRow, n)); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// prepare prepares query into *dst, or closes what ws has prepared and fails.
func (ws *writeStmts) prepare(ctx context.Context, db *sql.DB, dst **sql.Stmt, query string) error {
	stmt, err := db.PrepareContext(ctx, query)
	if err != nil {
		ws.close()
		return fmt.Errorf("prepare write statements: %w", err)
	}
	*dst = stmt
	return nil
}

func (ws *writeStmts) close() error {
	var errs []error
	for _, s := range ws.all() {
		if *s != nil {
			errs = append(errs, (*s).Close())
		}
	}
	return errors.Join(errs...)
}

func (ws *writeStmts) all() []**sql.Stmt {
	all := []**sql.Stmt{&ws.exists, &ws.latest, &ws.atSeq, &ws.insTopic, &ws.prune, &ws.ack, &ws.maxRowID, &ws.dataVersion}
	for i := range insertSizes {
		all = append(all, &ws.insOps[i], &ws.insHashes[i])
	}
	return all
}

func prepareBatch(tx *sql.Tx, ws *writeStmts, cache *headCache) *batch {
	b := &batch{tx: tx, bound: make([]*sql.Stmt, 0, 8), topics: make(map[topicLog]struct{}),
		latest: make(map[logKey]*latestEntry), cache: cache}
	lazy := func(s *sql.Stmt) lazyStmt { return lazyStmt{batch: b, prepared: s} }
	b.exists, b.latestStmt, b.atSeq = lazy(ws.exists), lazy(ws.latest), lazy(ws.atSeq)
	b.insTopic, b.maxRowID, b.pr = lazy(ws.insTopic), lazy(ws.maxRowID), lazy(ws.prune)
	for i := range insertSizes {
		b.insOps[i], b.insHashes[i] = lazy(ws.insOps[i]), lazy(ws.insHashes[i])
	}
	return b
}

func (b *batch) close() {
	for _, s := range b.bound {
		s.Close()
	}
}

// lazyStmt is a write statement bound to the batch's transaction when first used: a batch
// needs a few of its ten statements, and binding one (Tx.StmtContext) allocates.
type lazyStmt struct {
	batch           *batch
	prepared, bound *sql.Stmt
}

func (l *lazyStmt) get(ctx context.Context) *sql.Stmt {
	if l.bound == nil {
		l.bound = l.batch.tx.StmtContext(ctx, l.prepared)
		l.batch.bound = append(l.batch.bound, l.bound)
	}
	return l.bound
}

// flushPending writes the deferred operations and their hash rows.
func (b *batch) flushPending(ctx context.Context) error {
	if err := flushRows(ctx, &b.insOps, b.pending, opColumns); err != nil {
		return fmt.Errorf("write batch: insert operations: %w", err)
	}
	if err := flushRows(ctx, &b.insHashes, b.pendingHashes, hashColumns); err != nil {
		return fmt.Errorf("write batch: insert hashes: %w", err)
	}
	clear(b.pending)
	clear(b.pendingHashes)
	b.pending, b.pendingHashes = b.pending[:0], b.pendingHashes[:0]
	return nil
}

// flushRows inserts rows of cols arguments each with the statements of insertSizes:
// as many of the largest as fit, then at most one of each smaller size.
func flushRows(ctx context.Context, stmts *[len(insertSizes)]lazyStmt, args []any, cols int) error {
	for i, n := range insertSizes {
		for len(args) >= n*cols {
			if _, err := stmts[i].get(ctx).ExecContext(ctx, args[:n*cols]...); err != nil {
				return err
			}
			args = args[n*cols:]
		}
	}
	return nil
}

// rowID returns the rowid for the next inserted operation: one past the table's largest,
// read once per batch (the batch is the only writer).
func (b *batch) rowID(ctx context.Context) (int64, error) {
	if b.nextRowID == 0 {
		var last int64
		if err := b.maxRowID.get(ctx).QueryRowContext(ctx).Scan(&last); err != nil {
			return 0, fmt.Errorf("write batch: last rowid: %w", err)
		}
		b.nextRowID = last + 1
	}
	id := b.nextRowID
	b.nextRowID++
	return id, nil
}

// latestOf returns the log's latest entry (nil for an empty log), from memory if this
// batch or a committed earlier one touched the log.
func (b *batch) latestOf(ctx context.Context, k logKey) (*latestEntry, error) {
	if e, ok := b.latest[k]; ok {
		return e, nil
	}
	if e, ok := b.cache.get(k); ok {
		b.latest[k] = e
		return e, nil
	}
	return b.loadLatest(ctx, k)
}

// loadLatest reads the log's latest entry from the database into b.latest. A function of
// its own, so only this path copies k to the heap (its arrays become query arguments).
func (b *batch) loadLatest(ctx context.Context, k logKey) (*latestEntry, error) {
	// Pending rows all belong to logs already in b.latest, so the database is current for k.
	var lhash []byte
	var lseq int64
	var e *latestEntry
	switch err := b.latestStmt.get(ctx).QueryRowContext(ctx, k.author[:], k.log[:]).Scan(&lhash, &lseq); {
	case err == nil:
		e = &latestEntry{hash: operation.Hash(lhash), seq: uint64(lseq)}
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("write batch: latest entry: %w", err)
	}
	b.latest[k] = e
	return e, nil
}

// noLogID is the log id of an operation without extensions (Operation.LogID).
var noLogID operation.LogID

// logIDOf is op.LogID()[:] without copying the id.
func logIDOf(op *operation.Operation) []byte {
	if op.Header.Extensions == nil {
		return noLogID[:]
	}
	return op.Header.Extensions.LogID[:]
}

func (b *batch) insert(ctx context.Context, in *Insert) (InsertResult, error) {
	op := in.Op
	author, logID, seq := op.Author(), op.LogID(), op.SeqNum()
	k := logKey{author, logID}
	le, err := b.latestOf(ctx, k)
	if err != nil {
		return InsertResult{}, err
	}
	var latest *operation.Operation
	if le != nil {
		latest = &operation.Operation{Hash: le.hash, Header: operation.Header{PublicKey: author, SeqNum: le.seq}}
	}
	if err := operation.CheckSequence(latest, op); err != nil {
		// Only an operation that does not extend the log can be stored already: the hash
		// covers author, log and seq, and a stored entry at seq means latest.seq >= seq.
		// So the duplicate lookup is needed on this path only, and comes first as before.
		if err := b.flushPending(ctx); err != nil {
			return InsertResult{}, err
		}
		var one int
		switch err := b.exists.get(ctx).QueryRowContext(ctx, op.Hash[:]).Scan(&one); {
		case err == nil:
			return InsertResult{Outcome: AlreadyExists}, nil
		case !errors.Is(err, sql.ErrNoRows):
			return InsertResult{}, fmt.Errorf("write batch: lookup %s: %w", op.Hash.Short(), err)
		}
		switch {
		case latest != nil && seq <= latest.SeqNum():
			var other []byte
			switch err := b.atSeq.get(ctx).QueryRowContext(ctx, op.Header.PublicKey[:], logIDOf(op), int64(seq)).Scan(&other); {
			case err == nil:
				return InsertResult{Outcome: Rejected, Err: &operation.ValidationError{Kind: operation.ErrFork,
					Detail: fmt.Sprintf("author %s seq %d is already %s, got %s", author.Short(), seq, operation.Hash(other).Short(), op.Hash.Short())}}, nil
			case !errors.Is(err, sql.ErrNoRows):
				return InsertResult{}, fmt.Errorf("write batch: entry at seq: %w", err)
			}
			// The seq is free but below the latest entry: the log was pruned past it.
			return InsertResult{Outcome: Rejected, Err: &operation.ValidationError{Kind: operation.ErrSeqNum,
				Detail: fmt.Sprintf("seq %d is below the log's retained entries (latest %d)", seq, latest.SeqNum())}}, nil
		case errors.Is(err, operation.ErrSeqNum):
			return InsertResult{Outcome: MissingBacklink, Err: err}, nil
		default:
			return InsertResult{Outcome: Rejected, Err: err}, nil
		}
	}
	var body any
	if op.Body != nil {
		body = op.Body
	}
	prune := 0
	if op.Prune() {
		prune = 1
	}
	rowID, err := b.rowID(ctx)
	if err != nil {
		return InsertResult{}, err
	}
	// The arguments slice the operation's own arrays: slicing the local copies above would
	// move each of them to the heap, two allocations per operation.
	rowIDArg, hashArg := any(rowID), any(op.Hash[:]) // boxed once for both rows
	b.pending = append(b.pending, rowIDArg, hashArg, op.Header.PublicKey[:], logIDOf(op), int64(seq), op.HeaderBytes, body,
		int64(op.Header.PayloadSize), int64(op.Timestamp()), prune)
	b.pendingHashes = append(b.pendingHashes, hashArg, rowIDArg)
	b.inserted++
	if le == nil {
		le = &latestEntry{}
		b.latest[k] = le
	}
	le.hash, le.seq = op.Hash, seq
	key := topicLog{in.Topic, author, logID}
	if _, ok := b.topics[key]; !ok {
		if _, err := b.insTopic.get(ctx).ExecContext(ctx, in.Topic[:], op.Header.PublicKey[:], logIDOf(op)); err != nil {
			return InsertResult{}, fmt.Errorf("write batch: topic association: %w", err)
		}
		b.topics[key] = struct{}{}
	}
	res := InsertResult{Outcome: Inserted}
	if op.Prune() && seq > 0 {
		if err := b.flushPending(ctx); err != nil {
			return InsertResult{}, err
		}
		r, err := b.pr.get(ctx).ExecContext(ctx, op.Header.PublicKey[:], logIDOf(op), int64(seq))
		if err != nil {
			return InsertResult{}, fmt.Errorf("write batch: prune %s below %d: %w", author.Short(), seq, err)
		}
		res.Pruned, _ = r.RowsAffected()
	}
	return res, nil
}
