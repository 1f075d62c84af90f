package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/pandanet/pandanet/pkg/logsync"
	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/pipeline"
	"github.com/pandanet/pandanet/pkg/policy"
)

// The policy types are pkg/policy's, aliased so that using policies needs only this package.
type (
	// TopicPolicy is a topic's write policy: writers, quotas and retention.
	TopicPolicy = policy.Policy
	// Quota bounds stored operations and bytes (0: unlimited).
	Quota = policy.Quota
	// Retention bounds what a topic keeps (0: unlimited).
	Retention = policy.Retention
	// PolicyReport is a topic's policy with its usage per topic and author and refusals.
	PolicyReport = policy.Report
	// RefusalReason says why a policy refused an operation.
	RefusalReason = policy.Reason
)

// Refusal reasons.
const (
	RefusedNotWriter = policy.NotWriter
	RefusedOverQuota = policy.OverQuota
	RefusedRetention = policy.Retired
)

// ErrRefused is wrapped by the error of every operation a topic policy refused.
var ErrRefused = policy.ErrRefused

// WithTopicPolicy installs a write policy for topic when the node starts (see
// Node.SetTopicPolicy).
func WithTopicPolicy(topic operation.Topic, p TopicPolicy) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		if c.policies == nil {
			c.policies = make(map[operation.Topic]policy.Policy)
		}
		c.policies[topic] = p
		return nil
	}
}

// SetTopicPolicy installs or replaces topic's write policy: who may write, quotas and
// retention (see pkg/policy). It applies to every path into the store: operations from
// sync sessions, live forwarding, Import and the node's own publishes. Refused operations
// are not stored; sync peers get an explicit refusal and stop pushing the refused log. A
// zero policy removes the topic's policy.
func (n *Node) SetTopicPolicy(ctx context.Context, topic operation.Topic, p TopicPolicy) error {
	if err := n.pipe.SetPolicy(ctx, topic, p); err != nil {
		if errors.Is(err, pipeline.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("set policy of %s: %w", topic, err)
	}
	return nil
}

// TopicPolicy returns topic's policy with its current usage, if it has one.
func (n *Node) TopicPolicy(topic operation.Topic) (PolicyReport, bool) {
	return n.policy.Report(topic)
}

// PolicyRefusals counts operations refused by topic policies since the node started, by
// reason.
func (n *Node) PolicyRefusals() map[RefusalReason]uint64 { return n.policy.Refused() }

// EnforceRetention applies every topic's retention now instead of on the next periodic check.
func (n *Node) EnforceRetention(ctx context.Context) error {
	if err := n.pipe.EnforceRetention(ctx); err != nil {
		return fmt.Errorf("enforce retention: %w", err)
	}
	return nil
}

// refusePeerOperation checks a peer's operation against the topic's policy before it is
// verified, so a refused log costs a header decode, not a signature check and a pipeline
// slot. The pipeline checks again (authoritatively) before storing.
func (n *Node) refusePeerOperation(topic operation.Topic, header, body []byte) error {
	if _, ok := n.policy.Policy(topic); !ok {
		return nil
	}
	h, err := operation.DecodeHeader(header)
	if err != nil || h.Extensions == nil {
		return nil // invalid: the pipeline rejects it with the exact reason
	}
	c := policy.Candidate{Author: h.PublicKey, Log: h.Extensions.LogID, Seq: h.SeqNum, Prune: h.Extensions.Prune,
		Size: uint64(len(header) + len(body))}
	return syncRefusal(n.policy.Check(topic, c))
}

// syncRefusal turns a policy refusal into the sync protocol's, so the session tells the
// peer instead of failing; other errors pass through.
func syncRefusal(err error) error {
	var r *policy.RefusedError
	if !errors.As(err, &r) {
		return err
	}
	return &logsync.RefusedError{Author: r.Author, Log: r.Log, Reason: string(r.Reason), Err: err}
}
