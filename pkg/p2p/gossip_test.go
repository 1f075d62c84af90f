package p2p

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestEnvelopeRoundTripAndRejections(t *testing.T) {
	key, _ := operation.GenerateKey()
	data, err := encodeEphemeral(key, 1700000000000000, 3, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := decodeEphemeral(data)
	if err != nil {
		t.Fatal(err)
	}
	if env.Author != key.PublicKey() || env.Timestamp != 1700000000000000 || env.Lamport != 3 || string(env.Body) != "hi" {
		t.Fatalf("decoded %+v", env)
	}

	// Flip one byte in each region: version, key, signature, clock, body.
	for i := range data {
		forged := bytes.Clone(data)
		forged[i] ^= 0x01
		if _, err := decodeEphemeral(forged); err == nil {
			t.Fatalf("tampered byte %d accepted", i)
		}
	}
	// Someone else's key with our signature.
	other, _ := operation.GenerateKey()
	swapped, _ := encodeEphemeral(other, 1, 0, []byte("hi"))
	copy(swapped[4:4+32], key.PublicKey().String()) // garbage, must not verify
	if _, err := decodeEphemeral(swapped); !errors.Is(err, ErrInvalidEnvelope) {
		t.Fatalf("got %v, want ErrInvalidEnvelope", err)
	}

	if _, err := encodeEphemeral(key, 1, 0, make([]byte, MaxEphemeralBodySize+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("got %v, want ErrMessageTooLarge", err)
	}
	big, err := encodeEphemeral(key, 1<<62, 1<<62, make([]byte, MaxEphemeralBodySize))
	if err != nil {
		t.Fatal(err)
	}
	if len(big) > MaxEphemeralMessageSize {
		t.Fatalf("largest envelope is %d bytes, above the %d limit", len(big), MaxEphemeralMessageSize)
	}
}

func TestHybridClockIsStrictlyIncreasing(t *testing.T) {
	var c hybridClock
	pts, pl := c.next()
	for range 10000 {
		ts, l := c.next()
		if ts < pts || ts == pts && l <= pl {
			t.Fatalf("clock went from (%d,%d) to (%d,%d)", pts, pl, ts, l)
		}
		pts, pl = ts, l
	}
}

// Three hosts in a line a - b - c: a message from a reaches c through b with a's
// authorship verified; a forged envelope is rejected by b and never reaches c.
func TestEphemeralGossipThreeHosts(t *testing.T) {
	a, b, c := newTestHost(t, nil), newTestHost(t, nil), newTestHost(t, nil)
	connect(t, a, b)
	connect(t, c, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := topicN(42)
	ta, err := a.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	tc, err := c.Ephemeral(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	// The mesh forms within a heartbeat or two; publish until c hears from a.
	got := publishUntilReceived(t, ctx, ta, tc, []byte("ping"))
	if got.Author != a.PublicKey() || got.Topic != topic || string(got.Body) != "ping" || got.Timestamp == 0 {
		t.Fatalf("c received %+v", got)
	}
	drain(tb)
	drain(tc)

	// Forge: a's validator is removed so a forwards an envelope whose body was changed
	// after signing. b must reject it; c must then see the genuine follow-up only.
	name := a.GossipTopicName(topic, ephemeralKind)
	if err := a.ps.UnregisterTopicValidator(name); err != nil {
		t.Fatal(err)
	}
	good, err := encodeEphemeral(a.priv, 1, 0, []byte("genuine"))
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(bytes.Clone(good), []byte("genuine"), []byte("forgery"), 1)
	if err := ta.shared.topic.Publish(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if err := ta.Publish(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []*EphemeralTopic{tb, tc} {
		select {
		case m := <-sub.Messages():
			if string(m.Body) != "after" {
				t.Fatalf("received %q, want only the genuine message", m.Body)
			}
		case <-ctx.Done():
			t.Fatal("genuine message not received")
		}
	}
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ta.Messages(); ok {
		t.Fatal("Messages not closed after Close")
	}
	if err := ta.Publish(ctx, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

func TestEphemeralPublishTooLarge(t *testing.T) {
	a := newTestHost(t, nil)
	ctx := context.Background()
	ta, err := a.Ephemeral(ctx, topicN(1))
	if err != nil {
		t.Fatal(err)
	}
	defer ta.Close()
	if err := ta.Publish(ctx, make([]byte, MaxEphemeralBodySize+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("got %v, want ErrMessageTooLarge", err)
	}
}

func publishUntilReceived(tb testing.TB, ctx context.Context, from, to *EphemeralTopic, body []byte) EphemeralMessage {
	tb.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := from.Publish(ctx, body); err != nil {
			tb.Fatal(err)
		}
		select {
		case m := <-to.Messages():
			return m
		case <-tick.C:
		case <-ctx.Done():
			tb.Fatal("message never received")
		}
	}
}

func drain(e *EphemeralTopic) {
	for {
		select {
		case <-e.Messages():
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}
