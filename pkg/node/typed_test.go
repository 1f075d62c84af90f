package node

import (
	"bytes"
	"encoding/hex"
	"testing"
)

type chatMessage struct {
	Text   string `cbor:"text"`
	Emojis []int  `cbor:"emojis"`
}

// TypedStream encodes messages as p2panda's stream::<M> does (ciborium CBOR): a String
// message is a CBOR text string, a struct a map keyed by field name.
func TestTypedStreamUsesP2pandaEncoding(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t)
	pub, sub, err := TypedStream[string](ctx, n, topicT, Start, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pub.Publish(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	op := processed(t, next(t, sub.Subscription))
	// ciborium's encoding of String::from("hello").
	if want, _ := hex.DecodeString("6568656c6c6f"); !bytes.Equal(op.Message, want) {
		t.Fatalf("body %x, want %x", op.Message, want)
	}
	msg, err := sub.Decode(op)
	if err != nil || msg != "hello" {
		t.Fatalf("decoded %q, %v", msg, err)
	}
	// Raw bytes are still there: a body that is not CBOR fails to decode, with context.
	if _, err := pub.Publisher.Publish(ctx, []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Decode(processed(t, next(t, sub.Subscription))); err == nil {
		t.Fatal("a non-CBOR body decoded")
	}
	sub.Close()

	other := newNode(t)
	cpub, csub, err := TypedStream[chatMessage](ctx, other, topicT, Start, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer csub.Close()
	want := chatMessage{Text: "hi", Emojis: []int{1, 2}}
	if _, err := cpub.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	cop := processed(t, next(t, csub.Subscription))
	// {"text": "hi", "emojis": [1, 2]} with canonical (length-first) key order.
	if wantHex := "a2647465787462686966656d6f6a6973820102"; hex.EncodeToString(cop.Message) != wantHex {
		t.Fatalf("body %x, want %s", cop.Message, wantHex)
	}
	got, err := csub.Decode(cop)
	if err != nil || got.Text != want.Text || len(got.Emojis) != 2 {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}
