package node

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pandanet/pandanet/pkg/operation"
)

// eventCase is one event with its exact wire JSON. decoded is what the JSON decodes to when
// that differs from ev (the wire form merges some sources); nil means ev itself.
type eventCase struct {
	name    string
	ev      Event
	wire    string // with {topic}, {hash}, {author} and {peer} placeholders
	decoded Event
}

func eventCases(t *testing.T) ([]eventCase, *strings.Replacer) {
	t.Helper()
	key, err := operation.PrivateKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	author := key.PublicKey()
	peerID, err := PeerIDOf(author)
	if err != nil {
		t.Fatal(err)
	}
	hash := operation.HashOf([]byte("op"))
	op := ProcessedOperation{Topic: topicT, Hash: hash, Author: author, SeqNum: 7, Timestamp: 1_700_000_000_000_001, Message: []byte("hi")}
	with := func(src Source, replayed bool) ProcessedOperation {
		o := op
		o.Source, o.Replayed = src, replayed
		return o
	}
	deleted := with(LocalStore{}, false)
	deleted.Message = nil
	sync := SyncSession{Peer: author, SessionID: 9, Phase: PhaseLive, peerID: peerID}
	fail := errors.New("it broke")
	const processed = `{"type":"processed","topic":"{topic}","hash":"{hash}","author":"{author}","seq":7,"timestamp":1700000000000001,`
	r := strings.NewReplacer("{topic}", topicT.String(), "{hash}", hash.String(), "{author}", author.String(), "{peer}", peerID.String())
	return []eventCase{
		{name: "processed local", ev: Processed{with(LocalStore{}, false)},
			wire: processed + `"source":"local","message":"aGk="}`},
		{name: "processed replay", ev: Processed{with(LocalStore{}, true)},
			wire: processed + `"source":"replay","message":"aGk="}`},
		{name: "processed store", ev: Processed{with(StoreHistory{}, false)},
			wire: processed + `"source":"store","message":"aGk="}`},
		{name: "processed sync", ev: Processed{with(sync, false)},
			wire: processed + `"source":"sync","peer":"{peer}","phase":"live","sessionId":9,"message":"aGk="}`},
		{name: "processed sync catch-up", ev: Processed{with(SyncSession{Peer: author, SessionID: 1, Phase: PhaseSync, peerID: peerID}, false)},
			wire: processed + `"source":"sync","peer":"{peer}","phase":"sync","sessionId":1,"message":"aGk="}`},
		{name: "processed gossip", ev: Processed{with(Gossip{Peer: author}, false)},
			wire: processed + `"source":"gossip","peer":"{peer}","message":"aGk="}`},
		{name: "processed import", ev: Processed{with(ExternalStream{SessionID: 4}, false)},
			wire: processed + `"source":"import","sessionId":4,"message":"aGk="}`},
		{name: "processed deleted payload", ev: Processed{deleted},
			wire: processed + `"source":"local"}`},
		{name: "processing failed", ev: ProcessingFailed{Hash: hash, Err: fail, Source: sync},
			wire: `{"type":"processing_failed","topic":"{topic}","hash":"{hash}","seq":0,"source":"sync","peer":"{peer}","phase":"live","sessionId":9,"error":"it broke"}`},
		{name: "processing failed no source", ev: ProcessingFailed{Hash: hash, Err: fail},
			wire:    `{"type":"processing_failed","topic":"{topic}","hash":"{hash}","seq":0,"source":"local","error":"it broke"}`,
			decoded: ProcessingFailed{Hash: hash, Err: fail, Source: LocalStore{}}},
		{name: "replay started", ev: ReplayStarted{Total: 3},
			wire: `{"type":"replay_started","topic":"{topic}","seq":0,"total":3}`},
		{name: "replay ended", ev: ReplayEnded{},
			wire: `{"type":"replay_ended","topic":"{topic}","seq":0}`},
		{name: "replay failed", ev: ReplayFailed{Err: fail},
			wire: `{"type":"replay_failed","topic":"{topic}","seq":0,"error":"it broke"}`},
		{name: "import started", ev: ImportStarted{SessionID: 4},
			wire: `{"type":"import_started","topic":"{topic}","seq":0,"sessionId":4}`},
		{name: "import ended", ev: ImportEnded{SessionID: 4, Stored: 5, Duplicates: 2, Failed: 1},
			wire: `{"type":"import_ended","topic":"{topic}","seq":0,"sessionId":4,"stored":5,"duplicates":2,"failed":1}`},
		{name: "ack failed", ev: AckFailed{Hash: hash, Err: fail},
			wire: `{"type":"ack_failed","topic":"{topic}","hash":"{hash}","seq":0,"error":"it broke"}`},
		{name: "sync started", ev: SyncStarted{Peer: author, SessionID: 9, IncomingOps: 1, OutgoingOps: 2, IncomingBytes: 30, OutgoingBytes: 40},
			wire: `{"type":"sync_started","topic":"{topic}","seq":0,"peer":"{peer}","sessionId":9,"incomingOps":1,"outgoingOps":2,"incomingBytes":30,"outgoingBytes":40}`},
		{name: "sync ended", ev: SyncEnded{Peer: author, SessionID: 9, SentOps: 2, ReceivedOps: 1, SentBytes: 40, ReceivedBytes: 30},
			wire: `{"type":"sync_ended","topic":"{topic}","seq":0,"peer":"{peer}","sessionId":9,"sentOps":2,"receivedOps":1,"sentBytes":40,"receivedBytes":30}`},
		{name: "sync failed", ev: SyncEnded{Peer: author, SessionID: 9, Err: fail},
			wire: `{"type":"sync_ended","topic":"{topic}","seq":0,"peer":"{peer}","sessionId":9,"error":"it broke"}`},
	}, r
}

// TestEventJSONRoundTrip: every event kind marshals to its exact wire JSON (what the admin
// API streams), decodes back to the same event (what the CLI and other clients read), and
// re-encodes to the same bytes (what `subscribe --json` prints).
func TestEventJSONRoundTrip(t *testing.T) {
	cases, r := eventCases(t)
	kinds := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := r.Replace(tc.wire)
			got, err := json.Marshal(TopicEvent{Topic: topicT, Event: tc.ev})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Fatalf("wire form\n got %s\nwant %s", got, want)
			}
			var back TopicEvent
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			wantEv := tc.decoded
			if wantEv == nil {
				wantEv = tc.ev
			}
			if back.Topic != topicT || !reflect.DeepEqual(back.Event, wantEv) {
				t.Fatalf("decoded %#v, want %#v", back, wantEv)
			}
			again, err := json.Marshal(back)
			if err != nil || string(again) != want {
				t.Fatalf("re-encoded %s, %v", again, err)
			}
			var typ struct{ Type string }
			_ = json.Unmarshal(got, &typ)
			kinds[typ.Type] = true
		})
	}
	// Every event kind of the wire form is covered.
	for _, k := range []string{kindProcessed, kindProcessingFailed, kindReplayStarted, kindReplayEnded, kindReplayFailed,
		kindImportStarted, kindImportEnded, kindAckFailed, kindSyncStarted, kindSyncEnded} {
		if !kinds[k] {
			t.Errorf("no round-trip case for %q", k)
		}
	}
}

// An event the wire form cannot express fails to encode instead of sending something
// clients misread, and malformed input fails to decode.
func TestEventJSONErrors(t *testing.T) {
	type unknown struct{ Event }
	if _, err := json.Marshal(TopicEvent{Topic: topicT, Event: unknown{}}); err == nil {
		t.Error("an unknown event type encoded")
	}
	cases, r := eventCases(t)
	good := r.Replace(cases[3].wire) // processed, sync source
	for name, in := range map[string]string{
		"not json":      `{`,
		"unknown type":  `{"type":"pruned","seq":0}`,
		"bad topic":     `{"type":"replay_ended","topic":"chat","seq":0}`,
		"no topic":      `{"type":"replay_ended","seq":0}`,
		"bad hash":      strings.Replace(good, `"hash":"`, `"hash":"x`, 1),
		"bad author":    strings.Replace(good, `"author":"`, `"author":"x`, 1),
		"bad peer":      strings.Replace(good, `"peer":"`, `"peer":"x`, 1),
		"bad phase":     strings.Replace(good, `"phase":"live"`, `"phase":"later"`, 1),
		"no source":     strings.Replace(good, `"source":"sync",`, ``, 1),
		"bad source":    strings.Replace(good, `"source":"sync"`, `"source":"carrier pigeon"`, 1),
		"sync bad peer": r.Replace(`{"type":"sync_started","topic":"{topic}","seq":0,"peer":"nope"}`),
	} {
		var ev TopicEvent
		if err := json.Unmarshal([]byte(in), &ev); err == nil {
			t.Errorf("%s: %s decoded to %#v", name, in, ev)
		}
	}
}
