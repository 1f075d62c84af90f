package main

import (
	"context"
	"log/slog"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/internal/metrics"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/policy"
)

// daemonNode is everything the daemon needs from a running node. It is deliberately small
// (status in admin API types, events in pkg/node's own, which the admin API serialises as
// they are) so the daemon logic (topic manager, admin backend, shutdown) is testable
// without a network; wire.go adapts pkg/node to it and tests use an in-memory
// implementation.
type daemonNode interface {
	PeerID() string
	PublicKey() operation.PublicKey
	NetworkID() operation.NetworkID
	// Addrs are the node's full multiaddrs (ending in /p2p/<peer id>).
	Addrs() []string
	Peers() []admin.PeerStatus
	// TopicStatus reports what the store holds for topic.
	TopicStatus(ctx context.Context, topic operation.Topic) (admin.TopicStatus, error)
	// Open subscribes to topic (sync + live delivery) from the ack frontier. The daemon
	// opens each topic at most once at a time.
	Open(ctx context.Context, topic operation.Topic) (topicStream, error)
	// SetTopicPolicy installs topic's write policy (a zero policy removes it); the
	// daemon sets it before it opens the topic, so nothing is synced unchecked.
	SetTopicPolicy(ctx context.Context, topic operation.Topic, p policy.Policy) error
	// History calls fn for stored operations of topic in log order, without moving the
	// persisted ack cursor: every one for admin.FromStart (Source node.StoreHistory), those
	// after the ack cursor for admin.FromFrontier (Replayed, as the node's own replay).
	// System-only operations are skipped.
	History(ctx context.Context, topic operation.Topic, from admin.From, fn func(node.ProcessedOperation) error) error
	// Reconfigure applies the settings of cfg that may change while the node runs
	// (config.Reloadable: bootstrap peers and announced addresses).
	Reconfigure(cfg *config.Config) error
	// Ready returns nil when the store is open and the host is listening.
	Ready(ctx context.Context) error
	// Alive returns nil unless the node is hung (its store writer neither answers a probe
	// nor makes progress before ctx ends).
	Alive(ctx context.Context) error
	// Close stops networking and flushes and closes the store.
	Close() error
}

// topicStream is one open topic.
type topicStream interface {
	// Publish signs msg into the local log and waits until it has been processed.
	Publish(ctx context.Context, msg []byte) (admin.PublishResult, error)
	// Events delivers the topic's events; closed by Close.
	Events() <-chan node.Event
	// Ack acknowledges a processed operation (only meaningful with explicit ack policy).
	Ack(ctx context.Context, hash string) error
	// Close stops syncing the topic; stored data is kept.
	Close() error
}

// nodeParams is what wire.go needs to build a node.
type nodeParams struct {
	cfg     *config.Config
	key     operation.PrivateKey
	log     *slog.Logger
	metrics *metrics.Metrics
	version string
}
