package logsync

import (
	"bytes"
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Heights maps author → log → highest stored seq number, for the logs of one topic.
type Heights map[operation.PublicKey]map[operation.LogID]uint64

// Entries returns the number of (author, log) pairs.
func (h Heights) Entries() int {
	n := 0
	for _, logs := range h {
		n += len(logs)
	}
	return n
}

// Store is the read side sync needs. Implementations must be safe for concurrent use.
type Store interface {
	// LogHeights returns the height of every log associated with topic. Logs without entries
	// are left out.
	LogHeights(ctx context.Context, topic operation.Topic) (Heights, error)
	// LogRange calls fn for every stored entry of (author, log) with from <= seq <= to, in
	// ascending seq order, streaming from storage (in batches) rather than loading the whole
	// range. The slices are only read during the call. A pruned log simply starts at its
	// lowest remaining entry. An error from fn stops the iteration and is returned.
	LogRange(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64, fn func(header, body []byte) error) error
	// LogSize counts the entries LogRange would visit and their header plus body bytes.
	LogSize(ctx context.Context, author operation.PublicKey, log operation.LogID, from, to uint64) (ops, bytes uint64, err error)
}

// Sink receives operations from sessions. Implementations verify and store them and must be
// safe for concurrent use by many sessions.
type Sink interface {
	// Receive hands over one operation; header and body are owned by the sink from now on
	// (body is nil when the operation has none). It blocks for backpressure. An error wrapping
	// ErrInvalidOperation aborts the session and marks the peer as misbehaving; any other
	// error aborts the session as a local failure. Operations the sink already has (duplicates)
	// should return nil.
	Receive(ctx context.Context, topic operation.Topic, header, body []byte, src Source) error
}

// Phase tells whether an operation arrived during catch-up or in live mode.
type Phase uint8

const (
	PhaseSync Phase = iota
	PhaseLive
)

func (p Phase) String() string {
	if p == PhaseLive {
		return "live"
	}
	return "sync"
}

// Source identifies the session an operation came from (p2panda's Source::SyncSession).
type Source struct {
	Peer      peer.ID
	SessionID uint64
	Phase     Phase
}

// logRange is what one side pushes for one log: entries with From <= seq <= To.
type logRange struct {
	Author   operation.PublicKey
	Log      operation.LogID
	From, To uint64
}

// remoteNeeds is p2panda-core's compare(local, remote) turned into inclusive ranges: a log the
// remote does not know is sent from seq 0 (a pruned log from its lowest entry), a log where the
// remote is behind is sent after the remote's height. Logs where the remote claims to be level
// or ahead, and logs we do not have, are ignored, so any claim is harmless to us. The result is
// sorted by author and log, so sessions behave deterministically.
func remoteNeeds(local, remote Heights) []logRange {
	var out []logRange
	for author, logs := range local {
		for log, height := range logs {
			from := uint64(0)
			if rh, ok := remote[author][log]; ok {
				if rh >= height {
					continue
				}
				from = rh + 1
			}
			out = append(out, logRange{Author: author, Log: log, From: from, To: height})
		}
	}
	slices.SortFunc(out, func(a, b logRange) int {
		if c := bytes.Compare(a.Author[:], b.Author[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.Log[:], b.Log[:])
	})
	return out
}
