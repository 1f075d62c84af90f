package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/operation"
)

// Event is an item of a Subscription: one of Processed, ProcessingFailed, ReplayStarted,
// ReplayEnded, ReplayFailed, ImportStarted, ImportEnded, AckFailed, SyncStarted, SyncEnded.
// These are the node's only topic events: the lower layers' events (logsync's sync events)
// are mapped onto them in one place (network.onSyncEvent), and the admin API streams them
// in their JSON form (TopicEvent).
type Event interface{ isEvent() }

// Processed delivers one stored application message.
type Processed struct {
	Operation ProcessedOperation
}

// ProcessedOperation is a stored operation with its message, as delivered to the app.
type ProcessedOperation struct {
	Topic  operation.Topic
	Hash   operation.Hash
	Author operation.PublicKey
	SeqNum uint64
	// Timestamp is the author's claim, µs since the UNIX epoch (not validated).
	Timestamp uint64
	// Message is the operation body; nil if the payload was deleted ("off-chain").
	Message []byte
	Source  Source
	// Replayed is true for operations delivered by a replay of un-acknowledged entries.
	Replayed bool

	sub *Subscription
}

// Ack acknowledges this operation (and, since the cursor is a per-log high-water mark,
// every earlier operation of the same log). It returns once the ack is committed.
func (p ProcessedOperation) Ack(ctx context.Context) error {
	if p.sub == nil {
		return errNoSubscription
	}
	return p.sub.ackLog(ctx, p.Author, p.SeqNum)
}

// ProcessingFailed reports an operation that was rejected or could not be stored. It is
// not acknowledged and never stored.
type ProcessingFailed struct {
	Hash operation.Hash
	// Err wraps an operation.Err* sentinel for invalid operations (operation.Reason gives
	// a label), or a pipeline/store error.
	Err    error
	Source Source
}

// ReplayStarted announces a replay of un-acknowledged operations; Total is the number of
// Processed events that follow before ReplayEnded.
type ReplayStarted struct{ Total int64 }

// ReplayEnded closes a replay; live delivery of the topic resumes.
type ReplayEnded struct{}

// ReplayFailed ends a replay early; the operations not replayed stay un-acknowledged.
type ReplayFailed struct{ Err error }

// ImportStarted announces an external import session (Publisher.Import).
type ImportStarted struct{ SessionID uint64 }

// ImportEnded follows the last event of an import session.
type ImportEnded struct {
	SessionID                  uint64
	Stored, Duplicates, Failed int
}

// AckFailed reports an automatic acknowledgement that could not be written; the
// operation will be replayed.
type AckFailed struct {
	Hash operation.Hash
	Err  error
}

// SyncStarted reports a sync session with a peer on this topic, once both sides exchanged
// what they have.
type SyncStarted struct {
	Peer                         operation.PublicKey
	SessionID                    uint64
	IncomingOps, OutgoingOps     uint64
	IncomingBytes, OutgoingBytes uint64
}

// SyncEnded reports the end of a sync session's catch-up phase (or its failure, Err).
type SyncEnded struct {
	Peer                     operation.PublicKey
	SessionID                uint64
	SentOps, ReceivedOps     uint64
	SentBytes, ReceivedBytes uint64
	Err                      error
}

func (Processed) isEvent()        {}
func (ProcessingFailed) isEvent() {}
func (ReplayStarted) isEvent()    {}
func (ReplayEnded) isEvent()      {}
func (ReplayFailed) isEvent()     {}
func (ImportStarted) isEvent()    {}
func (ImportEnded) isEvent()      {}
func (AckFailed) isEvent()        {}
func (SyncStarted) isEvent()      {}
func (SyncEnded) isEvent()        {}

// Source says where an operation came from. String is its name in the JSON form of
// events: "local", "sync", "gossip", "import" or "store".
type Source interface {
	isSource()
	String() string
}

// LocalStore: published on this node, or replayed from the local store.
type LocalStore struct{}

// StoreHistory: read from the local store by Node.History. Nothing is delivered or
// acknowledged: History reads, it is not a replay.
type StoreHistory struct{}

// SyncPhase distinguishes a sync session's catch-up from its live phase. It is log sync's
// phase (one definition; String gives "sync" or "live").
type SyncPhase = logsync.Phase

const (
	PhaseSync = logsync.PhaseSync // catch-up: the logs each side was missing at the start
	PhaseLive = logsync.PhaseLive // live: operations forwarded as they are stored
)

// SyncSession: received from a peer in a log-sync session.
type SyncSession struct {
	Peer      operation.PublicKey
	SessionID uint64
	Phase     SyncPhase

	peerID peer.ID // the libp2p id, so live forwarding can skip the origin
}

// ExternalStream: imported with Publisher.Import.
type ExternalStream struct{ SessionID uint64 }

// Gossip: received as a gossip announcement.
type Gossip struct{ Peer operation.PublicKey }

func (LocalStore) isSource()     {}
func (StoreHistory) isSource()   {}
func (SyncSession) isSource()    {}
func (ExternalStream) isSource() {}
func (Gossip) isSource()         {}

func (LocalStore) String() string     { return sourceLocal }
func (StoreHistory) String() string   { return sourceStore }
func (SyncSession) String() string    { return sourceSync }
func (ExternalStream) String() string { return sourceImport }
func (Gossip) String() string         { return sourceGossip }
