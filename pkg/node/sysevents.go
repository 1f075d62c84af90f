package node

import (
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/p2p"
)

// SystemEvent is a node-level networking event: PeerConnected, PeerDisconnected,
// DiscoveryStarted, DiscoveryEnded, DiscoveryFailed or TopicPeer.
type SystemEvent interface{ isSystemEvent() }

// PeerConnected: a peer of our network connected (and completed identify).
type PeerConnected struct {
	Peer peer.ID
	// Direction is "inbound" or "outbound".
	Direction string
	Relayed   bool
}

// PeerDisconnected: the last connection to a peer closed.
type PeerDisconnected struct{ Peer peer.ID }

// DiscoveryStarted: a discovery session with Peer began (p2panda's SessionStarted).
// Initiated is true if we dialled.
type DiscoveryStarted struct {
	Peer      peer.ID
	Initiated bool
}

// DiscoveryEnded: a discovery session completed; Topics is the size of the topic
// intersection, Records the number of peer records received.
type DiscoveryEnded struct {
	Peer            peer.ID
	Initiated       bool
	Topics, Records int
	Duration        time.Duration
}

// DiscoveryFailed: a discovery session failed.
type DiscoveryFailed struct {
	Peer      peer.ID
	Initiated bool
	Duration  time.Duration
	Err       error
}

// TopicPeer: Peer shares Topic with us (found by private set intersection); the node syncs
// the topic with it.
type TopicPeer struct {
	Topic operation.Topic
	Peer  peer.ID
}

func (PeerConnected) isSystemEvent()    {}
func (PeerDisconnected) isSystemEvent() {}
func (DiscoveryStarted) isSystemEvent() {}
func (DiscoveryEnded) isSystemEvent()   {}
func (DiscoveryFailed) isSystemEvent()  {}
func (TopicPeer) isSystemEvent()        {}

// systemEventOf maps the host's events onto the node's (nil for none).
func systemEventOf(ev p2p.Event) SystemEvent {
	switch e := ev.(type) {
	case p2p.PeerConnected:
		return PeerConnected{Peer: e.Peer, Direction: strings.ToLower(e.Direction.String()), Relayed: e.Relayed}
	case p2p.PeerDisconnected:
		return PeerDisconnected{Peer: e.Peer}
	case p2p.DiscoverySessionStarted:
		return DiscoveryStarted{Peer: e.Peer, Initiated: e.Role == p2p.RoleInitiated}
	case p2p.DiscoverySessionEnded:
		return DiscoveryEnded{Peer: e.Peer, Initiated: e.Role == p2p.RoleInitiated, Topics: e.Topics, Records: e.Records, Duration: e.Duration}
	case p2p.DiscoverySessionFailed:
		return DiscoveryFailed{Peer: e.Peer, Initiated: e.Role == p2p.RoleInitiated, Duration: e.Duration, Err: e.Err}
	case p2p.TopicPeer:
		return TopicPeer{Topic: e.Topic, Peer: e.Peer}
	}
	return nil
}
