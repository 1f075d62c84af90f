package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/store"
)

// Heights maps author → log → seq: log heights (highest stored seq) and ack cursors
// (highest acknowledged seq).
type Heights map[operation.PublicKey]map[operation.LogID]uint64

// Set records seq for (author, log).
func (h Heights) Set(author operation.PublicKey, log operation.LogID, seq uint64) {
	store.Heights(h).Set(author, log, seq)
}

// Get returns the seq for (author, log) and whether there is one.
func (h Heights) Get(author operation.PublicKey, log operation.LogID) (uint64, bool) {
	return store.Heights(h).Get(author, log)
}

// Clone returns a deep copy.
func (h Heights) Clone() Heights { return Heights(store.Heights(h).Clone()) }

// ErrNotFound is returned by StoreView.Get for an unknown (or pruned) operation.
var ErrNotFound = store.ErrNotFound

// StoreView reads the node's store. It cannot write: every write goes through the node's
// pipeline, whose cached log heads a direct insert would bypass (and so fork a log).
type StoreView struct{ s *store.Store }

// Store returns a read-only view of the node's store.
func (n *Node) Store() StoreView { return StoreView{n.store} }

// Get returns the stored operation with this hash, or an error wrapping ErrNotFound.
func (v StoreView) Get(ctx context.Context, hash operation.Hash) (*operation.Operation, error) {
	return v.s.Get(ctx, hash)
}

// Has reports whether an operation with this hash is stored.
func (v StoreView) Has(ctx context.Context, hash operation.Hash) (bool, error) {
	return v.s.Has(ctx, hash)
}

// Latest returns the entry with the highest seq of (author, log), or nil if the log is empty.
func (v StoreView) Latest(ctx context.Context, author operation.PublicKey, log operation.LogID) (*operation.Operation, error) {
	return v.s.Latest(ctx, author, log)
}

// LogHeights returns the highest stored seq of every log of topic.
func (v StoreView) LogHeights(ctx context.Context, topic operation.Topic) (Heights, error) {
	h, err := v.s.LogHeights(ctx, topic)
	return Heights(h), err
}

// Cursor returns topic's ack cursor: per log, the highest acknowledged seq.
func (v StoreView) Cursor(ctx context.Context, topic operation.Topic) (Heights, error) {
	h, err := v.s.Cursor(ctx, topic)
	return Heights(h), err
}

// LogSize summarises the stored entries of a log range.
type LogSize struct {
	Ops int64
	// PayloadOps counts entries with a payload (application messages, not system-only).
	PayloadOps int64
	// Bytes is header plus stored body bytes.
	Bytes int64
}

// LogSize summarises the entries of (author, log) with fromSeq <= seq <= toSeq.
func (v StoreView) LogSize(ctx context.Context, author operation.PublicKey, log operation.LogID, fromSeq, toSeq uint64) (LogSize, error) {
	sz, err := v.s.LogSize(ctx, author, log, fromSeq, toSeq)
	return LogSize(sz), err
}

// Topics returns every topic with stored operations, sorted.
func (v StoreView) Topics(ctx context.Context) ([]operation.Topic, error) { return v.s.Topics(ctx) }

// LogStat describes one log of a topic.
type LogStat struct {
	Author operation.PublicKey
	Log    operation.LogID
	Height uint64 // highest stored seq
	Ops    int64  // stored entries (fewer than Height+1 after pruning)
	Bytes  int64
}

// TopicStat describes one topic.
type TopicStat struct {
	Topic   operation.Topic
	Ops     int64
	Bytes   int64
	Authors int
	Logs    []LogStat
}

// TopicStats returns statistics for every topic, sorted by topic. It scans every topic's
// operations: for admin and metrics endpoints, not hot paths.
func (v StoreView) TopicStats(ctx context.Context) ([]TopicStat, error) {
	stats, err := v.s.TopicStats(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TopicStat, len(stats))
	for i, ts := range stats {
		out[i] = TopicStat{Topic: ts.Topic, Ops: ts.Ops, Bytes: ts.Bytes, Authors: ts.Authors, Logs: make([]LogStat, len(ts.Logs))}
		for j, l := range ts.Logs {
			out[i].Logs[j] = LogStat(l)
		}
	}
	return out, nil
}

// Size returns the size of the database in bytes (0 for an in-memory store).
func (v StoreView) Size(ctx context.Context) (int64, error) { return v.s.Size(ctx) }

// History yields the stored application messages of topic after the heights in after (nil:
// all of them), log by log (sorted by author, then log id) in seq order. System-only
// operations are skipped, and nothing is acknowledged: History reads, it is not a replay
// (the operations' Source is StoreHistory).
// The store is read about a megabyte at a time, so a long log is never held in memory. An
// error ends the iteration with (zero ProcessedOperation, err).
func (n *Node) History(ctx context.Context, topic operation.Topic, after Heights) iter.Seq2[ProcessedOperation, error] {
	return func(yield func(ProcessedOperation, error) bool) {
		heights, err := n.store.LogHeights(ctx, topic)
		if err != nil {
			yield(ProcessedOperation{}, fmt.Errorf("history of %s: %w", topic, err))
			return
		}
		for _, r := range sortedRanges(heights, after) {
			err := n.store.LogRange(ctx, r.author, r.log, r.from, r.to, func(op *operation.Operation) error {
				if op.Header.PayloadSize == 0 {
					return nil
				}
				if !yield(processedOf(topic, op, StoreHistory{}, false, nil), nil) {
					return errHistoryStopped
				}
				return nil
			})
			if errors.Is(err, errHistoryStopped) {
				return
			}
			if err != nil {
				yield(ProcessedOperation{}, fmt.Errorf("history of %s: %w", topic, err))
				return
			}
		}
	}
}

var errHistoryStopped = errors.New("history iteration stopped")

type logRange struct {
	author   operation.PublicKey
	log      operation.LogID
	from, to uint64
}

// sortedRanges lists, per log of heights, the seqs above after, sorted by author and log.
func sortedRanges(heights store.Heights, after Heights) []logRange {
	var ranges []logRange
	for author, logs := range heights {
		for log, height := range logs {
			from := uint64(0)
			if seen, ok := after.Get(author, log); ok {
				from = seen + 1
			}
			if from > height {
				continue
			}
			ranges = append(ranges, logRange{author, log, from, height})
		}
	}
	sort.Slice(ranges, func(i, j int) bool {
		if c := bytes.Compare(ranges[i].author[:], ranges[j].author[:]); c != 0 {
			return c < 0
		}
		return bytes.Compare(ranges[i].log[:], ranges[j].log[:]) < 0
	})
	return ranges
}

func processedOf(topic operation.Topic, op *operation.Operation, src Source, replayed bool, sub *Subscription) ProcessedOperation {
	return ProcessedOperation{Topic: topic, Hash: op.Hash, Author: op.Author(), SeqNum: op.SeqNum(),
		Timestamp: op.Timestamp(), Message: op.Body, Source: src, Replayed: replayed, sub: sub}
}
