package p2p

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/fxamacker/cbor/v2"

	"github.com/pandanet/pandanet/pkg/operation"
)

// MaxEphemeralMessageSize bounds an encoded ephemeral envelope (signature, clock and body).
const MaxEphemeralMessageSize = 64 << 10

// ephemeralOverhead is the largest envelope without body: array header, version, 32-byte
// key, 64-byte signature, two uint64 and a byte string header.
const ephemeralOverhead = 1 + 1 + 34 + 66 + 9 + 9 + 9

// MaxEphemeralBodySize is the largest body Publish accepts.
const MaxEphemeralBodySize = MaxEphemeralMessageSize - ephemeralOverhead

// ErrMessageTooLarge is returned by Publish for bodies above MaxEphemeralBodySize.
var ErrMessageTooLarge = errors.New("ephemeral message too large")

// ErrInvalidEnvelope marks a malformed or badly signed ephemeral message.
var ErrInvalidEnvelope = errors.New("invalid ephemeral envelope")

const ephemeralVersion = 1

// ephemeralEnvelope is p2panda's ephemeral message: CBOR
// (version, author key, signature, timestamp µs, lamport, body), signed over CBOR
// (version, author key, timestamp, lamport, body).
type ephemeralEnvelope struct {
	Author    operation.PublicKey
	Signature operation.Signature
	Timestamp uint64
	Lamport   uint64
	Body      []byte
}

var (
	envEncMode = operation.CanonicalCBOR
	envDecMode = operation.StrictCBOR(4, 16)
)

func ephemeralSigningBytes(author operation.PublicKey, ts, lamport uint64, body []byte) []byte {
	out, err := envEncMode.Marshal([]any{uint64(ephemeralVersion), author[:], ts, lamport, body})
	if err != nil {
		panic(fmt.Sprintf("encode ephemeral signing bytes: %v", err)) // only ints and byte strings
	}
	return out
}

func encodeEphemeral(key operation.PrivateKey, ts, lamport uint64, body []byte) ([]byte, error) {
	if len(body) > MaxEphemeralBodySize {
		return nil, fmt.Errorf("%w: body is %d bytes, at most %d allowed", ErrMessageTooLarge, len(body), MaxEphemeralBodySize)
	}
	if body == nil {
		body = []byte{}
	}
	author := key.PublicKey()
	sig := key.Sign(ephemeralSigningBytes(author, ts, lamport, body))
	out, err := envEncMode.Marshal([]any{uint64(ephemeralVersion), author[:], sig[:], ts, lamport, body})
	if err != nil {
		return nil, fmt.Errorf("encode ephemeral envelope: %w", err)
	}
	return out, nil
}

// decodeEphemeral parses and verifies an envelope (strict Ed25519, as p2panda).
func decodeEphemeral(data []byte) (*ephemeralEnvelope, error) {
	if len(data) > MaxEphemeralMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessageTooLarge, len(data))
	}
	var items []cbor.RawMessage
	if err := envDecMode.Unmarshal(data, &items); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEnvelope, err)
	}
	if len(items) != 6 {
		return nil, fmt.Errorf("%w: %d elements, expected 6", ErrInvalidEnvelope, len(items))
	}
	var (
		version   uint64
		key, sig  []byte
		env       ephemeralEnvelope
		fieldErr  error
		unmarshal = func(raw cbor.RawMessage, v any, name string) {
			if fieldErr == nil {
				if err := envDecMode.Unmarshal(raw, v); err != nil {
					fieldErr = fmt.Errorf("%w: %s: %v", ErrInvalidEnvelope, name, err)
				}
			}
		}
	)
	unmarshal(items[0], &version, "version")
	unmarshal(items[1], &key, "author")
	unmarshal(items[2], &sig, "signature")
	unmarshal(items[3], &env.Timestamp, "timestamp")
	unmarshal(items[4], &env.Lamport, "lamport")
	unmarshal(items[5], &env.Body, "body")
	if fieldErr != nil {
		return nil, fieldErr
	}
	switch {
	case version != ephemeralVersion:
		return nil, fmt.Errorf("%w: unsupported version %d", ErrInvalidEnvelope, version)
	case len(key) != operation.PublicKeySize:
		return nil, fmt.Errorf("%w: author key is %d bytes", ErrInvalidEnvelope, len(key))
	case len(sig) != operation.SignatureSize:
		return nil, fmt.Errorf("%w: signature is %d bytes", ErrInvalidEnvelope, len(sig))
	case env.Timestamp > math.MaxInt64:
		return nil, fmt.Errorf("%w: timestamp out of range", ErrInvalidEnvelope)
	}
	env.Author = operation.PublicKey(key)
	// Only the canonical encoding is accepted, so one signed message has exactly one
	// message id (BLAKE3 of the bytes) and cannot be replayed under a fresh id.
	canonical, err := envEncMode.Marshal([]any{version, key, sig, env.Timestamp, env.Lamport, env.Body})
	if err != nil || !bytes.Equal(canonical, data) {
		return nil, fmt.Errorf("%w: not canonically encoded", ErrInvalidEnvelope)
	}
	env.Signature = operation.Signature(sig)
	if env.Body == nil {
		env.Body = []byte{}
	}
	if !env.Author.Verify(ephemeralSigningBytes(env.Author, env.Timestamp, env.Lamport, env.Body), env.Signature) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidEnvelope)
	}
	return &env, nil
}
