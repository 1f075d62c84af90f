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
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("write batch: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	results := make([]InsertResult, len(inserts))
	if len(inserts) > 0 {
		b := prepareBatch(ctx, tx, s.stmts)
		defer b.close()
		for i := range inserts {
			if results[i], err = b.insert(ctx, &inserts[i]); err != nil {
				return nil, err
			}
		}
		if err := b.flushPending(ctx); err != nil {
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
		return nil, fmt.Errorf("write batch: commit: %w", err)
	}
	return results, nil
}

const ackSQL = `INSERT INTO ack_cursors (topic, author, log_id, seq) VALUES (?, ?, ?, ?)
	ON CONFLICT (topic, author, log_id) DO UPDATE SET seq = max(seq, excluded.seq)`

// insertChunk is how many operations one multi-row INSERT carries: a chunk costs one
// statement step instead of insertChunk, and 9 × 64 parameters stay far below SQLite's limit.
const insertChunk = 64

const insertOpColumns = `INSERT INTO operations (hash, author, log_id, seq, header, body, payload_size, timestamp, prune) VALUES `

// insertOpSQL returns the INSERT statement for n operations.
func insertOpSQL(n int) string {
	var sb strings.Builder
	sb.WriteString(insertOpColumns)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return sb.String()
}

var insertOpChunkSQL = insertOpSQL(insertChunk)

// batch is one Write transaction. It keeps the latest entry of every log it touched in
// memory, so an in-order operation (the common case: sync streams logs in seq order) costs
// no lookup at all, and it defers the inserts into multi-row statements. Deferred rows are
// written before any statement that could observe them (flushPending).
type batch struct {
	tx                                                    *sql.Tx
	exists, latestStmt, atSeq, insOne, insChunk, insTopic *sql.Stmt
	pr                                                    *sql.Stmt
	topics                                                map[topicLog]struct{}
	// latest holds, per log touched in this batch, its latest entry as the database plus
	// the pending rows have it (nil: the log is empty).
	latest  map[logKey]*latestEntry
	pending []any // 9 arguments per deferred operation
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
	exists, latest, atSeq, insOne, insChunk, insTopic, prune, ack *sql.Stmt
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
		{&ws.insOne, insertOpSQL(1)},
		{&ws.insChunk, insertOpChunkSQL},
		{&ws.insTopic, `INSERT OR IGNORE INTO topic_logs (topic, author, log_id) VALUES (?, ?, ?)`},
		{&ws.prune, `DELETE FROM operations WHERE author = ? AND log_id = ? AND seq < ?`},
		{&ws.ack, ackSQL},
	} {
		stmt, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			ws.close()
			return nil, fmt.Errorf("prepare write statements: %w", err)
		}
		*p.dst = stmt
	}
	return ws, nil
}

func (ws *writeStmts) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{ws.exists, ws.latest, ws.atSeq, ws.insOne, ws.insChunk, ws.insTopic, ws.prune, ws.ack} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

func prepareBatch(ctx context.Context, tx *sql.Tx, ws *writeStmts) *batch {
	return &batch{tx: tx, topics: make(map[topicLog]struct{}), latest: make(map[logKey]*latestEntry),
		exists: tx.StmtContext(ctx, ws.exists), latestStmt: tx.StmtContext(ctx, ws.latest),
		atSeq: tx.StmtContext(ctx, ws.atSeq), insOne: tx.StmtContext(ctx, ws.insOne),
		insChunk: tx.StmtContext(ctx, ws.insChunk), insTopic: tx.StmtContext(ctx, ws.insTopic),
		pr: tx.StmtContext(ctx, ws.prune)}
}

func (b *batch) close() {
	for _, s := range []*sql.Stmt{b.exists, b.latestStmt, b.atSeq, b.insOne, b.insChunk, b.insTopic, b.pr} {
		if s != nil {
			s.Close()
		}
	}
}

// flushPending writes the deferred operations: full chunks with the multi-row statement,
// the rest one by one.
func (b *batch) flushPending(ctx context.Context) error {
	const cols = 9
	args := b.pending
	for len(args) >= insertChunk*cols {
		if _, err := b.insChunk.ExecContext(ctx, args[:insertChunk*cols]...); err != nil {
			return fmt.Errorf("write batch: insert %d operations: %w", insertChunk, err)
		}
		args = args[insertChunk*cols:]
	}
	for len(args) > 0 {
		if _, err := b.insOne.ExecContext(ctx, args[:cols]...); err != nil {
			return fmt.Errorf("write batch: insert %s: %w", operation.Hash(args[0].([]byte)).Short(), err)
		}
		args = args[cols:]
	}
	clear(b.pending)
	b.pending = b.pending[:0]
	return nil
}

// latestOf returns the log's latest entry (nil for an empty log), from memory if this
// batch touched the log before.
func (b *batch) latestOf(ctx context.Context, k logKey) (*latestEntry, error) {
	if e, ok := b.latest[k]; ok {
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
	switch err := b.latestStmt.QueryRowContext(ctx, k.author[:], k.log[:]).Scan(&lhash, &lseq); {
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
		switch err := b.exists.QueryRowContext(ctx, hashArgs(op.Hash[:])...).Scan(&one); {
		case err == nil:
			return InsertResult{Outcome: AlreadyExists}, nil
		case !errors.Is(err, sql.ErrNoRows):
			return InsertResult{}, fmt.Errorf("write batch: lookup %s: %w", op.Hash.Short(), err)
		}
		switch {
		case latest != nil && seq <= latest.SeqNum():
			var other []byte
			switch err := b.atSeq.QueryRowContext(ctx, op.Header.PublicKey[:], logIDOf(op), int64(seq)).Scan(&other); {
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
	// The arguments slice the operation's own arrays: slicing the local copies above would
	// move each of them to the heap, two allocations per operation.
	b.pending = append(b.pending, op.Hash[:], op.Header.PublicKey[:], logIDOf(op), int64(seq), op.HeaderBytes, body,
		int64(op.Header.PayloadSize), int64(op.Timestamp()), prune)
	if le == nil {
		le = &latestEntry{}
		b.latest[k] = le
	}
	le.hash, le.seq = op.Hash, seq
	key := topicLog{in.Topic, author, logID}
	if _, ok := b.topics[key]; !ok {
		if _, err := b.insTopic.ExecContext(ctx, in.Topic[:], op.Header.PublicKey[:], logIDOf(op)); err != nil {
			return InsertResult{}, fmt.Errorf("write batch: topic association: %w", err)
		}
		b.topics[key] = struct{}{}
	}
	res := InsertResult{Outcome: Inserted}
	if op.Prune() && seq > 0 {
		if err := b.flushPending(ctx); err != nil {
			return InsertResult{}, err
		}
		r, err := b.pr.ExecContext(ctx, op.Header.PublicKey[:], logIDOf(op), int64(seq))
		if err != nil {
			return InsertResult{}, fmt.Errorf("write batch: prune %s below %d: %w", author.Short(), seq, err)
		}
		res.Pruned, _ = r.RowsAffected()
	}
	return res, nil
}
