package logsync

import (
	"errors"
	"fmt"
)

var (
	// ErrProtocol marks a peer that broke the protocol: a malformed or oversized frame, an
	// unexpected message, more operations or bytes than it announced. Sessions failing with
	// it should count against the peer.
	ErrProtocol = errors.New("sync protocol violation")
	// ErrFrameTooLarge is a frame whose announced length exceeds the limit for its phase. It
	// wraps ErrProtocol.
	ErrFrameTooLarge = fmt.Errorf("%w: frame too large", ErrProtocol)
	// ErrUnexpectedMessage is a message that is not allowed in the current phase. It wraps
	// ErrProtocol.
	ErrUnexpectedMessage = fmt.Errorf("%w: unexpected message", ErrProtocol)
	// ErrExceedsAnnounced is an operation beyond what the peer announced in PreSync. It wraps
	// ErrProtocol.
	ErrExceedsAnnounced = fmt.Errorf("%w: more than announced in PreSync", ErrProtocol)
	// ErrInvalidOperation is what a Sink wraps when it rejects a received operation as invalid
	// (bad signature, fork, ...). It aborts the session and counts against the peer.
	ErrInvalidOperation = errors.New("invalid operation")
	// ErrUnexpectedClosure is the stream ending before the peer sent Close.
	ErrUnexpectedClosure = errors.New("stream closed without Close")
	// ErrRemoteClosed is the peer sending Close before catch-up finished. Not misbehaviour:
	// it is how a peer that shuts down or unsubscribes ends a session early.
	ErrRemoteClosed = errors.New("peer closed the session before catch-up finished")
	// ErrQueueOverflow ends a live session whose outgoing queue filled up; a retry re-syncs
	// whatever was not forwarded instead of dropping it silently.
	ErrQueueOverflow = errors.New("live queue overflow")
	// ErrTooManyLogs is a Have with more entries than the limit, ours or the peer's. When the
	// peer sends it, it is wrapped in ErrProtocol.
	ErrTooManyLogs = errors.New("too many logs in Have")
	// ErrRejected is the acceptor refusing a session (see RejectError for the reason).
	ErrRejected = errors.New("session rejected")
	// ErrClosed is returned by Manager methods after Close.
	ErrClosed = errors.New("sync manager closed")
	// ErrNotSubscribed is returned by AddPeer for a topic that is not subscribed.
	ErrNotSubscribed = errors.New("topic not subscribed")
)

// Reject reasons sent to the initiator. They are free text on the wire; these are the ones
// pandanet sends.
const (
	ReasonNotSubscribed = "topic not served"
	ReasonBusy          = "too many sessions"
	ReasonDuplicate     = "session already running"
	ReasonShuttingDown  = "shutting down"
	ReasonRateLimited   = "rate limited: kept pushing refused operations"
)

// RejectError is the acceptor's Reject message. It wraps ErrRejected.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return "session rejected: " + e.Reason }
func (e *RejectError) Unwrap() error { return ErrRejected }

// Misbehaving reports whether err means the remote peer broke the protocol or sent an invalid
// operation, as opposed to a network failure, a timeout or a local problem. The node may use
// it to penalise or disconnect the peer.
func Misbehaving(err error) bool {
	return errors.Is(err, ErrProtocol) || errors.Is(err, ErrInvalidOperation)
}

func protocolErr(base error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", base, fmt.Sprintf(format, args...))
}
