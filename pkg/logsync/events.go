package logsync

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Event is one of SyncStarted, SyncEnded, SessionFailed or SessionEnded.
type Event interface{ isEvent() }

// SyncStarted is emitted once both sides announced what they are about to push (PreSync or
// Done), like p2panda's StreamEvent::SyncStarted.
type SyncStarted struct {
	Topic     operation.Topic
	Peer      peer.ID
	SessionID uint64
	Initiator bool // we opened the session
	// Incoming is what the peer announced; Outgoing is what we are about to push.
	IncomingOps, IncomingBytes uint64
	OutgoingOps, OutgoingBytes uint64
}

// SyncEnded is emitted exactly once for every session that passed the handshake: when its
// catch-up phase completed (Err == nil; a live session goes on after it), or when the session
// ended before catch-up completed (Err != nil). The counts cover the catch-up phase and
// include duplicates.
type SyncEnded struct {
	Topic                      operation.Topic
	Peer                       peer.ID
	SessionID                  uint64
	Initiator                  bool
	SentOps, SentBytes         uint64
	ReceivedOps, ReceivedBytes uint64
	Err                        error
}

// SessionFailed is emitted by the Manager when a session attempt or a running session (in any
// phase, including live mode) ends with an error other than a local shutdown. SessionID is 0
// when the attempt failed before a session existed (dial or handshake). Misbehaving is
// Misbehaving(Err): the peer broke the protocol or sent an invalid operation.
type SessionFailed struct {
	Topic       operation.Topic
	Peer        peer.ID
	SessionID   uint64
	Initiator   bool
	Err         error
	Misbehaving bool
}

// SessionEnded is emitted by the Manager exactly once for every session that passed the
// handshake, after it stopped for any reason: catch-up only, a live session closed by
// either side, a failure (after SessionFailed), a replaced session or a local shutdown.
// Per-session state kept by a Sink can be released on it; no Receive of that session
// follows. Err is nil for a clean end.
type SessionEnded struct {
	Topic     operation.Topic
	Peer      peer.ID
	SessionID uint64
	Initiator bool
	Err       error
}

func (SessionEnded) isEvent()  {}
func (SyncStarted) isEvent()   {}
func (SyncEnded) isEvent()     {}
func (SessionFailed) isEvent() {}
