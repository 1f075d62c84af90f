package main

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// catchUp holds readiness back after a start until the node has caught up with its peers:
// every topic of the topics file finished one catch-up sync (a sync_ended event without an
// error) with some peer, or until a deadline. A rolling update waits for readiness before it
// restarts the next node, so without this it could restart every holder of a topic before a
// restarted node had fetched what was published while it was down. Once caught up (or past
// the deadline) it stays so: later syncs do not matter for readiness.
type catchUp struct {
	log      *slog.Logger
	deadline time.Time
	total    int

	mu      sync.Mutex
	pending map[operation.Topic]struct{}
	done    bool
}

// newCatchUp waits for topics until deadline; a nil catchUp (no wait) is always caught up.
func newCatchUp(topics []operation.Topic, deadline time.Time, log *slog.Logger) *catchUp {
	c := &catchUp{log: log, deadline: deadline, total: len(topics), pending: make(map[operation.Topic]struct{}, len(topics))}
	for _, t := range topics {
		c.pending[t] = struct{}{}
	}
	c.done = len(c.pending) == 0
	return c
}

// observe records a topic event: a completed catch-up takes the topic off the list.
func (c *catchUp) observe(topic operation.Topic, ev node.Event) {
	e, ok := ev.(node.SyncEnded)
	if c == nil || !ok || e.Err != nil {
		return
	}
	c.drop(topic, "synced with "+peerName(e.Peer))
}

// drop takes topic off the list (synced, or removed from the topics file).
func (c *catchUp) drop(topic operation.Topic, why string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	if _, ok := c.pending[topic]; !ok {
		return
	}
	delete(c.pending, topic)
	c.log.Debug("topic caught up", "id", topic.String(), "how", why, "left", len(c.pending))
	if len(c.pending) == 0 {
		c.done = true
		c.log.Info("caught up with peers: every topic finished a catch-up sync", "topics", c.total)
	}
}

// err says why the node is not caught up at now, or nil.
func (c *catchUp) err(now time.Time) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	if !now.Before(c.deadline) {
		c.done = true
		c.log.Warn("ready without having caught up: --ready-catch-up-timeout passed",
			"topics_not_synced", len(c.pending), "topics", c.total)
		return nil
	}
	return fmt.Errorf("catching up with peers: %d of %d topics have not finished a sync with a peer yet (ready at the latest at %s, --ready-catch-up-timeout)",
		len(c.pending), c.total, c.deadline.UTC().Format(time.RFC3339))
}
