package node

import (
	"context"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Codec turns messages of type M into operation bodies and back.
type Codec[M any] interface {
	Encode(M) ([]byte, error)
	Decode([]byte) (M, error)
}

// CBOR is the codec of p2panda's stream::<M>: each message is one canonical CBOR item. Go
// strings, integers, byte slices, slices and maps encode as serde does through ciborium;
// give struct fields `cbor:"name"` tags matching the Rust field names (serde writes structs
// as maps keyed by field name).
type CBOR[M any] struct{}

// Encode encodes m as canonical CBOR.
func (CBOR[M]) Encode(m M) ([]byte, error) { return operation.CanonicalCBOR.Marshal(m) }

// Decode decodes one CBOR item (trailing bytes are an error).
func (CBOR[M]) Decode(b []byte) (M, error) {
	var m M
	err := messageDecMode.Unmarshal(b, &m)
	return m, err
}

// messageDecMode decodes messages from peers: bounded, but lenient about map keys a newer app
// version may add (unknown struct fields are ignored, as serde does by default).
var messageDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  32,
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 20,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthAllowed,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("cbor decode options: %v", err))
	}
	return dm
}()

// TypedPublisher publishes messages of type M.
type TypedPublisher[M any] struct {
	*Publisher
	codec Codec[M]
}

// TypedSubscription is a Subscription whose messages are of type M: Decode turns a
// Processed operation's Message into M. Events, Ack and Close are the Subscription's.
type TypedSubscription[M any] struct {
	*Subscription
	codec Codec[M]
}

// TypedStream opens topic like n.StreamFrom, with messages of type M encoded by codec (nil:
// CBOR, as p2panda's stream::<M>, so apps on both read each other's messages). Raw bytes
// stay available through the embedded Publisher and Subscription.
func TypedStream[M any](ctx context.Context, n *Node, topic operation.Topic, from From, codec Codec[M]) (*TypedPublisher[M], *TypedSubscription[M], error) {
	if codec == nil {
		codec = CBOR[M]{}
	}
	pub, sub, err := n.StreamFrom(ctx, topic, from)
	if err != nil {
		return nil, nil, err
	}
	return &TypedPublisher[M]{pub, codec}, &TypedSubscription[M]{sub, codec}, nil
}

// Publish encodes m and publishes it (see Publisher.Publish).
func (p *TypedPublisher[M]) Publish(ctx context.Context, m M) (*Pending, error) {
	body, err := p.codec.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("publish to %s: encode: %w", p.topic, err)
	}
	return p.Publisher.Publish(ctx, body)
}

// Prune encodes m and publishes it with the prune flag (see Publisher.Prune).
func (p *TypedPublisher[M]) Prune(ctx context.Context, m M) (*Pending, error) {
	body, err := p.codec.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("prune %s: encode: %w", p.topic, err)
	}
	return p.Publisher.Prune(ctx, body)
}

// Decode returns op's message as M. A message that does not decode (another app, another
// encoding) is an error; the operation is still stored and can be acknowledged.
func (s *TypedSubscription[M]) Decode(op ProcessedOperation) (M, error) {
	m, err := s.codec.Decode(op.Message)
	if err != nil {
		return m, fmt.Errorf("decode message %s on %s: %w", op.Hash.Short(), op.Topic, err)
	}
	return m, nil
}
