package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// The readable form of `panda-node subscribe` shows an operation's source under the name the
// JSON form gives it, with the peer it came from, and the other events by their JSON type.
func TestFormatEvent(t *testing.T) {
	peer := testPeer(t)
	peerID, err := node.PeerIDOf(peer)
	if err != nil {
		t.Fatal(err)
	}
	topic := topicOf("chat").Topic
	hash := operation.HashOf([]byte("op"))
	op := node.ProcessedOperation{Topic: topic, Hash: hash, Author: peer, SeqNum: 4, Timestamp: 1_700_000_000_000_000, Message: []byte("hello\n")}
	synced := op
	synced.Source = node.SyncSession{Peer: peer, SessionID: 1, Phase: node.PhaseLive}
	replayed := op
	replayed.Source, replayed.Replayed = node.LocalStore{}, true
	binary := op
	binary.Source, binary.Message = node.StoreHistory{}, []byte{0, 1, 2}
	for _, tc := range []struct {
		ev   node.Event
		want string
	}{
		{node.Processed{Operation: synced}, "2023-11-14T22:13:20Z " + peer.Short() + " #4 sync from " + peerID.String() + ": hello"},
		{node.Processed{Operation: replayed}, "2023-11-14T22:13:20Z " + peer.Short() + " #4 replay: hello"},
		{node.Processed{Operation: binary}, "2023-11-14T22:13:20Z " + peer.Short() + " #4 store: <3 bytes binary>"},
		{node.SyncEnded{Peer: peer, SessionID: 1, Err: errors.New("stream reset")}, "sync_ended peer " + peerID.String() + ": stream reset"},
		{node.ProcessingFailed{Hash: hash, Err: errors.New("bad signature"), Source: node.Gossip{Peer: peer}},
			"processing_failed peer " + peerID.String() + " operation " + hash.Short() + ": bad signature"},
		{node.ReplayStarted{Total: 2}, "replay_started"},
	} {
		if got := formatEvent(node.TopicEvent{Topic: topic, Event: tc.ev}); got != tc.want {
			t.Errorf("%T:\n got %q\nwant %q", tc.ev, got, tc.want)
		}
	}
	if got := formatEvent(node.TopicEvent{Topic: topic}); !strings.Contains(got, "unknown event type") {
		t.Errorf("an event without a JSON form: %q", got)
	}
}
