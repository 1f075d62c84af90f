package node

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
	"github.com/pandanet/pandanet/pkg/p2p"
)

// TopicEvent is an Event of a topic. Its JSON form (MarshalJSON, UnmarshalJSON) is the one
// wire form of node events: the admin API streams it, one object per line, and clients
// decode it back into these types (docs/node-contract.md, events stream). Every object has
// "type", "topic" (hex) and "seq" (0 for events without an operation); the other fields
// appear when they are meaningful for the type:
//
//	type               node event        fields
//	processed          Processed         hash author seq timestamp source [peer sessionId phase] message
//	processing_failed  ProcessingFailed  hash source [peer sessionId phase] error
//	replay_started     ReplayStarted     total
//	replay_ended       ReplayEnded
//	replay_failed      ReplayFailed      error
//	import_started     ImportStarted     sessionId
//	import_ended       ImportEnded       sessionId stored duplicates failed
//	ack_failed         AckFailed         hash error
//	sync_started       SyncStarted       peer sessionId incomingOps outgoingOps incomingBytes outgoingBytes
//	sync_ended         SyncEnded         peer sessionId sentOps receivedOps sentBytes receivedBytes error
//
// source is the Source's String ("local", "sync", "gossip", "import", "store"), or "replay"
// for a Processed event with Replayed set; peer is a libp2p peer id (sync and gossip
// sources, sync events); phase is "sync" or "live" (sync source); message is base64; an
// error decodes as a plain error carrying the original text. Zero counts are omitted.
type TopicEvent struct {
	Topic operation.Topic
	Event Event
}

// Event types of the JSON form.
const (
	kindProcessed        = "processed"
	kindProcessingFailed = "processing_failed"
	kindReplayStarted    = "replay_started"
	kindReplayEnded      = "replay_ended"
	kindReplayFailed     = "replay_failed"
	kindImportStarted    = "import_started"
	kindImportEnded      = "import_ended"
	kindAckFailed        = "ack_failed"
	kindSyncStarted      = "sync_started"
	kindSyncEnded        = "sync_ended"
)

// Source names of the JSON form (Source.String). sourceReplay marks a Processed event
// re-delivered from the local store (Replayed).
const (
	sourceLocal  = "local"
	sourceSync   = "sync"
	sourceGossip = "gossip"
	sourceImport = "import"
	sourceStore  = "store"
	sourceReplay = "replay"
)

// eventJSON is the one wire form of every Event (docs/node-contract.md, events stream).
// Fields not meaningful for a kind are omitted, except seq, which is always present.
type eventJSON struct {
	Type      string `json:"type"`
	Topic     string `json:"topic,omitempty"`
	Hash      string `json:"hash,omitempty"`
	Author    string `json:"author,omitempty"`
	Seq       uint64 `json:"seq"`
	Timestamp uint64 `json:"timestamp,omitempty"`
	Source    string `json:"source,omitempty"`
	Peer      string `json:"peer,omitempty"`  // libp2p peer id of a sync/gossip source or sync event
	Phase     string `json:"phase,omitempty"` // "sync" or "live" for a sync source
	SessionID uint64 `json:"sessionId,omitempty"`
	Message   []byte `json:"message,omitempty"`
	Error     string `json:"error,omitempty"`

	Total         int64  `json:"total,omitempty"`         // replay_started
	Stored        int    `json:"stored,omitempty"`        // import_ended
	Duplicates    int    `json:"duplicates,omitempty"`    // import_ended
	Failed        int    `json:"failed,omitempty"`        // import_ended
	IncomingOps   uint64 `json:"incomingOps,omitempty"`   // sync_started
	OutgoingOps   uint64 `json:"outgoingOps,omitempty"`   // sync_started
	IncomingBytes uint64 `json:"incomingBytes,omitempty"` // sync_started
	OutgoingBytes uint64 `json:"outgoingBytes,omitempty"` // sync_started
	SentOps       uint64 `json:"sentOps,omitempty"`       // sync_ended
	ReceivedOps   uint64 `json:"receivedOps,omitempty"`   // sync_ended
	SentBytes     uint64 `json:"sentBytes,omitempty"`     // sync_ended
	ReceivedBytes uint64 `json:"receivedBytes,omitempty"` // sync_ended
}

// MarshalJSON encodes the event in its wire form (see TopicEvent).
func (te TopicEvent) MarshalJSON() ([]byte, error) {
	out := eventJSON{Topic: te.Topic.String()}
	var err error
	switch e := te.Event.(type) {
	case Processed:
		op := e.Operation
		out.Type, out.Hash, out.Author, out.Seq = kindProcessed, op.Hash.String(), op.Author.String(), op.SeqNum
		out.Timestamp, out.Message = op.Timestamp, op.Message
		err = out.setSource(op.Source)
		if op.Replayed { // re-delivered from the local store
			out.Source, out.Peer, out.Phase, out.SessionID = sourceReplay, "", "", 0
		}
	case ProcessingFailed:
		out.Type, out.Hash, out.Error = kindProcessingFailed, e.Hash.String(), errText(e.Err)
		err = out.setSource(e.Source)
	case ReplayStarted:
		out.Type, out.Total = kindReplayStarted, e.Total
	case ReplayEnded:
		out.Type = kindReplayEnded
	case ReplayFailed:
		out.Type, out.Error = kindReplayFailed, errText(e.Err)
	case ImportStarted:
		out.Type, out.SessionID = kindImportStarted, e.SessionID
	case ImportEnded:
		out.Type, out.SessionID = kindImportEnded, e.SessionID
		out.Stored, out.Duplicates, out.Failed = e.Stored, e.Duplicates, e.Failed
	case AckFailed:
		out.Type, out.Hash, out.Error = kindAckFailed, e.Hash.String(), errText(e.Err)
	case SyncStarted:
		out.Type, out.SessionID = kindSyncStarted, e.SessionID
		out.IncomingOps, out.OutgoingOps = e.IncomingOps, e.OutgoingOps
		out.IncomingBytes, out.OutgoingBytes = e.IncomingBytes, e.OutgoingBytes
		out.Peer, err = peerString(e.Peer)
	case SyncEnded:
		out.Type, out.SessionID, out.Error = kindSyncEnded, e.SessionID, errText(e.Err)
		out.SentOps, out.ReceivedOps, out.SentBytes, out.ReceivedBytes = e.SentOps, e.ReceivedOps, e.SentBytes, e.ReceivedBytes
		out.Peer, err = peerString(e.Peer)
	default:
		return nil, fmt.Errorf("marshal event: unknown event type %T", te.Event)
	}
	if err != nil {
		return nil, fmt.Errorf("marshal %s event: %w", out.Type, err)
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes the wire form (see TopicEvent). A Processed event of source
// "replay" decodes with a LocalStore source and Replayed set. An unknown type is an error.
func (te *TopicEvent) UnmarshalJSON(data []byte) error {
	var in eventJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	topic, ev, err := in.event()
	if err != nil {
		return fmt.Errorf("decode %q event: %w", in.Type, err)
	}
	te.Topic, te.Event = topic, ev
	return nil
}

func (in eventJSON) event() (operation.Topic, Event, error) {
	// The wire form names a topic by its id (hex), never by a name to hash.
	id, err := operation.ParseHash(in.Topic)
	if err != nil {
		return operation.Topic{}, nil, fmt.Errorf("topic: %w", err)
	}
	topic := operation.Topic(id)
	switch in.Type {
	case kindProcessed:
		hash, err := operation.ParseHash(in.Hash)
		if err != nil {
			return topic, nil, fmt.Errorf("hash: %w", err)
		}
		author, err := operation.ParsePublicKey(in.Author)
		if err != nil {
			return topic, nil, fmt.Errorf("author: %w", err)
		}
		src, err := in.source()
		if err != nil {
			return topic, nil, err
		}
		return topic, Processed{Operation: ProcessedOperation{Topic: topic, Hash: hash, Author: author,
			SeqNum: in.Seq, Timestamp: in.Timestamp, Message: in.Message, Source: src,
			Replayed: in.Source == sourceReplay}}, nil
	case kindProcessingFailed:
		hash, err := operation.ParseHash(in.Hash)
		if err != nil {
			return topic, nil, fmt.Errorf("hash: %w", err)
		}
		src, err := in.source()
		if err != nil {
			return topic, nil, err
		}
		return topic, ProcessingFailed{Hash: hash, Err: errOf(in.Error), Source: src}, nil
	case kindReplayStarted:
		return topic, ReplayStarted{Total: in.Total}, nil
	case kindReplayEnded:
		return topic, ReplayEnded{}, nil
	case kindReplayFailed:
		return topic, ReplayFailed{Err: errOf(in.Error)}, nil
	case kindImportStarted:
		return topic, ImportStarted{SessionID: in.SessionID}, nil
	case kindImportEnded:
		return topic, ImportEnded{SessionID: in.SessionID, Stored: in.Stored, Duplicates: in.Duplicates, Failed: in.Failed}, nil
	case kindAckFailed:
		hash, err := operation.ParseHash(in.Hash)
		if err != nil {
			return topic, nil, fmt.Errorf("hash: %w", err)
		}
		return topic, AckFailed{Hash: hash, Err: errOf(in.Error)}, nil
	case kindSyncStarted:
		pk, _, err := parsePeer(in.Peer)
		if err != nil {
			return topic, nil, err
		}
		return topic, SyncStarted{Peer: pk, SessionID: in.SessionID, IncomingOps: in.IncomingOps, OutgoingOps: in.OutgoingOps,
			IncomingBytes: in.IncomingBytes, OutgoingBytes: in.OutgoingBytes}, nil
	case kindSyncEnded:
		pk, _, err := parsePeer(in.Peer)
		if err != nil {
			return topic, nil, err
		}
		return topic, SyncEnded{Peer: pk, SessionID: in.SessionID, SentOps: in.SentOps, ReceivedOps: in.ReceivedOps,
			SentBytes: in.SentBytes, ReceivedBytes: in.ReceivedBytes, Err: errOf(in.Error)}, nil
	}
	return topic, nil, errors.New("unknown event type")
}

func (out *eventJSON) setSource(src Source) error {
	var err error
	switch s := src.(type) {
	case SyncSession:
		out.SessionID, out.Phase = s.SessionID, s.Phase.String()
		out.Peer, err = peerString(s.Peer)
	case Gossip:
		out.Peer, err = peerString(s.Peer)
	case ExternalStream:
		out.SessionID = s.SessionID
	case LocalStore, StoreHistory:
	case nil:
		src = LocalStore{}
	default:
		return fmt.Errorf("unknown source type %T", src)
	}
	out.Source = src.String()
	return err
}

func (in eventJSON) source() (Source, error) {
	switch in.Source {
	case sourceSync:
		pk, id, err := parsePeer(in.Peer)
		if err != nil {
			return nil, err
		}
		phase := PhaseSync
		switch in.Phase {
		case "", PhaseSync.String():
		case PhaseLive.String():
			phase = PhaseLive
		default:
			return nil, fmt.Errorf("unknown sync phase %q", in.Phase)
		}
		return SyncSession{Peer: pk, SessionID: in.SessionID, Phase: phase, peerID: id}, nil
	case sourceGossip:
		pk, _, err := parsePeer(in.Peer)
		if err != nil {
			return nil, err
		}
		return Gossip{Peer: pk}, nil
	case sourceImport:
		return ExternalStream{SessionID: in.SessionID}, nil
	case sourceLocal, sourceReplay:
		return LocalStore{}, nil
	case sourceStore:
		return StoreHistory{}, nil
	}
	return nil, fmt.Errorf("unknown source %q", in.Source)
}

// PeerIDOf returns the libp2p peer id of a public key: how the JSON form of events (and
// the admin API) names the peer of a SyncSession, Gossip, SyncStarted or SyncEnded.
func PeerIDOf(pk operation.PublicKey) (peer.ID, error) {
	id, err := p2p.PeerIDFromPublicKey(pk)
	if err != nil {
		return "", fmt.Errorf("peer id of %s: %w", pk.Short(), err)
	}
	return id, nil
}

func peerString(pk operation.PublicKey) (string, error) {
	id, err := PeerIDOf(pk)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func parsePeer(s string) (operation.PublicKey, peer.ID, error) {
	id, err := peer.Decode(s)
	if err != nil {
		return operation.PublicKey{}, "", fmt.Errorf("peer: %w", err)
	}
	pk, err := p2p.PublicKeyFromPeerID(id)
	if err != nil {
		return operation.PublicKey{}, "", fmt.Errorf("peer %s: %w", s, err)
	}
	return pk, id, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func errOf(text string) error {
	if text == "" {
		return nil
	}
	return errors.New(text)
}
