// Package admin implements the panda-node admin HTTP API (docs/node-contract.md): a server
// over a Backend interface that cmd/node implements on top of pkg/node, and a typed Client
// used by the panda-node CLI and by tests (the operator reads GET /v1/topics with its own
// client, pinned to TopicStatus by contract_test.go). Events are pkg/node's: the events
// stream writes each node.Event in its JSON form (node.TopicEvent) and the Client decodes
// them back.
//
// Endpoints (all require "Authorization: Bearer <token>" when a token is configured):
//
//	GET  /v1/status                               → Status
//	GET  /v1/topics                               → []TopicStatus
//	GET  /v1/peers                                → []PeerStatus
//	POST /v1/topics                {"topic": s}   → {"topic": hex}
//	POST /v1/topics/{topic}/publish  raw bytes    → PublishResult
//	GET  /v1/topics/{topic}/events?from=frontier|start → NDJSON stream of node.TopicEvent
//	POST /v1/topics/{topic}/ack    {"hash": h}    → {"topic": hex, "hash": h}
//
// Errors are JSON objects {"error": "..."} with a 4xx or 5xx status.
package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/pandanet/pandanet/pkg/node"
)

// Status is GET /v1/status.
type Status struct {
	PeerID    string        `json:"peerId"`
	PublicKey string        `json:"publicKey"` // hex of the 32-byte Ed25519 key
	NetworkID string        `json:"networkId"` // hex
	Addresses []string      `json:"addresses"` // multiaddrs including /p2p/<peer id>
	Topics    []TopicStatus `json:"topics"`
	Peers     []PeerStatus  `json:"peers"`
	Version   string        `json:"version"`
}

// TopicStatus describes one subscribed topic and what the local store holds for it.
type TopicStatus struct {
	Topic      string      `json:"topic"` // hex
	Operations int64       `json:"operations"`
	Authors    int64       `json:"authors"`
	Logs       []LogStatus `json:"logs"`
	// Policy is the topic's write policy with its usage; absent when the topic has none.
	Policy *TopicPolicy `json:"policy,omitempty"`
}

// TopicPolicy is a topic's write policy (zero limits are unlimited) and what it is measured
// against: the operations and bytes stored, per topic and per author.
type TopicPolicy struct {
	Writers   []string  `json:"writers,omitempty"` // hex public keys; empty: anyone
	PerAuthor Quota     `json:"perAuthor"`
	PerTopic  Quota     `json:"perTopic"`
	Retention Retention `json:"retention"`
	Usage     Usage     `json:"usage"`
	// Authors is the usage of every author with stored operations, sorted by key.
	Authors []AuthorUsage `json:"authors"`
	// Refused counts operations refused since the node started, by reason (not_writer,
	// over_quota, retention).
	Refused map[string]uint64 `json:"refused"`
	// RetiredLogs counts logs retention dropped since the node started.
	RetiredLogs uint64 `json:"retiredLogs"`
}

// Quota bounds stored operations and bytes; 0 is unlimited.
type Quota struct {
	MaxOps   uint64 `json:"maxOps,omitempty"`
	MaxBytes uint64 `json:"maxBytes,omitempty"`
}

// Retention bounds what a topic keeps; 0 is unlimited.
type Retention struct {
	MaxAgeSeconds int64  `json:"maxAgeSeconds,omitempty"`
	MaxBytes      uint64 `json:"maxBytes,omitempty"`
}

// Usage is what is stored.
type Usage struct {
	Ops   uint64 `json:"ops"`
	Bytes uint64 `json:"bytes"`
}

// AuthorUsage is one author's usage of a topic.
type AuthorUsage struct {
	Author string `json:"author"` // hex public key
	Usage
}

// LogStatus is one author's log in a topic. Height is the highest sequence number stored
// locally (so a log of n unpruned operations has height n-1); two replicas hold the same
// log when their heights are equal.
type LogStatus struct {
	Author string `json:"author"` // hex public key
	Height uint64 `json:"height"`
}

// PeerStatus is one connected peer.
type PeerStatus struct {
	PeerID    string   `json:"peerId"`
	Addresses []string `json:"addresses"`
	Direction string   `json:"direction"` // "inbound" or "outbound"
	Relayed   bool     `json:"relayed"`
}

// AckRequest is the body of POST /v1/topics/{topic}/ack.
type AckRequest struct {
	Hash string `json:"hash"`
}

// PublishResult is the response of a publish: the operation id and its sequence number.
type PublishResult struct {
	Hash string `json:"hash"`
	Seq  uint64 `json:"seq"`
}

// From selects where an events stream starts.
type From string

const (
	// FromFrontier delivers everything new; under the explicit ack policy it first
	// delivers every stored operation not acknowledged yet.
	FromFrontier From = "frontier"
	// FromStart delivers every stored operation of the topic, then everything new.
	FromStart From = "start"
)

// ParseFrom parses the from query parameter; "" means frontier.
func ParseFrom(s string) (From, error) {
	switch From(s) {
	case "", FromFrontier:
		return FromFrontier, nil
	case FromStart:
		return FromStart, nil
	}
	return "", fmt.Errorf("from must be %q or %q, got %q", FromFrontier, FromStart, s)
}

// Backend is what the server needs from the node. Topic arguments are already parsed and
// given as the 64-character lowercase hex id. Implementations return errors wrapping
// ErrInvalid or ErrNotFound to choose the status code; anything else is a 500 (and for
// Publish a 422 if it wraps an operation validation error, see Server).
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Topics(ctx context.Context) ([]TopicStatus, error)
	Peers(ctx context.Context) ([]PeerStatus, error)
	// Publish signs msg into the node's log for topic and waits until it was processed.
	Publish(ctx context.Context, topic string, msg []byte) (PublishResult, error)
	// Subscribe streams events of topic until ctx is cancelled or stop is called; the
	// channel is closed afterwards. stop must be safe to call more than once. The server
	// writes each event in its JSON form (node.TopicEvent).
	Subscribe(ctx context.Context, topic string, from From) (events <-chan node.Event, stop func(), err error)
	// AddTopic subscribes to and syncs topic until the process restarts.
	AddTopic(ctx context.Context, topic string) error
	// Ack acknowledges the operation hash (hex) of topic and every earlier operation of
	// its author's log in the topic. Unknown hashes (for example pruned ones) are ignored.
	Ack(ctx context.Context, topic, hash string) error
}

// Backend errors that select a status code.
var (
	ErrInvalid  = errors.New("invalid request")    // 400
	ErrNotFound = errors.New("not found")          // 404
	ErrRejected = errors.New("operation rejected") // 422
	ErrNotReady = errors.New("node not ready")     // 503
	ErrLimit    = errors.New("limit reached")      // 429
)
